"""CIFAR ResNets of He et al. (2016a, Sec. 4.2): basic blocks (depth 6n+2) and bottleneck blocks (9n+2).

Parameter names match the widely used public checkpoints (``conv1``, ``bn1``,
``layer{1,2,3}.{i}.conv{1,2}``, ``bn{1,2}``, ``linear``) so they load unchanged with
:func:`prunesafe.models.load_weights`.

References
----------
He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition". CVPR 2016.
He, Zhang, Ren, Sun. "Identity Mappings in Deep Residual Networks". ECCV 2016 (ResNet-164).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from prunesafe.models.normalization import IMAGENET_MEAN, IMAGENET_STD, Normalize

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "ShortcutType",
    "ZeroPadShortcut",
    "cifar_bottleneck_resnet",
    "cifar_resnet",
]

#: ``"A"``: parameter-free subsampling + zero channels; ``"B"``: 1x1 convolution projection.
ShortcutType = Literal["A", "B"]


class ZeroPadShortcut(nn.Module):
    """Parameter-free "option A" shortcut: spatial subsampling plus zero channels.

    The output is ``x[:, :, ::stride, ::stride]`` with ``pad_front`` zero channels
    prepended and ``pad_back`` appended.  The public CIFAR ResNets use
    ``pad_front = pad_back = planes // 4``.  Pruning code may change both counts.

    Parameters
    ----------
    stride : int
        Spatial subsampling step (``>= 1``).
    pad_front, pad_back : int
        Number of zero channels put before / after the input channels (``>= 0``).

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


def _make_shortcut(
    in_planes: int, out_planes: int, stride: int, shortcut: ShortcutType, *, batch_norm: bool
) -> nn.Module:
    """Identity when shapes agree, else option A (zero padding) or option B (1x1 conv [+ BN])."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    if shortcut == "A":
        if out_planes < in_planes:
            raise ValueError(
                f"option-A shortcuts cannot reduce channels ({in_planes} -> {out_planes}); use shortcut='B'"
            )
        extra = out_planes - in_planes
        return ZeroPadShortcut(stride, extra // 2, extra - extra // 2)
    layers: list[nn.Module] = [nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_planes))
    return nn.Sequential(*layers)


def _check_shortcut(shortcut: object) -> ShortcutType:
    if shortcut not in ("A", "B"):
        raise ValueError(
            "shortcut must be 'A' (zero-padding, parameter-free) or 'B' (1x1 conv projection), "
            f"got {shortcut!r}"
        )
    return "A" if shortcut == "A" else "B"


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity or option-A/B shortcut (post-activation).

    Examples
    --------
    >>> import torch
    >>> BasicBlock(16, 32, stride=2)(torch.rand(1, 16, 8, 8)).shape
    torch.Size([1, 32, 4, 4])
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: ShortcutType = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = _make_shortcut(in_planes, planes, stride, shortcut, batch_norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) conv + BN bottleneck (post-activation), stride on the 3x3 conv.

    Examples
    --------
    >>> import torch
    >>> Bottleneck(16, 16)(torch.rand(1, 16, 8, 8)).shape
    torch.Size([1, 64, 8, 8])
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: ShortcutType = "B") -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut: nn.Module = _make_shortcut(in_planes, out_planes, stride, shortcut, batch_norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: a 3x3 stem, three stages of 16/32/64 planes, global pooling, linear.

    Parameters
    ----------
    num_blocks : sequence of 3 int
        Residual blocks per stage.
    num_classes : int, default 10
    block : {"basic", "bottleneck"}, default "basic"
    shortcut : {"A", "B"}, default "A"
        Shortcut used where the shape changes (see :func:`cifar_resnet`).
    mean, std : sequence of float or None
        Normalisation of ``[0, 1]`` inputs applied by ``model.normalize``.

    Examples
    --------
    >>> import torch
    >>> CifarResNet([1, 1, 1])(torch.rand(1, 3, 32, 32)).shape
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
        block_cls: type[BasicBlock] | type[Bottleneck] = BasicBlock if block == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1, self.layer2, self.layer3, out_planes = _make_stages(block_cls, num_blocks, shortcut)
        self.linear = nn.Linear(out_planes, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        logits: torch.Tensor = self.linear(out)
        return logits


def _check_resnet_args(
    num_blocks: Sequence[int], num_classes: object, block: object, shortcut: object
) -> ShortcutType:
    """Validate the arguments shared by the CIFAR ResNet classes; return the checked shortcut."""
    _check_num_classes(num_classes)
    if len(num_blocks) != 3 or any(int(b) < 1 for b in num_blocks):
        raise ValueError(f"num_blocks must be three positive ints, got {tuple(num_blocks)}")
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
    return _check_shortcut(shortcut)


class _ResidualBlock(Protocol):
    expansion: int

    def __call__(self, in_planes: int, planes: int, stride: int, shortcut: ShortcutType) -> nn.Module: ...


def _make_stages(
    block_cls: _ResidualBlock, num_blocks: Sequence[int], shortcut: ShortcutType
) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential, int]:
    """The three stages (16/32/64 planes, strides 1/2/2) after a 16-channel stem, and their output width."""
    stages: list[nn.Sequential] = []
    in_planes = 16
    for planes, stride, blocks in zip((16, 32, 64), (1, 2, 2), num_blocks, strict=True):
        layers: list[nn.Module] = []
        for s in [stride] + [1] * (int(blocks) - 1):
            layers.append(block_cls(in_planes, planes, s, shortcut))
            in_planes = planes * block_cls.expansion
        stages.append(nn.Sequential(*layers))
    return stages[0], stages[1], stages[2], in_planes


def _kaiming_init(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)


def _check_num_classes(num_classes: object) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")


def _make_normalize(mean: Sequence[float] | None, std: Sequence[float] | None) -> nn.Module:
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std, or None for both (inputs already normalised)")
    if mean is None or std is None:
        return nn.Identity()
    return Normalize(mean, std)


def _blocks_per_stage(depth: object, layers_per_block: int, examples: str) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 3 * layers_per_block + 2:
        raise ValueError(f"depth must be {3 * layers_per_block}n + 2 with n >= 1 ({examples}), got {depth!r}")
    if (depth - 2) % (3 * layers_per_block) != 0:
        n = (depth - 2) // (3 * layers_per_block)
        near = sorted({3 * layers_per_block * max(n, 1) + 2, 3 * layers_per_block * (n + 1) + 2})
        raise ValueError(
            f"depth must be {3 * layers_per_block}n + 2 ({examples}), got {depth}; nearest valid: {near}"
        )
    return (depth - 2) // (3 * layers_per_block)


def cifar_resnet(
    depth: int,
    num_classes: int = 10,
    *,
    shortcut: ShortcutType = "A",
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> CifarResNet:
    """Build a CIFAR ResNet (He et al. 2016a) of depth ``6n + 2`` (20, 32, 44, 56, 110, 1202, ...).

    Parameters
    ----------
    depth : int
        Total number of weighted layers, ``6n + 2`` with ``n >= 1``.
    num_classes : int, default 10
        Size of the final linear layer.
    shortcut : {"A", "B"}, default "A"
        Where a block changes shape: ``"A"`` subsamples and zero-pads channels
        (:class:`ZeroPadShortcut`, no parameters, as in the paper and the public checkpoints);
        ``"B"`` uses a 1x1 convolution + BN projection.
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
    269722
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    n = _blocks_per_stage(depth, 2, "20, 32, 44, 56, 110, ...")
    return CifarResNet([n, n, n], num_classes, block="basic", shortcut=shortcut, mean=mean, std=std)


