"""Reference backbones as functional tf_keras builders."""

from tfee.backbones.cnns import small_cnn
from tfee.backbones.resnets import resnet_cifar
from tfee.backbones.vggs import vgg

__all__ = ["resnet_cifar", "small_cnn", "vgg"]
