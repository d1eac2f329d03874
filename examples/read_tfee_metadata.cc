// Prints the "tfee" metadata (JSON) of a .tflite written by tfee.export.tflite:
// the C++ form of the plain client's first step (docs/client.md), with nothing but the
// TFLite flatbuffer schema (header-only). On a phone, LiteRT's
// tflite::FlatBufferModel::ReadAllMetadata()["tfee"] returns the same string.
// docs/tflite_metadata.md describes the document.
//
//   g++ -std=c++17 -I<tflite headers> -I<flatbuffers headers>
//       read_tfee_metadata.cc -o read_tfee_metadata
//   ./read_tfee_metadata net.tflite

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tensorflow/lite/schema/schema_generated.h"

// The "tfee" metadata entry of a .tflite image, or "" when it has none.
static std::string TfeeMetadata(const std::vector<char>& file) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(file.data());
  flatbuffers::Verifier verifier(bytes, file.size());
  if (!tflite::VerifyModelBuffer(verifier)) return "";
  const tflite::Model* model = tflite::GetModel(bytes);
  if (model->metadata() == nullptr || model->buffers() == nullptr) return "";
  for (const tflite::Metadata* entry : *model->metadata()) {
    if (entry->name() == nullptr || entry->name()->str() != "tfee") continue;
    if (entry->buffer() >= model->buffers()->size()) return "";
    const tflite::Buffer* buffer = model->buffers()->Get(entry->buffer());
    if (buffer->data() == nullptr) return "";
    return std::string(reinterpret_cast<const char*>(buffer->data()->data()),
                       buffer->data()->size());
  }
  return "";
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s model.tflite\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "%s: cannot open\n", argv[1]);
    return 2;
  }
  const std::vector<char> file((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
  const std::string json = TfeeMetadata(file);
  if (json.empty()) {
    std::fprintf(stderr, "%s: no tfee metadata\n", argv[1]);
    return 1;
  }
  std::fwrite(json.data(), 1, json.size(), stdout);
  return 0;
}
