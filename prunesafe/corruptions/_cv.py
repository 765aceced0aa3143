"""Batched torch versions of the OpenCV 4 operations the reference ``spatter`` and ``snow`` use.

Private helpers of :mod:`prunesafe.corruptions.weather`.  Inputs are ``(N, H, W)`` tensors holding
8-bit values (any integer or float dtype unless said otherwise); every function matches OpenCV 4.x on
the same input (checked against ``opencv-python-headless`` 4.14 in tests/corruptions/test_weather.py):

* :func:`canny` -- ``cv2.Canny(img, low, high)`` (3x3 Sobel with replicated border, L1 magnitude,
  non-maximum suppression with OpenCV's integer tan(22.5°) test, 8-connected hysteresis).
* :func:`distance_transform_l2_5` -- ``cv2.distanceTransform(img, cv2.DIST_L2, 5)``: the 5x5 chamfer
  distance (weights 1, 1.4, 2.1969, float32 sums) to the nearest zero pixel, by OpenCV's two raster
  passes.
* :func:`box3` -- ``cv2.blur(img, (3, 3))`` (``BORDER_REFLECT_101``); :func:`filter3_u8` --
  ``cv2.filter2D(img, cv2.CV_8U, kernel)`` for a 3x3 integer kernel; :func:`equalize_hist` --
  ``cv2.equalizeHist``.

Examples
--------
>>> import torch
>>> img = torch.zeros(1, 8, 8)
>>> img[0, 2:6, 2:6] = 255
>>> int(canny(img, 50, 150).sum() / 255)
12
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunesafe.corruptions._ndimage import boundary_index

__all__ = ["box3", "canny", "distance_transform_l2_5", "equalize_hist", "filter3_u8"]

_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)


def _pad(x: Tensor, r: int, mode: str) -> Tensor:
    h, w = x.shape[-2], x.shape[-1]
    ri = boundary_index(torch.arange(-r, h + r, device=x.device), h, mode)  # type: ignore[arg-type]
    ci = boundary_index(torch.arange(-r, w + r, device=x.device), w, mode)  # type: ignore[arg-type]
    return x.index_select(-2, ri).index_select(-1, ci)


def _correlate3(x: Tensor, kernel: list[list[int]], mode: str) -> Tensor:
    p = _pad(x, 1, mode)
    h, w = x.shape[-2], x.shape[-1]
    out = torch.zeros_like(x)
    for i in range(3):
        for j in range(3):
            if kernel[i][j]:
                out = out + kernel[i][j] * p[..., i : i + h, j : j + w]
    return out


def canny(img: Tensor, low: float, high: float) -> Tensor:
    """``cv2.Canny(img, low, high)`` on a batch ``(N, H, W)`` of 8-bit images: 0/255 uint8 edges.

    Examples
    --------
    >>> canny(torch.zeros(2, 5, 5), 50, 150).shape
    torch.Size([2, 5, 5])
    """
    _n, h, w = img.shape
    # both 3x3 Sobel filters (replicated border) as one float32 convolution: exact for 8-bit input
    padded = torch.nn.functional.pad(img.to(torch.float32).unsqueeze(1), (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor(
        [[[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]], [[[-1, -2, -1], [0, 0, 0], [1, 2, 1]]]],
        dtype=torch.float32,
        device=img.device,
    )
    grad = torch.nn.functional.conv2d(padded, sobel).round().to(torch.int32)
    dx, dy = grad[:, 0], grad[:, 1]
    mag = dx.abs() + dy.abs()
    lo, hi = int(low), int(high)  # OpenCV floors the L1 thresholds
    mp = torch.nn.functional.pad(mag, (1, 1, 1, 1))  # magnitude is 0 outside the image
    centre = mp[:, 1 : h + 1, 1 : w + 1]

    def nb(di: int, dj: int) -> Tensor:
        return mp[:, 1 + di : h + 1 + di, 1 + dj : w + 1 + dj]

    ax = dx.abs()
    ay = dy.abs() << 15
    tg22x = ax * _TG22
    tg67x = tg22x + (ax << 16)
    horizontal = ay < tg22x
    vertical = ay > tg67x
    same_sign = (dx ^ dy) >= 0
    keep_h = (centre > nb(0, -1)) & (centre >= nb(0, 1))
    keep_v = (centre > nb(-1, 0)) & (centre >= nb(1, 0))
    keep_d_same = (centre > nb(-1, -1)) & (centre > nb(1, 1))
    keep_d_diff = (centre > nb(-1, 1)) & (centre > nb(1, -1))
    keep_d = torch.where(same_sign, keep_d_same, keep_d_diff)
    keep = torch.where(horizontal, keep_h, torch.where(vertical, keep_v, keep_d))
    candidate = (mag > lo) & keep
    edge = candidate & (mag > hi)
    # hysteresis: grow the strong edges through 8-connected candidates until nothing changes
    cand_f = candidate.to(torch.float32).unsqueeze(1)
    cur = edge.to(torch.float32).unsqueeze(1)
    while True:
        grown = torch.nn.functional.max_pool2d(cur, 3, stride=1, padding=1) * cand_f
        grown = torch.maximum(grown, cur)
        if torch.equal(grown, cur):
            break
        cur = grown
    return (cur.squeeze(1) * 255).to(torch.uint8)


def _min_of(items: list[Tensor]) -> Tensor:
    out = items[0]
    for item in items[1:]:
        out = torch.minimum(out, item)
    return out


_A, _B, _C = 1.0, 1.4, 2.1969  # OpenCV's 5x5 chamfer weights for DIST_L2 (float32 arithmetic)
_FAR = 1.0e30


def distance_transform_l2_5(img: Tensor) -> Tensor:
    """``cv2.distanceTransform(img, cv2.DIST_L2, 5)``: float32 chamfer distance to the nearest zero pixel.

    The two raster passes of OpenCV with its float32 sums (weights 1, 1.4, 2.1969); the candidates from
    the rows above (below) are computed for a whole row at once, the left-to-right (right-to-left)
    dependency within a row column by column, as OpenCV does.

    Examples
    --------
    >>> img = torch.full((1, 1, 6), 255)
    >>> img[0, 0, 0] = 0
    >>> distance_transform_l2_5(img)[0, 0].tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    n, h, w = img.shape
    dev = img.device
    f32 = torch.float32
    a, b, c = (torch.tensor(v, dtype=f32, device=dev) for v in (_A, _B, _C))
    pad = 2
    t = torch.full((n, h + 2 * pad, w + 2 * pad), _FAR, dtype=f32, device=dev)
    zero = img == 0
    c0 = pad
    for y in range(h):
        r = y + pad
        up1 = t[:, r - 1]
        up2 = t[:, r - 2]
        cand = _min_of(
            [
                up2[:, c0 - 1 : c0 - 1 + w] + c,
                up2[:, c0 + 1 : c0 + 1 + w] + c,
                up1[:, c0 - 2 : c0 - 2 + w] + c,
                up1[:, c0 - 1 : c0 - 1 + w] + b,
                up1[:, c0 : c0 + w] + a,
                up1[:, c0 + 1 : c0 + 1 + w] + b,
                up1[:, c0 + 2 : c0 + 2 + w] + c,
            ]
        )
        cand = torch.where(zero[:, y], torch.zeros_like(cand), cand)
        row = t[:, r]
        row[:, c0] = cand[:, 0]
        for j in range(1, w):
            left = row[:, c0 + j - 1] + a
            val = torch.minimum(cand[:, j], left)
            row[:, c0 + j] = torch.where(zero[:, y, j], cand[:, j], val)
    for y in range(h - 1, -1, -1):
        r = y + pad
        dn1 = t[:, r + 1]
        dn2 = t[:, r + 2]
        cand = _min_of(
            [
                t[:, r, c0 : c0 + w],
                dn2[:, c0 + 1 : c0 + 1 + w] + c,
                dn2[:, c0 - 1 : c0 - 1 + w] + c,
                dn1[:, c0 + 2 : c0 + 2 + w] + c,
                dn1[:, c0 + 1 : c0 + 1 + w] + b,
                dn1[:, c0 : c0 + w] + a,
                dn1[:, c0 - 1 : c0 - 1 + w] + b,
                dn1[:, c0 - 2 : c0 - 2 + w] + c,
            ]
        )
        row = t[:, r]
        row[:, c0 + w - 1] = cand[:, w - 1]
        for j in range(w - 2, -1, -1):
            right = row[:, c0 + j + 1] + a
            row[:, c0 + j] = torch.minimum(cand[:, j], right)
    return t[:, pad : pad + h, pad : pad + w].clone()


