"""Batched torch versions of the scipy.ndimage / scikit-image operations the reference corruptions use.

Private helpers for :mod:`prunesafe.corruptions.geometric` and :mod:`prunesafe.corruptions.weather`.
Everything works on the last two dimensions (``H, W``) of a tensor with any leading dimensions, on any
device, in the tensor's dtype (the corruption modules use float64 where the reference does).

* :func:`gaussian_filter` -- ``skimage.filters.gaussian`` / ``scipy.ndimage.gaussian_filter`` on the two
  spatial axes: the same kernel (``radius = int(truncate * sigma + 0.5)``, weights from numpy exactly as
  scipy computes them) and the same boundary modes, applied as two small matrix products (fast on CPU
  and GPU); float64 results equal scipy's to about 1e-16 relative.
* :func:`zoom_matrix` -- the linear operator of ``scipy.ndimage.zoom(order=1)`` along one axis.
* :func:`map_coordinates_linear` -- ``scipy.ndimage.map_coordinates(order=1, mode="reflect")`` for one
  (row, column) coordinate pair per output pixel (one ``grid_sample`` call, in float64).
* :func:`weighted_rows` -- a fused gather + weighted sum of table rows (``embedding_bag``).
* :func:`to_reference_f64` / :func:`floor_safe_f32` -- exact ``uint8 / 255.`` recovery and a float32 cast
  that keeps ``floor`` (the reference's final ``np.uint8`` truncation) unchanged.

Examples
--------
>>> import torch
>>> x = torch.zeros(1, 5, 5, dtype=torch.float64)
>>> x[0, 2, 2] = 1.0
>>> round(float(gaussian_filter(x, 1.0, mode="reflect").sum()), 6)
1.0
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BoundaryMode",
    "boundary_index",
    "floor_safe_f32",
    "gaussian_filter",
    "gaussian_operator",
    "gaussian_weights",
    "map_coordinates_linear",
    "to_reference_f64",
    "weighted_rows",
    "zoom_matrix",
]

#: scipy.ndimage boundary modes used by the reference: ``nearest`` (edge replicated), ``reflect``
#: (half-sample symmetric, ``d c b a | a b c d``), ``mirror`` (whole-sample symmetric, OpenCV's
#: ``BORDER_REFLECT_101``, ``d c b | a b c d``).
BoundaryMode = Literal["nearest", "reflect", "mirror"]


def _check_mode(mode: str) -> None:
    if mode not in ("nearest", "reflect", "mirror"):
        raise ValueError(f"mode must be 'nearest', 'reflect' or 'mirror', got {mode!r}")


def boundary_index(index: Tensor, n: int, mode: BoundaryMode) -> Tensor:
    """Map integer positions (possibly outside ``[0, n)``) to in-range ones under a boundary ``mode``.

    Examples
    --------
    >>> boundary_index(torch.arange(-3, 7), 4, "reflect").tolist()
    [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]
    >>> boundary_index(torch.arange(-3, 7), 4, "mirror").tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    """
    _check_mode(mode)
    if mode == "nearest":
        return index.clamp(0, n - 1)
    if mode == "reflect":
        period = 2 * n
        i = torch.remainder(index, period)
        return torch.where(i >= n, period - 1 - i, i)
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * n - 2
    i = torch.remainder(index, period)
    return torch.where(i >= n, period - i, i)


def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The normalised 1-D Gaussian kernel scipy uses (float64, length ``2 * radius + 1``).

    Examples
    --------
    >>> gaussian_weights(0.25).round(4).tolist()
    [0.0003, 0.9993, 0.0003]
    >>> len(gaussian_weights(0.05))
    1
    """
    radius = int(truncate * float(sigma) + 0.5)
    if radius == 0:
        return np.ones(1, dtype=np.float64)
    sigma2 = float(sigma) * float(sigma)
    xs = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / sigma2 * xs**2)
    return phi / phi.sum()  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=64)
