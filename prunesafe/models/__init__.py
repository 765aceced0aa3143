"""CIFAR model zoo: ResNets and VGGs with the normalisation their checkpoints expect."""

from prunesafe.models.cifar_resnet import BasicBlock, CifarResNet, ZeroPadShortcut, cifar_resnet
from prunesafe.models.cifar_vgg import VGG_CONFIGS, CifarVGG, cifar_vgg
from prunesafe.models.normalization import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG_CONFIGS",
    "BasicBlock",
    "CifarResNet",
    "CifarVGG",
    "Normalize",
    "ZeroPadShortcut",
    "cifar_resnet",
    "cifar_vgg",
]
