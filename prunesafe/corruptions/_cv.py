"""Batched torch versions of the OpenCV 4 operations the reference ``spatter`` and ``snow`` use.

Private helpers of :mod:`prunesafe.corruptions.weather`.  Inputs are ``(N, H, W)`` tensors holding
8-bit values (any integer or float dtype unless said otherwise); every function matches OpenCV 4.x on
the same input (checked against ``opencv-python-headless`` 4.14 in tests/corruptions/test_weather.py):

* :func:`canny` -- ``cv2.Canny(img, low, high)`` (3x3 Sobel with replicated border, L1 magnitude,
  non-maximum suppression with OpenCV's integer tan(22.5°) test, 8-connected hysteresis).
* :func:`distance_transform_l2_5` -- ``cv2.distanceTransform(img, cv2.DIST_L2, 5)``: the 5x5 chamfer
  distance (weights 1, 1.4, 2.1969, float32 sums) to the nearest zero pixel, by OpenCV's two raster
  passes (bit for bit; the sequential column steps run in numpy on the CPU, see the function).
* :func:`box3` -- ``cv2.blur(img, (3, 3))`` (``BORDER_REFLECT_101``), :func:`box3_u8` the same blur of
  an 8-bit image (rounded); :func:`filter3_u8` -- ``cv2.filter2D(img, cv2.CV_8U, kernel)`` for a 3x3
  integer kernel; :func:`equalize_hist` -- ``cv2.equalizeHist``.

Speed notes (CPU): torch's comparisons on int16 and ``torch.where`` are several times slower than
arithmetic here, so masks are int16 sign bits (``(u - v) >> 15``) combined bitwise; 3-tap filters are
separable integer (or exact float64) sums.

Examples
--------
>>> import torch
>>> img = torch.zeros(1, 8, 8)
>>> img[0, 2:6, 2:6] = 255
>>> int(canny(img, 50, 150).sum() / 255)
12
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from prunesafe.corruptions._ndimage import boundary_index

__all__ = ["box3", "box3_u8", "canny", "distance_transform_l2_5", "equalize_hist", "filter3_u8"]

_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)


def _sum3(x: Tensor, dim: int, centre: int = 1) -> Tensor:
    """``x[k - 1] + centre * x[k] + x[k + 1]`` along ``dim`` (length shrinks by 2): a 1-D correlation.

    Used on integers and on float64 sums that are exact, so the order of the additions does not matter.
    """
    n = x.shape[dim]
    out = torch.add(x.narrow(dim, 0, n - 2), x.narrow(dim, 2, n - 2))
    mid = x.narrow(dim, 1, n - 2)
    return out.add_(mid, alpha=centre) if centre != 1 else out.add_(mid)


def _dilate3(x: Tensor) -> Tensor:
    """3x3 binary dilation of a ``(N, H, W)`` uint8 0/1 batch (zero outside the image)."""
    p = torch.nn.functional.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2], x.shape[-1]
    rows = p[:, :, 0:w] | p[:, :, 1 : w + 1]
    rows |= p[:, :, 2 : w + 2]
    out = rows[:, 0:h] | rows[:, 1 : h + 1]
    out |= rows[:, 2 : h + 2]
    return out


def canny(img: Tensor, low: float, high: float) -> Tensor:
    """``cv2.Canny(img, low, high)`` on a batch ``(N, H, W)`` of 8-bit images: 0/255 uint8 edges.

    Examples
    --------
    >>> canny(torch.zeros(2, 5, 5), 50, 150).shape
    torch.Size([2, 5, 5])
    """
    n, h, w = img.shape
    if n == 0:
        return torch.zeros(img.shape, dtype=torch.uint8, device=img.device)
    # both 3x3 Sobel filters (replicated border), separable, in exact integer arithmetic (|d| <= 1020)
    p = torch.nn.functional.pad(img.to(torch.int16), (1, 1, 1, 1), mode="replicate")
    dx = _sum3(p[:, :, 2:] - p[:, :, :-2], 1, centre=2)
    dy = _sum3(p[:, 2:, :] - p[:, :-2, :], 2, centre=2)
    ax = dx.abs()
    ay = dy.abs()
    mag = ax + ay  # L1 magnitude, <= 2040
    lo, hi = int(low), int(high)  # OpenCV floors the L1 thresholds
    # Comparisons as int16 sign masks (-1 where true, 0 elsewhere): ``(u - v) >> 15`` is -1 iff u < v
    # (|u - v| <= 2041); torch's int16 comparisons and where() are several times slower than this.
    mp = torch.nn.functional.pad(mag, (1, 1, 1, 1))  # magnitude is 0 outside the image
    mp1 = mp - 1

    def above(di: int, dj: int, strict: bool = True) -> Tensor:  # mag > (>=) neighbour (di, dj)
        src = mp if strict else mp1
        return (src[:, 1 + di : h + 1 + di, 1 + dj : w + 1 + dj] - mag) >> 15

    # OpenCV's direction test in 32-bit integers: |dy| << 15 against |dx| tan(22.5°) (and tan(67.5°))
    ax32 = ax.to(torch.int32)
    ay15 = ay.to(torch.int32) << 15
    tg22x = ax32 * _TG22
    horizontal = ((ay15 - tg22x) >> 31).to(torch.int16)
    vertical = ((tg22x + (ax32 << 16) - ay15) >> 31).to(torch.int16)
    same_sign = ~((dx ^ dy) >> 15)
    keep_h = above(0, -1) & above(0, 1, strict=False)
    keep_v = above(-1, 0) & above(1, 0, strict=False)
    keep_d = (same_sign & above(-1, -1) & above(1, 1)) | (~same_sign & above(-1, 1) & above(1, -1))
    keep = (horizontal & keep_h) | (~horizontal & ((vertical & keep_v) | (~vertical & keep_d)))
    candidate = keep & ((lo - mag) >> 15)  # and mag > lo
    edge = candidate & ((hi - mag) >> 15)  # and mag > hi
    # hysteresis: grow the strong edges through 8-connected candidates until nothing changes; images
    # that stopped changing drop out of the loop
    cand = (candidate & 1).to(torch.uint8)
    cur = (edge & 1).to(torch.uint8)
    active = torch.arange(cur.shape[0], device=img.device)
    sub_cur, sub_cand = cur, cand
    while active.numel():
        grown = _dilate3(sub_cur) & sub_cand
        grown |= sub_cur
        changed = (grown ^ sub_cur).flatten(1).any(1)
        if not bool(changed.any()):
            break
        cur[active] = grown
        keep_rows = changed.nonzero().squeeze(1)
        active = active[keep_rows]
        sub_cur, sub_cand = grown[keep_rows], sub_cand[keep_rows]
    return cur * 255


_A, _B, _C = 1.0, 1.4, 2.1969  # OpenCV's 5x5 chamfer weights for DIST_L2 (float32 arithmetic)
_FAR = 1.0e30


def distance_transform_l2_5(img: Tensor) -> Tensor:
    """``cv2.distanceTransform(img, cv2.DIST_L2, 5)``: float32 chamfer distance to the nearest zero pixel.

    The two raster passes of OpenCV with its float32 sums (weights 1, 1.4, 2.1969), bit for bit: every
    value is the same chain of float32 additions OpenCV makes.  The candidates from the rows above
    (below) are computed for a whole row at once, the left-to-right (right-to-left) dependency within a
    row column by column, as OpenCV does.  The batch is the innermost (contiguous) dimension of the
    work array, so each column step is one short vector operation over all images; it runs in numpy on
    the CPU (a column step costs about a microsecond there, several in torch; the input is copied to
    the CPU and the result back to ``img``'s device).  ``min(u, v) + w`` equals ``min(u + w, v + w)``
    in floating point (rounding is monotone), which lets the row pass share the pair minima of the rows
    above.  Pixels with no zero pixel in their image get ``1e30``.

    Examples
    --------
    >>> img = torch.full((1, 1, 6), 255)
    >>> img[0, 0, 0] = 0
    >>> distance_transform_l2_5(img)[0, 0].tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    n, h, w = img.shape
    f32 = np.float32
    a, b, c = f32(_A), f32(_B), f32(_C)
    p = 2
    # t[r, j] is the (n,) vector of all images' values at padded row r, column j
    t = np.empty((h + 2 * p, w + 2 * p, n), dtype=f32)
    for border in (t[:p], t[h + p :], t[p : h + p, :p], t[p : h + p, w + p :]):
        border.fill(_FAR)
    # pair minima of each finished row: pm1[r, j] = min(t[r, j - 1], t[r, j + 1]), pm2 likewise for j -+ 2
    pm1 = np.empty((h + 2 * p, w, n), dtype=f32)
    pm2 = np.empty((h + 2 * p, w, n), dtype=f32)
    for pm in (pm1, pm2):
        pm[:p].fill(_FAR)
        pm[h + p :].fill(_FAR)
    # 0 at the zero pixels, 1 elsewhere: cand * keep sets the zero pixels' candidates to 0 (FAR * 0 == 0)
    keep = (img != 0).to(device="cpu", dtype=torch.float32).permute(1, 2, 0).contiguous().numpy()
    cand = np.empty((w, n), dtype=f32)
    tmp = np.empty((w, n), dtype=f32)
    step = np.empty((n,), dtype=f32)
    cand_cols = list(cand)

    def from_rows(r1: int, r2: int) -> None:
        # cand = min(t[r1] + a, pm1[r1] + b, min(pm1[r2], pm2[r1]) + c): the 7 (8) mask taps of OpenCV
        np.add(t[r1, p : p + w], a, out=cand)
        np.add(pm1[r1], b, out=tmp)
        np.minimum(cand, tmp, out=cand)
        np.minimum(pm1[r2], pm2[r1], out=tmp)
        np.add(tmp, c, out=tmp)
        np.minimum(cand, tmp, out=cand)

    def along_row(r: int, cols: range, prev: int) -> None:
        row = list(t[r])
        row[p + cols[0]][...] = cand_cols[cols[0]]
        for j in cols[1:]:
            np.add(row[p + j + prev], a, out=step)
            np.minimum(cand_cols[j], step, out=row[p + j])
        np.minimum(t[r, p - 1 : p - 1 + w], t[r, p + 1 : p + 1 + w], out=pm1[r])
        np.minimum(t[r, p - 2 : p - 2 + w], t[r, p + 2 : p + 2 + w], out=pm2[r])

    for y in range(h):  # forward pass: rows above, then left to right
        from_rows(y + p - 1, y + p - 2)
        np.multiply(cand, keep[y], out=cand)
        along_row(y + p, range(w), -1)
    for y in range(h - 1, -1, -1):  # backward pass: rows below and the forward value, then right to left
        from_rows(y + p + 1, y + p + 2)
        np.minimum(cand, t[y + p, p : p + w], out=cand)
        along_row(y + p, range(w - 1, -1, -1), +1)
    return torch.from_numpy(t)[p : p + h, p : p + w].permute(2, 0, 1).contiguous().to(img.device)


def _pad_mirror(x: Tensor) -> Tensor:
    """Pad the last two dimensions by one pixel, ``BORDER_REFLECT_101`` (torch's ``reflect``).

    A dimension of length 1 is repeated instead (OpenCV's ``borderInterpolate`` maps every position of a
    length-1 axis to 0).
    """
    h, w = x.shape[-2], x.shape[-1]
    if h >= 2 and w >= 2 and x.numel():
        return torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    rows = boundary_index(torch.arange(-1, h + 1, device=x.device), h, "mirror")
    cols = boundary_index(torch.arange(-1, w + 1, device=x.device), w, "mirror")
    return x.index_select(-2, rows).index_select(-1, cols)


def _box_sum3(p: Tensor) -> Tensor:
    """3x3 sums of an already padded ``(..., H + 2, W + 2)`` tensor: rows, then columns."""
    return _sum3(_sum3(p, -1), -2)


def box3(img: Tensor) -> Tensor:
    """``cv2.blur(img, (3, 3))`` with ``BORDER_REFLECT_101``: mean of the 3x3 neighbourhood (float64).

    The nine values are summed in float64 -- exactly, hence in any order, for 8-bit integers and for
    float32 values of a bounded range such as the spatter distances (<= 20) -- and scaled by ``1 / 9``.

    Examples
    --------
    >>> box3(torch.full((1, 4, 4), 9.0)).unique().tolist()
    [9.0]
    """
    return _box_sum3(_pad_mirror(img.to(torch.float64))) * (1.0 / 9.0)


def box3_u8(img: Tensor) -> Tensor:
    """``cv2.blur(img, (3, 3))`` of an 8-bit image (``BORDER_REFLECT_101``): the rounded mean, int32.

    The sum ``S`` of the nine values is an exact integer and ``S / 9`` is never a tie, so the rounded
    mean is ``(S + 4) // 9`` (what ``round(box3(img))`` gives).

    Examples
    --------
    >>> box3_u8(torch.tensor([[[0, 0, 0], [0, 5, 0], [0, 0, 0]]])).tolist()
    [[[2, 1, 2], [1, 1, 1], [2, 1, 2]]]
    """
    s = _box_sum3(_pad_mirror(img.to(torch.int32)))
    s += 4
    return torch.div(s, 9, rounding_mode="floor")


def filter3_u8(img: Tensor, kernel: list[list[int]]) -> Tensor:
    """``cv2.filter2D(img, cv2.CV_8U, kernel)`` (3x3 integer kernel, correlation, ``BORDER_REFLECT_101``).

    Integer sums (int32: exact for 8-bit input and kernel weights up to about 10^6) clipped to
    ``[0, 255]``; returns int32.

    Examples
    --------
    >>> filter3_u8(torch.full((1, 3, 3), 10), [[0, 0, 0], [0, 2, 0], [0, 0, 0]]).unique().tolist()
    [20]
    """
    p = _pad_mirror(img.to(torch.int32))
    h, w = img.shape[-2], img.shape[-1]
    out = torch.zeros(p[..., 1 : h + 1, 1 : w + 1].shape, dtype=torch.int32, device=img.device)
    for i in range(3):
        for j in range(3):
            if kernel[i][j]:
                out.add_(p[..., i : i + h, j : j + w], alpha=int(kernel[i][j]))
    return out.clamp_(0, 255)


def equalize_hist(img: Tensor) -> Tensor:
    """``cv2.equalizeHist`` per image of an ``(N, H, W)`` 8-bit batch (int64 result).

    Examples
    --------
    >>> equalize_hist(torch.tensor([[[0, 1], [1, 3]]])).tolist()
    [[[0, 170], [170, 255]]]
    """
    n = img.shape[0]
    flat = img.reshape(n, img.shape[-2] * img.shape[-1]).to(torch.int64)
    total = flat.shape[1]
    hist = torch.zeros((n, 256), dtype=torch.int64, device=img.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    first = (hist > 0).to(torch.int64).argmax(1, keepdim=True)
    first_count = hist.gather(1, first)
    scale = (255.0 / (total - first_count).clamp(min=1).to(torch.float32)).to(torch.float32)
    cum = hist.cumsum(1) - first_count  # sum of the bins after `first`, up to each bin
    lut = torch.round(cum.to(torch.float32) * scale).clamp(0, 255).to(torch.int64)
    levels = torch.arange(256, device=img.device).reshape(1, 256)
    lut *= levels > first  # levels up to the first occupied one map to 0 (torch.where is slow on CPU)
    single = (first_count == total).reshape(n)  # one level only: OpenCV keeps it
    if bool(single.any()):
        lut[single] = first[single].expand(-1, 256)
    return lut.gather(1, flat).reshape(img.shape)