def cifar_bottleneck_resnet(
    depth: int = 164,
    num_classes: int = 10,
    *,
    shortcut: ShortcutType = "B",
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> CifarResNet:
    """Build a post-activation bottleneck CIFAR ResNet of depth ``9n + 2`` (ResNet-164: n = 18).

    The original (not pre-activation) ResNet-164 of He et al. (2016b, Table 3): stages of
    16/32/64 bottleneck planes expanded x4 to 64/128/256 channels.  Where the shape changes the
    shortcut is a 1x1 conv + BN projection (option B, the default) because the x4 channel
    expansion would otherwise be mostly zero padding.  For the pre-activation variant use
    :func:`prunesafe.models.cifar_preact_resnet` with ``block="bottleneck"``.

    Parameters
    ----------
    depth : int, default 164
        ``9n + 2`` with ``n >= 1`` (29, 47, 164, ...).
    num_classes : int, default 10
    shortcut : {"A", "B"}, default "B"
        ``"A"`` (zero padding) is allowed but unusual for bottlenecks.
    mean, std : sequence of float or None
        Normalisation of ``[0, 1]`` inputs applied inside the model.

    Examples
    --------
    >>> import torch
    >>> model = cifar_bottleneck_resnet(164)
    >>> sum(p.numel() for p in model.parameters())
    1704154
    >>> model.eval()(torch.rand(1, 3, 32, 32)).shape
    torch.Size([1, 10])
    """
    n = _blocks_per_stage(depth, 3, "29, 47, 164, ...")
    return CifarResNet([n, n, n], num_classes, block="bottleneck", shortcut=shortcut, mean=mean, std=std)
