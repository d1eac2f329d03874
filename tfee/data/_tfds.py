"""TensorFlow Datasets builders (or their names) as a source."""

from tfee.data import _pipeline

__all__ = ["builder_of", "from_tfds"]


def builder_of(source, data_dir):
    """The TFDS builder `source` names (a builder passes as it is)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "tfee.data.load needs tensorflow-datasets for TFDS sources: "
            "pip install tensorflow-datasets"
        ) from error
    if isinstance(source, str):
        return tfds.builder(source, data_dir=data_dir)
    return source


def from_tfds(builder, download, validation_fraction, seed, api):
    """`Examples` of a TFDS builder with 'image' and 'label' features; a
    builder without a validation split gives `validation_fraction` of its
    training split."""
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"{api}: the TFDS dataset {builder.name!r} must have 'image' and "
            f"'label' features. Received features: {list(features)}"
        )
    known = set(builder.info.splits or ())
    percent = int(round(100 * (1 - validation_fraction)))
    if "validation" in known:
        split_names = ["train", "validation", "test"]
    else:
        split_names = [f"train[:{percent}%]", f"train[{percent}%:]", "test"]
    if download:
        builder.download_and_prepare()
    try:
        datasets = [
            builder.as_dataset(
                split=split, as_supervised=True, shuffle_files=i == 0
            ).map(_pipeline.scaled)
            for i, split in enumerate(split_names)
        ]
    except AssertionError as error:
        if "download_and_prepare" not in str(error):
            raise
        # tfds suggests download=True, which needs the internet.
        raise ValueError(
            f"{api}: the TFDS dataset {builder.name!r} is not prepared under "
            f"data_dir={builder.data_dir!r}. Prepare it once where the internet "
            "is reachable (tfds.builder(name, data_dir=...).download_and_prepare()) "
            "and copy that folder here, pass download=True on a machine with "
            "internet, or load an image folder instead."
        ) from None
    names = getattr(features["label"], "names", None)
    return _pipeline.Examples(
        *datasets,
        num_classes=int(features["label"].num_classes),
        class_names=tuple(names) if names else None,
    )
