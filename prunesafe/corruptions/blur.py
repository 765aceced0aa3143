"""Blur corruptions: defocus_blur, gaussian_blur, zoom_blur (all deterministic).

CIFAR-10-C parameters of the reference (``make_cifar_c.py``):

============= ========================================================= ====================================
corruption    rule (``x = img / 255``)                                   c for severity 1..5
============= ========================================================= ====================================
defocus_blur  ``cv2.filter2D`` with an anti-aliased disk (radius c0,     (0.3, 0.4), (0.4, 0.5), (0.5, 0.6),
              ``cv2.GaussianBlur`` 3x3 of sigma c1), BORDER_REFLECT_101   (1, 0.2), (1.5, 0.1)
gaussian_blur ``skimage.filters.gaussian(sigma=c)``: scipy's kernel        0.4, 0.6, 0.7, 0.8, 1.0
              (truncate 4), edge-replicating ("nearest") boundary
zoom_blur     mean of ``x`` and its centre zooms by each factor in           arange(1, 1.06 / 1.11 / 1.16 /
              ``c`` (``scipy.ndimage.zoom``, order 1, ceil-cropped)          1.21 / 1.26, 0.01)
============= ========================================================= ====================================

All three are linear filters, applied as small convolutions / matrix products in float32 (the reference
computes in float64 for defocus and gaussian blur, float32 for zoom blur).

Examples
--------
>>> import torch
>>> x = torch.full((1, 3, 32, 32), 0.25)
>>> round(float(gaussian_blur(x, 5, None).mean()), 4), round(float(zoom_blur(x, 5, None).mean()), 4)
(63.75, 63.75)
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prunesafe.corruptions._ndimage import gaussian_weights, zoom_matrix
from prunesafe.corruptions._registry import register_corruption

__all__ = ["defocus_blur", "defocus_kernel", "gaussian_blur", "zoom_blur", "zoom_blur_matrices"]

DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))
GAUSSIAN_BLUR = (0.4, 0.6, 0.7, 0.8, 1.0)
ZOOM_STOP = (1.06, 1.11, 1.16, 1.21, 1.26)


def _cv2_gaussian_3(sigma: float) -> np.ndarray:
    """OpenCV's 3-tap Gaussian (``getGaussianKernel(3, sigma)``) for ``sigma > 0``."""
    taps = np.exp(-(np.arange(-1, 2, dtype=np.float64) ** 2) / (2.0 * sigma * sigma))
    return taps / taps.sum()  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=8)