def _gaussian_operator(n: int, sigma: float, mode: str, truncate: float) -> Tensor:
    w = gaussian_weights(sigma, truncate)
    radius = (len(w) - 1) // 2
    mat = torch.zeros((n, n), dtype=torch.float64)
    rows = torch.arange(n)
    for k in range(-radius, radius + 1):
        cols = boundary_index(rows + k, n, mode)  # type: ignore[arg-type]
        mat.index_put_(
            (rows, cols), torch.full((n,), float(w[k + radius]), dtype=torch.float64), accumulate=True
        )
    return mat


def gaussian_operator(
    n: int, sigma: float, *, mode: BoundaryMode = "nearest", truncate: float = 4.0
) -> Tensor:
    """The ``n x n`` float64 matrix ``G`` of the 1-D Gaussian filter: ``filtered = G @ signal``.

    Examples
    --------
    >>> g = gaussian_operator(8, 1.0, mode="reflect")
    >>> torch.allclose(g.sum(1), torch.ones(8, dtype=torch.float64))
    True
    """
    _check_mode(mode)
    return _gaussian_operator(int(n), float(sigma), mode, float(truncate))


def gaussian_filter(
    x: Tensor, sigma: float, *, mode: BoundaryMode = "nearest", truncate: float = 4.0
) -> Tensor:
    """Gaussian filter over the last two dimensions, like ``scipy.ndimage.gaussian_filter``.

    ``sigma`` is the standard deviation in pixels on both spatial axes (``sigma <= 1e-15`` leaves ``x``
    unchanged, as scipy does); leading dimensions (images, channels) are not filtered.  Computed as
    ``G_h @ x @ G_w^T`` with the exact scipy kernel and boundary (:func:`gaussian_operator`); the
    result equals scipy's up to float64 rounding (about 1e-16 relative: the sums are added in another
    order).

    Examples
    --------
    >>> x = torch.arange(16, dtype=torch.float64).reshape(1, 4, 4)
    >>> torch.allclose(gaussian_filter(x, 0.0), x)
    True
    """
    _check_mode(mode)
    if sigma <= 1e-15 or len(gaussian_weights(sigma, truncate)) == 1:  # a one-tap kernel is the identity
        return x.clone()
    h, w = x.shape[-2], x.shape[-1]
    gh = gaussian_operator(h, sigma, mode=mode, truncate=truncate).to(device=x.device, dtype=x.dtype)
    gw = gh if w == h else gaussian_operator(w, sigma, mode=mode, truncate=truncate).to(x.device, x.dtype)
    return torch.matmul(torch.matmul(gh, x), gw.T)


