"""CIFAR model zoo: ResNets and VGGs with the normalisation their checkpoints expect, checkpoint loading and
training with the study's recipes."""

from prunesafe.models.cifar_preact_resnet import (
    CifarPreActResNet,
    PreActBasicBlock,
    PreActBottleneck,
    cifar_preact_resnet,
)
from prunesafe.models.cifar_resnet import (
    BasicBlock,
    Bottleneck,
    CifarResNet,
    ShortcutType,
    ZeroPadShortcut,
    cifar_bottleneck_resnet,
    cifar_resnet,
)
from prunesafe.models.cifar_vgg import VGG_CONFIGS, CifarVGG, cifar_vgg
from prunesafe.models.normalization import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
)
from prunesafe.models.pretrained import (
    CHECKPOINT_URL_ENV,
    PRETRAINED_CHECKPOINTS,
    PretrainedCheckpoint,
    checkpoint_url,
    download_checkpoint,
    file_sha256,
    pretrained_cifar_resnet,
    register_checkpoint,
    unregister_checkpoint,
)
from prunesafe.models.training import (
    BASELINE,
    FINETUNE,
    RECIPES,
    History,
    TrainConfig,
    evaluate,
    fit,
    random_crop_flip,
)
from prunesafe.models.weights import CheckpointMismatchError, extract_state_dict, load_weights

__all__ = [
    "BASELINE",
    "CHECKPOINT_URL_ENV",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "FINETUNE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRETRAINED_CHECKPOINTS",
    "RECIPES",
    "VGG_CONFIGS",
    "BasicBlock",
    "Bottleneck",
    "CheckpointMismatchError",
    "CifarPreActResNet",
    "CifarResNet",
    "CifarVGG",
    "History",
    "Normalize",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PretrainedCheckpoint",
    "ShortcutType",
    "TrainConfig",
    "ZeroPadShortcut",
    "checkpoint_url",
    "cifar_bottleneck_resnet",
    "cifar_preact_resnet",
    "cifar_resnet",
    "cifar_vgg",
    "download_checkpoint",
    "evaluate",
    "extract_state_dict",
    "file_sha256",
    "fit",
    "load_weights",
    "pretrained_cifar_resnet",
    "random_crop_flip",
    "register_checkpoint",
    "unregister_checkpoint",
]