def box3(img: Tensor) -> Tensor:
    """``cv2.blur(img, (3, 3))`` with ``BORDER_REFLECT_101``: mean of the 3x3 neighbourhood (float64).

    Examples
    --------
    >>> box3(torch.full((1, 4, 4), 9.0)).unique().tolist()
    [9.0]
    """
    p = _pad(img.to(torch.float64), 1, "mirror")
    h, w = img.shape[-2], img.shape[-1]
    s = torch.zeros_like(p[..., 1 : h + 1, 1 : w + 1])
    for i in range(3):
        for j in range(3):
            s = s + p[..., i : i + h, j : j + w]
    return s * (1.0 / 9.0)


def filter3_u8(img: Tensor, kernel: list[list[int]]) -> Tensor:
    """``cv2.filter2D(img, cv2.CV_8U, kernel)`` (3x3 integer kernel, correlation, ``BORDER_REFLECT_101``).

    Examples
    --------
    >>> filter3_u8(torch.full((1, 3, 3), 10), [[0, 0, 0], [0, 2, 0], [0, 0, 0]]).unique().tolist()
    [20]
    """
    return _correlate3(img.to(torch.int64), kernel, "mirror").clamp(0, 255)


def equalize_hist(img: Tensor) -> Tensor:
    """``cv2.equalizeHist`` per image of an ``(N, H, W)`` 8-bit batch (int64 result).

    Examples
    --------
    >>> equalize_hist(torch.tensor([[[0, 1], [1, 3]]])).tolist()
    [[[0, 170], [170, 255]]]
    """
    n = img.shape[0]
    flat = img.reshape(n, -1).to(torch.int64)
    total = flat.shape[1]
    hist = torch.zeros((n, 256), dtype=torch.int64, device=img.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    first = (hist > 0).to(torch.int64).argmax(1, keepdim=True)
    first_count = hist.gather(1, first)
    scale = (255.0 / (total - first_count).clamp(min=1).to(torch.float32)).to(torch.float32)
    cum = hist.cumsum(1) - first_count  # sum of the bins after `first`, up to each bin
    lut = torch.round(cum.to(torch.float32) * scale).clamp(0, 255).to(torch.int64)
    levels = torch.arange(256, device=img.device).reshape(1, 256)
    lut = torch.where(levels <= first, torch.zeros_like(lut), lut)
    flat_single = first_count == total
    lut = torch.where(flat_single, first.expand(n, 256), lut)
    return lut.gather(1, flat).reshape(img.shape)
