"""CIFAR ResNets (He et al. 2016, Sec. 4.2) with option-A shortcuts.

Parameter names match the widely used public checkpoints (``conv1``, ``bn1``,
``layer{1,2,3}.{i}.conv{1,2}``, ``bn{1,2}``, ``linear``) so they load unchanged with
:func:`prunesafe.models.load_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunesafe.models.normalization import IMAGENET_MEAN, IMAGENET_STD, Normalize

__all__ = ["BasicBlock", "CifarResNet", "ZeroPadShortcut", "cifar_resnet"]


class ZeroPadShortcut(nn.Module):
    """Parameter-free "option A" shortcut: spatial subsampling plus zero channels.

    The output is ``x[:, :, ::stride, ::stride]`` with ``pad_front`` zero channels
    prepended and ``pad_back`` appended.  The public CIFAR ResNets use
    ``pad_front = pad_back = planes // 4``.  Pruning code may change both counts.

    Examples
    --------
    >>> import torch
    >>> ZeroPadShortcut(stride=2, pad_front=4, pad_back=4)(torch.ones(1, 8, 8, 8)).shape
    torch.Size([1, 16, 4, 4])
    """

    def __init__(self, stride: int, pad_front: int, pad_back: int) -> None:
        super().__init__()
        if stride < 1 or pad_front < 0 or pad_back < 0:
            raise ValueError(
                f"stride must be >= 1 and paddings >= 0, got stride={stride}, "
                f"pad_front={pad_front}, pad_back={pad_back}"
            )
        self.stride = stride
        self.pad_front = pad_front
        self.pad_back = pad_back

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_front={self.pad_front}, pad_back={self.pad_back}"


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity or option-A shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module
        if stride != 1 or in_planes != planes:
            extra = planes - in_planes
            self.shortcut = ZeroPadShortcut(stride, extra // 2, extra - extra // 2)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: a 3x3 stem, three stages of 16/32/64 channels, global pooling."""

    def __init__(
        self,
        num_blocks: Sequence[int],
        num_classes: int = 10,
        *,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.normalize: nn.Module = (
            Normalize(mean, std) if mean is not None and std is not None else nn.Identity()
        )
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(64, num_blocks[2], stride=2)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def cifar_resnet(
    depth: int,
    num_classes: int = 10,
    *,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> CifarResNet:
    """Build a CIFAR ResNet of depth ``6n + 2`` (20, 32, 44, 56, 110, ...).

    Parameters
    ----------
    depth : int
        Total number of weighted layers, ``6n + 2`` with ``n >= 1``.
    num_classes : int, default 10
        Size of the final linear layer.
    mean, std : sequence of float or None
        Input normalisation applied inside the model to inputs in ``[0, 1]``.  The default
        (ImageNet statistics) is what the public checkpoints expect; pass ``None`` for both
        to feed already-normalised inputs.

    Returns
    -------
    CifarResNet

    Examples
    --------
    >>> import torch
    >>> model = cifar_resnet(20)
    >>> sum(p.numel() for p in model.parameters())
    272474
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth!r}")
    n = (depth - 2) // 6
    return CifarResNet([n, n, n], num_classes, mean=mean, std=std)
