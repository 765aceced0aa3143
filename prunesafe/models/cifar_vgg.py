"""CIFAR VGG networks with BatchNorm (Simonyan & Zisserman 2015, CIFAR variant of Liu et al. 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prunesafe.models.cifar_resnet import _check_num_classes, _make_normalize
from prunesafe.models.normalization import CIFAR10_MEAN, CIFAR10_STD

__all__ = ["VGG_CONFIGS", "CifarVGG", "cifar_vgg"]

#: Layer configurations: an int is a 3x3 conv with that many filters, "M" a 2x2 max-pool.
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
}


class CifarVGG(nn.Module):
    """VGG feature extractor for 32x32 inputs followed by global average pooling and one linear layer.

    Parameters
    ----------
    config : sequence of int or "M"
        Conv widths (3x3, padding 1) and ``"M"`` for 2x2 max-pooling, e.g. ``VGG_CONFIGS[16]``.
    num_classes : int, default 10
    batch_norm : bool, default True
    mean, std : sequence of float or None
        Normalisation of ``[0, 1]`` inputs applied by ``model.normalize``.

    Examples
    --------
    >>> import torch
    >>> CifarVGG((16, "M", 32), num_classes=3)(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        config: Sequence[int | str],
        num_classes: int = 10,
        *,
        batch_norm: bool = True,
        mean: Sequence[float] | None = CIFAR10_MEAN,
        std: Sequence[float] | None = CIFAR10_STD,
    ) -> None:
        super().__init__()
        _check_num_classes(num_classes)
        self.normalize: nn.Module = _make_normalize(mean, std)
        layers: list[nn.Module] = []
        in_channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            out_channels = int(item)
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 0.5)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.features(self.normalize(x))).flatten(1)
        logits: torch.Tensor = self.classifier(out)
        return logits


def cifar_vgg(
    depth: int,
    batch_norm: bool = True,
    num_classes: int = 10,
    *,
    mean: Sequence[float] | None = CIFAR10_MEAN,
    std: Sequence[float] | None = CIFAR10_STD,
) -> CifarVGG:
    """Build CIFAR VGG-11/13/16/19.

    Parameters
    ----------
    depth : {11, 13, 16, 19}
        Number of weighted layers in the ImageNet VGG of the same name.
    batch_norm : bool, default True
        Put a BatchNorm after every conv (needed by network slimming).
    num_classes : int, default 10
    mean, std : sequence of float or None
        Normalisation of ``[0, 1]`` inputs, applied inside the model (CIFAR-10 statistics by default).

    Examples
    --------
    >>> import torch
    >>> cifar_vgg(16)(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    if depth not in VGG_CONFIGS:
        raise ValueError(f"depth must be one of {sorted(VGG_CONFIGS)}, got {depth!r}")
    return CifarVGG(VGG_CONFIGS[depth], num_classes, batch_norm=batch_norm, mean=mean, std=std)
