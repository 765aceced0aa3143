"""Pre-activation CIFAR ResNets (He et al. 2016b, "Identity Mappings in Deep Residual Networks").

Each residual unit computes ``x + F(x)`` with ``F = conv(relu(bn(...)))`` repeated, so the
shortcut path carries the raw signal; the network ends with BN + ReLU before pooling.

* ``block="basic"`` — two 3x3 convs per unit, depth ``6n + 2`` (pre-act ResNet-110: n = 18).
* ``block="bottleneck"`` — 1x1 / 3x3 / 1x1 (x4) convs per unit, depth ``9n + 2``
  (pre-act ResNet-164: n = 18), the network used by network slimming (Liu et al. 2017).

Parameter names: ``conv1`` (stem), ``layer{1,2,3}.{i}.bn{1,2[,3]}`` / ``conv{1,2[,3]}``,
``layer*.{i}.shortcut``, ``bn`` (final BN), ``linear``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from prunesafe.models.cifar_resnet import (
    ShortcutType,
    ZeroPadShortcut,
    _blocks_per_stage,
    _check_resnet_args,
    _kaiming_init,
    _make_normalize,
    _make_shortcut,
    _make_stages,
)
from prunesafe.models.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["CifarPreActResNet", "PreActBasicBlock", "PreActBottleneck", "cifar_preact_resnet"]


class PreActBasicBlock(nn.Module):
    """Pre-activation basic unit: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus shortcut.

    An option-A shortcut (:class:`~prunesafe.models.ZeroPadShortcut`) acts on the raw input
    ``x``; an option-B projection (1x1 conv, no BN) acts on the pre-activated input
    ``relu(bn1(x))``, as in the reference implementation of He et al. (2016b).

    Examples
    --------
    >>> import torch
    >>> PreActBasicBlock(16, 32, stride=2)(torch.rand(1, 16, 8, 8)).shape
    torch.Size([1, 32, 4, 4])
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: ShortcutType = "A") -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module = _make_shortcut(in_planes, planes, stride, shortcut, batch_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        residual = _shortcut_input(self.shortcut, x, pre)
        out: torch.Tensor = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        skip: torch.Tensor = self.shortcut(residual)
        return out + skip


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck unit: (BN-ReLU-conv) x 3 with 1x1 / 3x3 (stride) / 1x1 (x4) kernels.

    Examples
    --------
    >>> import torch
    >>> PreActBottleneck(16, 16)(torch.rand(1, 16, 8, 8)).shape
    torch.Size([1, 64, 8, 8])
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: ShortcutType = "B") -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.shortcut: nn.Module = _make_shortcut(in_planes, out_planes, stride, shortcut, batch_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        residual = _shortcut_input(self.shortcut, x, pre)
        out: torch.Tensor = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        skip: torch.Tensor = self.shortcut(residual)
        return out + skip


def _shortcut_input(shortcut: nn.Module, x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    # Identity and zero padding keep the clean signal path; a projection needs normalised input.
    if isinstance(shortcut, (nn.Identity, ZeroPadShortcut)):
        return x
    return pre


class CifarPreActResNet(nn.Module):
    """Pre-activation ResNet for 32x32 inputs: 3x3 stem conv, three stages, final BN-ReLU, pooling, linear.

    Parameters
    ----------
    num_blocks : sequence of 3 int
        Residual units per stage.
    num_classes : int, default 10
    block : {"basic", "bottleneck"}, default "basic"
    shortcut : {"A", "B"}, default "A"
    mean, std : sequence of float or None
        Normalisation of ``[0, 1]`` inputs applied by ``model.normalize``.

    Examples
    --------
    >>> import torch
    >>> CifarPreActResNet([1, 1, 1])(torch.rand(1, 3, 32, 32)).shape
    torch.Size([1, 10])
    """

    def __init__(
        self,
        num_blocks: Sequence[int],
        num_classes: int = 10,
        *,
        block: Literal["basic", "bottleneck"] = "basic",
        shortcut: ShortcutType = "A",
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
    ) -> None:
        super().__init__()
        shortcut = _check_resnet_args(num_blocks, num_classes, block, shortcut)
        self.normalize: nn.Module = _make_normalize(mean, std)
        block_cls: type[PreActBasicBlock] | type[PreActBottleneck] = (
            PreActBasicBlock if block == "basic" else PreActBottleneck
        )
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1, self.layer2, self.layer3, out_planes = _make_stages(block_cls, num_blocks, shortcut)
        self.bn = nn.BatchNorm2d(out_planes)
        self.linear = nn.Linear(out_planes, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        logits: torch.Tensor = self.linear(out)
        return logits


def cifar_preact_resnet(
    depth: int = 110,
    num_classes: int = 10,
    *,
    block: Literal["basic", "bottleneck"] = "basic",
    shortcut: ShortcutType | None = None,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> CifarPreActResNet:
    """Build a pre-activation CIFAR ResNet (He et al. 2016b).

    Parameters
    ----------
    depth : int, default 110
        ``6n + 2`` for ``block="basic"`` (20, 56, 110, ...), ``9n + 2`` for
        ``block="bottleneck"`` (164, 1001, ...).
    num_classes : int, default 10
    block : {"basic", "bottleneck"}, default "basic"
    shortcut : {"A", "B"} or None, default None
        Shortcut where the shape changes.  ``None`` picks ``"A"`` (parameter-free zero padding,
        like :func:`cifar_resnet`) for basic units and ``"B"`` (1x1 conv projection without BN,
        as in the reference code of He et al. 2016b and Liu et al. 2017) for bottlenecks.
    mean, std : sequence of float or None
        Normalisation of ``[0, 1]`` inputs applied inside the model.

    Returns
    -------
    CifarPreActResNet

    Examples
    --------
    >>> import torch
    >>> sum(p.numel() for p in cifar_preact_resnet(110).parameters())
    1727962
    >>> sum(p.numel() for p in cifar_preact_resnet(164, block="bottleneck").parameters())
    1703258
    >>> cifar_preact_resnet(20)(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    if block == "basic":
        n = _blocks_per_stage(depth, 2, "20, 32, 44, 56, 110, ...")
    elif block == "bottleneck":
        n = _blocks_per_stage(depth, 3, "29, 47, 164, 1001, ...")
    else:
        raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
    if shortcut is None:
        shortcut = "A" if block == "basic" else "B"
    return CifarPreActResNet([n, n, n], num_classes, block=block, shortcut=shortcut, mean=mean, std=std)
