"""tfee: early-exit networks for tf_keras, from training to TFLite."""

import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent
version = {}
exec((HERE / "tfee" / "version.py").read_text(), version)

setuptools.setup(
    name="tfee",
    version=version["__version__"],
    description=(
        "Early-exit networks for TensorFlow/Keras: exit heads, calibrated exit "
        "policies, section-wise pruning and clustering, TFLite export."
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["tfee", "tfee.*"]),
    # The committed reference network (tfee.recipes.COMMITTED_REFERENCE), and
    # the C form of the confidence rules (tfee.rules.C_SOURCE).
    package_data={"tfee": ["_reference/*.json", "_reference/*.weights.h5", "rules.h"]},
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "tensorflow-model-optimization==0.8.1",
        "absl-py>=1.0,<2",  # tfmot 0.8.1 needs absl-py < 2
        "tensorflow-datasets>=4.9",
        "keras-tuner>=1.4.7",
        "ai-edge-litert>=1.2",
        # The real TensorFlow Lite Micro interpreter, for the micro cascade backend.
        "tflite-micro>=0.dev20260101",
        "matplotlib>=3.7",
        "numpy>=1.26",
    ],
    extras_require={
        # The demo's embedded dataset (scikit-learn's bundled 8x8 digits).
        "demo": ["scikit-learn>=1.3"],
        "test": [
            "scikit-learn>=1.3",
            "pytest>=8",
            "pytest-xdist>=3",
            "ruff>=0.5",
            "black>=24",
            "isort>=5.13",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
