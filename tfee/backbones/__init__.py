"""Reference backbones as functional tf_keras builders."""

from tfee.backbones.resnet_cifar import resnet_cifar
from tfee.backbones.small_cnn import small_cnn
from tfee.backbones.vgg import vgg

__all__ = ["resnet_cifar", "small_cnn", "vgg"]
