"""Datasets as tf.data pipelines: an embedded default and real-data loaders.

`load` checks its arguments, hands the source to its adapter (arrays and
the embedded digits, an image folder, `tf.data` datasets, TFDS builders),
each of which gives unbatched (float32 image in [0, 1], int32 label) splits,
and runs the pipeline step shared by all of them (resizing, caching,
normalisation, augmentation, batching).
"""

from tfee.data._arrays import digits
from tfee.data._arrays import split_arrays
from tfee.data._arrays import stratified_holdout
from tfee.data._image_folder import load_image_folder
from tfee.data._loading import load
from tfee.data._pipeline import DataSplits
from tfee.data._pipeline import augment_crop_flip
from tfee.data._pipeline import channel_moments

__all__ = [
    "DataSplits",
    "augment_crop_flip",
    "channel_moments",
    "digits",
    "load",
    "load_image_folder",
    "split_arrays",
    "stratified_holdout",
]

# Private modules stay out of the public namespace (they remain importable).
del _arguments, _arrays, _datasets, _image_folder  # noqa: F821
del _loading, _pipeline, _tfds  # noqa: F821
