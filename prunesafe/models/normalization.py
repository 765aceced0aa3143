"""Input normalisation that travels with the model.

Every prunesafe model takes images scaled to ``[0, 1]`` (``torchvision.transforms.ToTensor``
output, or ``uint8 / 255``) and normalises them in its first module, :class:`Normalize`.
A user can therefore not forget the mean/std a checkpoint was trained with.  The buffers
are non-persistent, so state dicts stay identical to the public checkpoint format.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN", "IMAGENET_STD", "Normalize"]

#: Per-channel mean/std used by the public CIFAR ResNet checkpoints (akamaster): ImageNet statistics.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: CIFAR-10 training-set statistics (used by most CIFAR VGG recipes).
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Channel-wise ``(x - mean) / std`` for NCHW inputs in ``[0, 1]``.

    Parameters
    ----------
    mean, std : sequence of float
        One value per input channel; ``std`` must be positive.

    Examples
    --------
    >>> import torch
    >>> norm = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    >>> norm(torch.full((1, 3, 2, 2), 0.75))[0, :, 0, 0]
    tensor([1., 1., 1.])
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or len(mean) == 0:
            raise ValueError(
                f"mean and std must be non-empty and of equal length, got {len(mean)} and {len(std)}"
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive in every channel, got {tuple(std)}")
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = tuple(round(v, 4) for v in self.mean.flatten().tolist())
        std = tuple(round(v, 4) for v in self.std.flatten().tolist())
        return f"mean={mean}, std={std}"
