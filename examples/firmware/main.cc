// Runs the cascade that tfee.export.micro generated on images read from stdin
// and prints "class exit" per image (exit is 0-based), as a device would
// answer. It knows the model only through the generated {name}_cascade.h.
//
//   cascade_main          < images.int8   raw int8 images, kInputBytes each
//   cascade_main --float  < images.f32    float32 images (native byte order),
//                                         quantized here as the header says
//
// Build with the Makefile or CMakeLists.txt beside it (see docs/guide/firmware.md), which
// set TFEE_MODEL to the export's `name` and TFEE_CASCADE_HEADER to its header.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#ifndef TFEE_MODEL
#define TFEE_MODEL tfee_model  // tfee.export.micro's default name.
#endif
#ifndef TFEE_CASCADE_HEADER
#define TFEE_CASCADE_HEADER "tfee_model_cascade.h"
#endif
#include TFEE_CASCADE_HEADER

// The generated symbols are {name}::k... and {name}_cascade.
#define TFEE_PASTE_(a, b) a##b
#define TFEE_PASTE(a, b) TFEE_PASTE_(a, b)
#define TFEE_CASCADE TFEE_PASTE(TFEE_MODEL, _cascade)
#define TFEE_QUANTIZE TFEE_PASTE(TFEE_MODEL, _quantize_image)
namespace model = TFEE_MODEL;

namespace {

// Reads one image into `image`: 1 when read, 0 at the end of the input, -1
// for a truncated image or a read error, -2 for a float image holding NaN or
// infinity (the generated quantizer refuses it).
int ReadImage(bool floats, int8_t* image) {
  static float values[model::kInputBytes];
  const std::size_t size = floats ? sizeof(float) : 1;
  void* buffer = floats ? static_cast<void*>(values) : static_cast<void*>(image);
  const std::size_t read = std::fread(buffer, size, model::kInputBytes, stdin);
  if (read == 0 && std::feof(stdin)) return 0;
  if (read != model::kInputBytes) return -1;
  if (floats && !TFEE_QUANTIZE(values, image)) return -2;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const bool floats = argc == 2 && std::strcmp(argv[1], "--float") == 0;
  if (argc > 2 || (argc == 2 && !floats)) {
    std::fprintf(stderr, "usage: %s [--float] < images\n", argv[0]);
    return 2;
  }
  std::fprintf(stderr, "%d exits, %d classes, %u input bytes, %u arena bytes\n",
               model::kNumExits, model::kNumClasses, model::kInputBytes,
               model::kArenaBytes);
  static int8_t image[model::kInputBytes];
  int count = 0;
  int status = 0;
  while ((status = ReadImage(floats, image)) == 1) {
    int exit_index = -1;
    const int predicted = TFEE_CASCADE(image, &exit_index);
    if (predicted < 0) {
      std::fprintf(stderr, "image %d: TensorFlow Lite Micro failed\n", count);
      return 1;
    }
    std::printf("%d %d\n", predicted, exit_index);
    ++count;
  }
  if (status == -2) {
    std::fprintf(stderr,
                 "image %d: holds NaN or infinity, which int8 cannot hold; "
                 "refused\n",
                 count);
    return 1;
  }
  if (status < 0) {
    std::fprintf(stderr, "image %d: truncated or unreadable input\n", count);
    return 1;
  }
  return 0;
}