def zoom_matrix(n_in: int, zoom: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """Operator ``Z`` (``n_out x n_in``) of ``scipy.ndimage.zoom(order=1)`` along one axis.

    ``n_out = round(n_in * zoom)`` and output sample ``o`` reads input coordinate
    ``o * (n_in - 1) / (n_out - 1)`` (scipy's default ``grid_mode=False``), linearly interpolated.

    Examples
    --------
    >>> zoom_matrix(3, 1.0).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> zoom_matrix(19, 1.75).shape
    torch.Size([33, 19])
    """
    n_out = round(n_in * zoom)
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    coord = np.arange(n_out, dtype=np.float64) * scale
    lo = np.floor(coord).astype(np.int64).clip(0, n_in - 1)
    frac = coord - lo
    hi = np.minimum(lo + 1, n_in - 1)
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(mat, (rows, lo), 1.0 - frac)
    np.add.at(mat, (rows, hi), frac)
    return torch.from_numpy(mat).to(dtype)


def weighted_rows(table: Tensor, index: Tensor, weights: Tensor) -> Tensor:
    """``out[p] = sum_k weights[p, k] * table[index[p, k]]``: a fused gather and weighted sum of rows.

    ``table`` is ``(M, C)`` (e.g. ``N * H * W`` pixels of ``C`` channels, NHWC order), ``index`` an int32 or
    int64 ``(P, K)`` tensor of row numbers and ``weights`` a ``(P, K)`` tensor of ``table``'s dtype; returns
    ``(P, C)``.  One ``embedding_bag`` call (several times faster on CPU than ``gather`` over channels
    followed by elementwise products); the ``K`` products are added in order ``k = 0, 1, ...`` in
    ``table``'s dtype.

    Examples
    --------
    >>> table = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    >>> weighted_rows(table, torch.tensor([[0, 2]]), torch.tensor([[0.5, 0.25]])).tolist()
    [[1.25, 12.5]]
    """
    return torch.nn.functional.embedding_bag(index, table, per_sample_weights=weights, mode="sum")


def map_coordinates_linear(image: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Bilinear sampling with scipy's ``mode="reflect"`` (half-sample symmetric) boundary.

    ``image`` is ``(N, C, H, W)``; ``rows`` and ``cols`` are ``(N, H', W')`` coordinates (float) of the
    input pixel each output pixel reads, the same for every channel.  Like
    ``map_coordinates(image, (rows, cols, channel), order=1, mode="reflect")`` on an HWC array: the
    interpolation is computed in float64 (as scipy does) and returned in ``image``'s dtype.

    One ``grid_sample`` call (bilinear, ``padding_mode="reflection"``, ``align_corners=False``: the same
    reflection about ``-0.5`` and ``size - 0.5``, then the same clamping of the taps); coordinates are
    converted to its normalised grid in float64, which moves them by about 1e-15 pixel.

    Examples
    --------
    >>> img = torch.arange(4, dtype=torch.float64).reshape(1, 1, 1, 4).expand(1, 1, 4, 4)
    >>> r = torch.zeros(1, 4, 4, dtype=torch.float64)
    >>> c = torch.full((1, 4, 4), -1.2, dtype=torch.float64)
    >>> round(float(map_coordinates_linear(img, r, c)[0, 0, 0, 0]), 6)
    0.2
    """
    if image.dim() != 4 or rows.dim() != 3 or rows.shape != cols.shape or rows.shape[0] != image.shape[0]:
        raise ValueError(
            f"image must be (N, C, H, W) and rows / cols (N, H', W'), got {tuple(image.shape)}, "
            f"{tuple(rows.shape)}, {tuple(cols.shape)}"
        )
    h, w = image.shape[2], image.shape[3]
    f64 = torch.float64
    grid = torch.empty((*rows.shape, 2), dtype=f64, device=image.device)
    # grid_sample (align_corners=False) reads pixel ((g + 1) * size - 1) / 2 for grid value g
    torch.mul(cols.to(f64) + 0.5, 2.0 / w, out=grid[..., 0]).sub_(1.0)
    torch.mul(rows.to(f64) + 0.5, 2.0 / h, out=grid[..., 1]).sub_(1.0)
    out = torch.nn.functional.grid_sample(
        image.to(f64), grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return out.to(image.dtype)


def to_reference_f64(x: Tensor) -> Tensor:
    """``x`` (float in ``[0, 1]``) as the reference's float64 ``np.array(img) / 255.``.

    Values within ``1e-3`` of a multiple of ``1/255`` (every float32 ``uint8 / 255``) are snapped to that
    multiple, so uint8 input is reproduced exactly; other float input is kept as it is.

    Examples
    --------
    >>> x = torch.tensor([128 / 255], dtype=torch.float32)
    >>> bool(to_reference_f64(x)[0] == 128 / 255)
    True
    """
    v = x * 255.0
    r = torch.round(v)
    off = (v - r).abs() >= 1e-3
    if not bool(off.any()):  # the common case: uint8 input
        return r.to(torch.float64) / 255.0
    return torch.where(off, v.to(torch.float64), r.to(torch.float64)) / 255.0


def floor_safe_f32(v: Tensor) -> Tensor:
    """Cast float64 ``v`` to float32 without changing ``floor(v)`` (the reference's uint8 truncation).

    A float64 just below an integer (e.g. ``127.99999999999997``) rounds *up* to ``128.0`` in float32;
    such values are moved to the next float32 below, so ``floor`` of the result equals ``floor(v)``.

    Examples
    --------
    >>> v = torch.tensor([127.99999999999997, 3.25], dtype=torch.float64)
    >>> torch.floor(floor_safe_f32(v)).tolist()
    [127.0, 3.0]
    """
    v32 = v.to(torch.float32)
    wrong = torch.floor(v32.to(torch.float64)) > torch.floor(v)
    if bool(wrong.any()):
        v32 = torch.where(wrong, torch.nextafter(v32, torch.full_like(v32, -float("inf"))), v32)
    return v32
