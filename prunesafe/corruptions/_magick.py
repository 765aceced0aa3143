"""ImageMagick's motion blur (``MotionBlurImage``), batched in torch, without ImageMagick.

The reference CIFAR-10-C script blurs ``motion_blur`` images and ``snow`` layers with Wand's
``MagickMotionBlurImage(radius, sigma, angle)`` on an 8-bit PNG.  ImageMagick 6.9 / 7 (Q16) computes:

* kernel width ``w = 2 * ceil(radius) + 1`` (``GetOptimalKernelWidth1D`` for ``radius > 0``);
* one-sided Gaussian weights ``k_i ∝ exp(-i² / (2 sigma²))`` for ``i = 0 .. w-1``, normalised to sum 1;
* tap ``i`` reads the pixel at column offset ``ceil(i cos(angle) - 0.5)`` and row offset
  ``ceil(i sin(angle) - 0.5)`` (angle in degrees, rows pointing down), with the image edge replicated
  outside (the default "edge" virtual-pixel method);
* the weighted sum of the 16-bit quanta (``257 * value``) is rounded to a 16-bit quantum
  (``ClampToQuantum``) and the 8-bit PNG the reference decodes holds ``quantum // 257`` -- measured
  against ImageMagick 6.9.11-60 Q16 (Debian): 0 differing pixels in 40 images x 8 (radius, sigma)
  pairs x assorted angles, and every image of the CIFAR-10-C sample's ``motion_blur`` rows is
  reproduced bit for bit by some angle in ``[-45, 45]`` (tests/corruptions/test_geometric.py).

(ImageMagick before 6.8 rounded the offsets with ``(long)(v + 0.5)``, i.e. towards zero for negative
offsets; the sample matches the ``ceil(v - 0.5)`` rule implemented here.)  The sums are accumulated in
float32 (ImageMagick: double); this moves a 16-bit quantum across a multiple of 257 -- the only way the
8-bit result can change -- for about one pixel in 10^5.

Examples
--------
>>> kernel_width(6.0, 1.0)
13
>>> motion_kernel(6.0, 1.0)[:3].round(4).tolist()
[0.5703, 0.3459, 0.0772]
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from prunesafe.corruptions._ndimage import weighted_rows

__all__ = ["kernel_width", "motion_blur", "motion_kernel", "motion_offsets"]

_EPSILON = 1.0e-12  # ImageMagick's MagickEpsilon


def kernel_width(radius: float, sigma: float) -> int:
    """ImageMagick's ``GetOptimalKernelWidth1D(radius, sigma)``.

    For ``radius > 0`` the width is ``2 * ceil(radius) + 1``; for ``radius == 0`` ImageMagick grows the
    width until the outermost normalised weight drops below one 16-bit quantum.

    Examples
    --------
    >>> kernel_width(9, 2.5), kernel_width(0, 1.0)
    (19, 9)
    """
    if radius > _EPSILON:
        return int(2.0 * math.ceil(radius) + 1.0)
    gamma = abs(sigma)
    if gamma <= _EPSILON:
        return 3
    alpha = 1.0 / (2.0 * gamma * gamma)
    beta = 1.0 / (math.sqrt(2.0 * math.pi) * gamma)
    width = 5
    while True:
        j = (width - 1) // 2
        normalize = sum(math.exp(-(i * i) * alpha) * beta for i in range(-j, j + 1))
        value = math.exp(-(j * j) * alpha) * beta / normalize
        if value < 1.0 / 65535.0 or value < _EPSILON:
            break
        width += 2
    return width - 2


def motion_kernel(radius: float, sigma: float) -> np.ndarray:
    """The normalised one-sided Gaussian weights of ``MotionBlurImage`` (float64, length ``kernel_width``).

    Examples
    --------
    >>> round(float(motion_kernel(14, 12).sum()), 12)
    1.0
    """
    width = kernel_width(radius, sigma)
    s = sigma if abs(sigma) >= _EPSILON else _EPSILON
    i = np.arange(width, dtype=np.float64)
    k = np.exp(-(i * i) / (2.0 * s * s)) / (math.sqrt(2.0 * math.pi) * s)
    return k / k.sum()  # type: ignore[no-any-return]


def motion_offsets(width: int, angle: Tensor) -> tuple[Tensor, Tensor]:
    """Integer (column, row) offsets of the ``width`` taps for each angle (degrees): two ``(N, width)`` int64.

    Examples
    --------
    >>> dx, dy = motion_offsets(5, torch.tensor([0.0, 90.0, -45.0]))
    >>> dx.tolist()
    [[0, 1, 2, 3, 4], [0, 0, 0, 0, 0], [0, 1, 1, 2, 3]]
    >>> dy.tolist()
    [[0, 0, 0, 0, 0], [0, 1, 2, 3, 4], [0, -1, -1, -2, -3]]
    """
    a = angle.to(torch.float64).reshape(-1, 1) * (math.pi / 180.0)
    px = width * torch.sin(a)
    py = width * torch.cos(a)
    norm = torch.hypot(px, py)
    i = torch.arange(width, dtype=torch.float64, device=angle.device).reshape(1, -1)
    dx = torch.ceil(i * py / norm - 0.5).long()
    dy = torch.ceil(i * px / norm - 0.5).long()
    return dx, dy


def _motion_blur_planes(x: Tensor, kernel: np.ndarray, dx: Tensor, dy: Tensor) -> Tensor:
    """:func:`motion_blur` tap by tap: pad the edge once, then one lookup + weighted add per tap (float32)."""
    n, c, h, w = x.shape
    dev = x.device
    p = int(max(dx.abs().max(), dy.abs().max())) if len(kernel) > 1 and dx.numel() else 0
    padded = torch.nn.functional.pad(x.to(torch.float32), (p, p, p, p), mode="replicate") if p else x.float()
    hp, wp = h + 2 * p, w + 2 * p
    flat = padded.reshape(-1)
    i32 = torch.int32
    base = (
        (torch.arange(h, dtype=i32, device=dev) + p).reshape(h, 1) * wp
        + torch.arange(w, dtype=i32, device=dev)
        + p
    )
    planes = (torch.arange(n * c, dtype=i32, device=dev) * (hp * wp)).reshape(n, c, 1)
    start = planes + (dy * wp + dx).to(i32).reshape(n, 1, len(kernel))  # (n, c, width): shift per tap
    acc = torch.zeros(n * c * h * w, dtype=torch.float32, device=dev)
    for i in range(len(kernel)):
        index = (start[:, :, i : i + 1] + base.reshape(1, 1, h * w)).reshape(-1)
        acc.add_(flat.index_select(0, index), alpha=float(kernel[i]))
    quantum = torch.floor(acc * 257.0 + 0.5).clamp(0, 65535)
    eight = torch.floor(quantum * (1.0 / 257.0) + 1e-4)
    return eight.reshape(n, c, h, w)


def motion_blur(x: Tensor, radius: float, sigma: float, angle: Tensor) -> Tensor:
    """Motion-blur 8-bit images like ImageMagick: ``(N, C, H, W)`` values in 0..255 → rounded 0..255.

    ``x`` holds integer values (any float or integer dtype); ``angle`` is ``(N,)`` degrees, one per image.
    Returns float32 integers in ``[0, 255]`` (what the reference decodes from ImageMagick's PNG), as an
    ``(N, C, H, W)`` view of channels-last memory.

    Every output pixel's ``width`` taps (edge-replicated source pixels) are summed in one
    ``embedding_bag`` call over the NHWC pixel rows: weights in tap order, float32 accumulation.  Images with
    one or two channels (snow's layers) go tap by tap instead (:func:`_motion_blur_planes`, faster for them).

    Examples
    --------
    >>> img = torch.zeros(1, 1, 4, 4)
    >>> img[0, 0, 1, 1] = 255
    >>> motion_blur(img, 1.0, 1.0, torch.tensor([0.0]))[0, 0, 1].tolist()
    [88.0, 146.0, 0.0, 0.0]
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if angle.shape != (n,):
        raise ValueError(f"angle must have shape ({n},), got {tuple(angle.shape)}")
    dev = x.device
    kernel = motion_kernel(radius, sigma)
    width = len(kernel)
    dx, dy = motion_offsets(width, angle.to(dev))
    if c < 3:  # one or two planes (snow's layers): per-tap lookups beat embedding_bag's tiny rows
        return _motion_blur_planes(x, kernel, dx, dy)
    table = x.to(torch.float32).permute(0, 2, 3, 1).reshape(n * h * w, c)
    # source row / column of every tap, edge replicated (ImageMagick's default virtual pixels)
    i32 = torch.int32
    rows = torch.arange(h, dtype=i32, device=dev).reshape(1, h, 1) + dy.to(i32).reshape(n, 1, width)
    rows = (
        rows.clamp_(0, h - 1)
        .mul_(w)
        .add_((torch.arange(n, dtype=i32, device=dev) * (h * w)).reshape(n, 1, 1))
    )
    cols = torch.arange(w, dtype=i32, device=dev).reshape(1, w, 1) + dx.to(i32).reshape(n, 1, width)
    cols = cols.clamp_(0, w - 1)
    index = (rows.reshape(n, h, 1, width) + cols.reshape(n, 1, w, width)).reshape(n * h * w, width)
    # the kernel broadcast to every output pixel: a stride-0 view (nothing cached, nothing grows with N)
    weights = torch.from_numpy(kernel.astype(np.float32)).to(dev).expand(n * h * w, len(kernel))
    acc = weighted_rows(table, index, weights)  # taps added in order, float32
    quantum = torch.floor(acc * 257.0 + 0.5).clamp(0, 65535)
    eight = torch.floor(quantum * (1.0 / 257.0) + 1e-4)  # quantum // 257 (exact for integer quanta)
    return eight.reshape(n, h, w, c).permute(0, 3, 1, 2)