def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's anti-aliased disk: a 17x17 disk of ``radius`` blurred by a 3x3 Gaussian.

    Cropped to its non-zero support (the reference's zero margin does not change the filtered image).

    Examples
    --------
    >>> defocus_kernel(0.3, 0.4).shape, defocus_kernel(1.5, 0.1).shape
    ((3, 3), (5, 5))
    """
    if radius > 8:
        raise ValueError("radius > 8 is not used by the CIFAR parameters")
    ax = np.arange(-8, 9)
    xx, yy = np.meshgrid(ax, ax)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    g = _cv2_gaussian_3(alias_blur).astype(np.float32)
    # cv2.GaussianBlur = separable 3-tap correlation (the disk has a zero border, so the border mode is moot)
    padded = np.pad(disk, 1)
    rows = g[0] * padded[:, :-2] + g[1] * padded[:, 1:-1] + g[2] * padded[:, 2:]
    kern = g[0] * rows[:-2] + g[1] * rows[1:-1] + g[2] * rows[2:]
    nz = np.nonzero(kern)
    r0, r1, c0, c1 = nz[0].min(), nz[0].max(), nz[1].min(), nz[1].max()
    return kern[r0 : r1 + 1, c0 : c1 + 1].astype(np.float32)  # type: ignore[no-any-return]


def _filter_matrix(taps: np.ndarray, n: int, mode: str) -> np.ndarray:
    """``n x n`` matrix of a 1-D correlation with ``taps`` (centred) under a boundary ``mode``.

    ``mode="reflect101"`` is OpenCV's BORDER_REFLECT_101 (``c b | a b c``), ``"nearest"`` replicates the edge.
    """
    r = (len(taps) - 1) // 2
    mat = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for k, w in enumerate(taps):
            j = i + k - r
            if mode == "nearest":
                j = min(max(j, 0), n - 1)
            else:
                while j < 0 or j >= n:
                    j = -j if j < 0 else 2 * (n - 1) - j
            mat[i, j] += w
    return mat


def _apply_separable_sum(x: Tensor, lefts: Tensor, rights: Tensor) -> Tensor:
    """``sum_r lefts[r] @ x @ rights[r].T`` for (N, C, H, W) ``x``: two small GEMMs per term."""
    n, c, h, w = x.shape
    flat = x.reshape(n * c, h, w)
    out = torch.zeros_like(flat)
    for r in range(lefts.shape[0]):
        left = lefts[r].to(device=x.device, dtype=x.dtype)
        right_t = rights[r].to(device=x.device, dtype=x.dtype).T
        out += left @ (flat @ right_t)
    return out.reshape(n, c, h, w)


@functools.lru_cache(maxsize=16)
def _defocus_operators(severity: int, size: int) -> tuple[Tensor, Tensor]:
    kern = defocus_kernel(*DEFOCUS[severity - 1]).astype(np.float64)
    u, s, vt = np.linalg.svd(kern)
    keep = s > s[0] * 1e-12
    lefts = [_filter_matrix(u[:, t] * s[t], size, "reflect101") for t in np.flatnonzero(keep)]
    rights = [_filter_matrix(vt[t], size, "reflect101") for t in np.flatnonzero(keep)]
    return torch.from_numpy(np.stack(lefts)), torch.from_numpy(np.stack(rights))


def defocus_blur(x: Tensor, severity: int, rng: Any) -> Tensor:
    """Correlate every channel with the anti-aliased disk (``cv2.filter2D``, BORDER_REFLECT_101).

    The 2-D kernel is applied as the sum of its (at most 3) separable SVD terms, each a pair of 32x32
    boundary-aware matrices; exact up to float32 rounding.
    """
    lefts, rights = _defocus_operators(severity, x.shape[-1])
    out = _apply_separable_sum(x, lefts, rights)
    return out.clamp_(0.0, 1.0).mul_(255.0)


@functools.lru_cache(maxsize=16)
def _gaussian_operator(severity: int, size: int) -> Tensor:
    return torch.from_numpy(_filter_matrix(gaussian_weights(GAUSSIAN_BLUR[severity - 1]), size, "nearest"))


def gaussian_blur(x: Tensor, severity: int, rng: Any) -> Tensor:
    """``skimage.filters.gaussian`` with ``sigma = c`` on both spatial axes, edge-replicating boundary."""
    m = _gaussian_operator(severity, x.shape[-1])[None]
    return _apply_separable_sum(x, m, m).clamp_(0.0, 1.0).mul_(255.0)


@functools.lru_cache(maxsize=8)
def zoom_blur_matrices(severity: int, size: int = 32) -> Tensor:
    """The 1-D operators of the reference's ``clipped_zoom`` for every zoom factor of ``severity``.

    Returns ``(F, size, size)`` float64: factor ``f`` maps a row of the image to the same row of the
    centre-cropped (``ceil(size / z)`` pixels), linearly zoomed (scipy order 1) and centre-trimmed image.
    The factors are ``np.arange(1, stop, 0.01)`` exactly as the reference writes them (7 factors at
    severity 1: the float step makes ``arange`` include 1.06).

    Examples
    --------
    >>> zoom_blur_matrices(1).shape
    torch.Size([7, 32, 32])
    """
    factors = np.arange(1.0, ZOOM_STOP[severity - 1], 0.01)
    mats = []
    for z in factors:
        ch = math.ceil(size / z)
        top = (size - ch) // 2
        zm = zoom_matrix(ch, float(z))
        trim = (zm.shape[0] - size) // 2
        full = torch.zeros(size, size, dtype=torch.float64)
        full[:, top : top + ch] = zm[trim : trim + size]
        mats.append(full)
    return torch.stack(mats)


@functools.lru_cache(maxsize=8)
def _zoom_operators(severity: int, size: int) -> Tensor:
    """Kronecker-SVD of ``(I (x) I + sum_f Z_f (x) Z_f) / (F + 1)`` as ``sum_r W_r (x) W_r`` (exact rank).

    Many zoom factors crop to the same size, so the rank (3, 6, 8, 10, 13 terms for severity 1..5) is about
    half the number of factors; terms whose squared singular value is below 1e-12 of the largest are dropped.
    """
    mats = zoom_blur_matrices(severity, size)
    stack = torch.cat([torch.eye(size, dtype=torch.float64)[None], mats])
    v = stack.reshape(stack.shape[0], -1) / math.sqrt(stack.shape[0])
    _, s, wt = torch.linalg.svd(v, full_matrices=False)
    keep = s > s[0] * 1e-6
    w: Tensor = wt[keep].reshape(-1, size, size) * s[keep, None, None]
    return w


def zoom_blur(x: Tensor, severity: int, rng: Any) -> Tensor:
    """Average of ``x`` and its centre zooms: ``(x + sum_z zoom_z(x)) / (len(c) + 1)``.

    Computed as the equal operator ``sum_r W_r x W_r^T`` of :func:`_zoom_operators` (about half the GEMMs
    of one per zoom factor), or, beyond 6 terms, as one product with its dense ``1024 x 1024`` form.
    """
    w = _zoom_operators(severity, x.shape[-1])
    if w.shape[0] <= _KRON_MAX_TERMS:
        out = _apply_separable_sum(x, w, w)
    else:  # one (HW x HW) GEMM is cheaper than 2 small GEMMs for each of the many terms
        n, c, h, ww = x.shape
        op = _zoom_kron(severity, h, x.dtype, str(x.device))
        out = (x.reshape(n * c, h * ww) @ op.T).reshape(n, c, h, ww)
    return out.clamp_(0.0, 1.0).mul_(255.0)


#: Up to this many separable terms, per-term GEMMs beat the dense (H*W x H*W) operator (measured on CPU).
_KRON_MAX_TERMS = 6


@functools.lru_cache(maxsize=16)
def _zoom_kron(severity: int, size: int, dtype: torch.dtype, device: str) -> Tensor:
    """The dense zoom-blur operator ``sum_r W_r (x) W_r`` (``size**2`` square) on ``device``."""
    w = _zoom_operators(severity, size)
    op = torch.zeros(size * size, size * size, dtype=torch.float64)
    for r in range(w.shape[0]):
        op += torch.kron(w[r], w[r])
    return op.to(device=device, dtype=dtype)


register_corruption("defocus_blur", defocus_blur, deterministic=True)
register_corruption("gaussian_blur", gaussian_blur, deterministic=True)
register_corruption("zoom_blur", zoom_blur, deterministic=True)
