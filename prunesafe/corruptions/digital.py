"""Digital and colour corruptions: brightness, contrast, saturate, pixelate, jpeg_compression.

All five are deterministic.  CIFAR-10-C parameters of the reference (``make_cifar_c.py``):

================ ================================================== ==========================================
corruption       rule (``x = img / 255``)                            c for severity 1..5
================ ================================================== ==========================================
brightness       HSV value ``v <- clip(v + c, 0, 1)`` (skimage HSV)   0.05, 0.1, 0.15, 0.2, 0.3
contrast         ``(x - m) * c + m``, m = per-channel image mean      0.75, 0.5, 0.4, 0.3, 0.15
saturate         HSV saturation ``s <- clip(s * c0 + c1, 0, 1)``      (0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1),
                                                                      (2.5, 0.2)
pixelate         PIL BOX resize 32 -> int(32 c) -> 32 (uint8 twice)   0.95, 0.9, 0.85, 0.75, 0.65
jpeg_compression JPEG encode/decode at quality c (PIL/libjpeg)        80, 65, 58, 50, 40
================ ================================================== ==========================================

``rgb_to_hsv`` / ``hsv_to_rgb`` (computed in float64, like the reference) follow scikit-image's formulas
(ties of the maximum resolved blue > green > red, hue 0 for grey). ``pixelate`` reproduces Pillow's
fixed-point BOX resampling exactly (22-bit coefficients, rounding, a uint8 image after each pass).
``pixelate`` and ``jpeg_compression`` work on 8-bit images as the reference does, so float input is first
rounded to the nearest 1/255.

Examples
--------
>>> import torch
>>> x = torch.full((1, 3, 32, 32), 0.5)
>>> float(contrast(x, 1, None)[0, 0, 0, 0])
127.5
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from prunesafe.corruptions._ndimage import to_reference_f64
from prunesafe.corruptions._registry import register_corruption

__all__ = [
    "brightness",
    "contrast",
    "hsv_to_rgb",
    "jpeg_compression",
    "pil_box_matrix",
    "pixelate",
    "rgb_to_hsv",
    "saturate",
]

BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
SATURATE = ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
JPEG_QUALITY = (80, 65, 58, 50, 40)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB (N, 3, H, W) in [0, 1] to HSV (N, 3, H, W), all in [0, 1], like ``skimage.color.rgb2hsv``.

    Examples
    --------
    >>> rgb_to_hsv(torch.tensor([1.0, 0.5, 0.0]).reshape(1, 3, 1, 1)).flatten().tolist()
    [0.0833333358168602, 1.0, 1.0]
    """
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = torch.maximum(torch.maximum(r, g), b)
    delta = v - torch.minimum(torch.minimum(r, g), b)
    safe_delta = torch.where(delta == 0, torch.ones_like(delta), delta)
    s = torch.where(v == 0, torch.zeros_like(v), delta / torch.where(v == 0, torch.ones_like(v), v))
    # skimage assigns red, then green, then blue, so later channels win ties for the maximum
    h = torch.where(r == v, (g - b) / safe_delta, torch.zeros_like(v))
    h = torch.where(g == v, 2.0 + (b - r) / safe_delta, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe_delta, h)
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(delta == 0, torch.zeros_like(h), h)
    return torch.stack((h, s, v), dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV (N, 3, H, W) in [0, 1] to RGB, like ``skimage.color.hsv2rgb``.

    Examples
    --------
    >>> x = torch.rand(2, 3, 4, 4)
    >>> bool(torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-6))
    True
    """
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    h6 = h * 6.0
    hi = torch.floor(h6)
    f = h6 - hi
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    sector = torch.remainder(hi, 6.0)
    # skimage's table, sector 0..5 -> (r, g, b): (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q)
    s0, s1, s2, s3, s4 = (sector == k for k in range(5))
    r = torch.where(s0 | (sector == 5), v, torch.where(s1, q, torch.where(s4, t, p)))
    g = torch.where(s1 | s2, v, torch.where(s0, t, torch.where(s3, q, p)))
    b = torch.where(s3 | s4, v, torch.where(s2, t, torch.where(s0 | s1, p, q)))
    return torch.stack((r, g, b), dim=1)


def _uint8_levels(x: Tensor) -> Tensor | None:
    """``round(255 x)`` (float32) when every value is within 1e-3 of the uint8 grid, else None.

    On the grid, :func:`~prunesafe.corruptions._ndimage.to_reference_f64` recovers exactly ``level / 255``,
    so a table indexed by levels gives what the float64 formula gives.
    """
    v = x * 255.0
    r = torch.round(v)
    return r if not r.numel() or float(v.sub_(r).abs_().max()) < 1e-3 else None


@functools.lru_cache(maxsize=8)
def _brightness_table(severity: int, device: str) -> Tensor:
    """:func:`brightness`'s result for every (value level V, channel level X): float64, index ``256 V + X``.

    The float64 formula of :func:`brightness` evaluated on ``level / 255``, kept in float64 so that the table
    path and the formula path give the same numbers to the last bit (float output too, whatever else is
    in the batch).
    """
    c = BRIGHTNESS[severity - 1]
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    v, x64 = levels.reshape(256, 1), levels.reshape(1, 256)
    v_new = (v + c).clamp_(0.0, 1.0)
    safe_v = torch.where(v > 0, v, torch.ones_like(v))
    out = ((1.0 - (v - x64) / safe_v) * v_new).clamp_(0.0, 1.0).mul_(255.0)
    return out.reshape(-1).to(device)


def brightness(x: Tensor, severity: int, rng: Any) -> Tensor:
    """Raise the HSV value by ``c`` (clipped at 1); see the module docstring.

    skimage's ``hsv2rgb(h, s, v')`` after ``rgb2hsv`` equals ``v' * (1 - s * g)`` per channel, and
    ``s * g = (v - x) / v``; computing that in float64 gives the reference's numbers (the maximum channel
    and the minimum channel bit for bit; the middle one up to the last bit) in a few passes instead of
    the full HSV round trip (:func:`rgb_to_hsv` / :func:`hsv_to_rgb`, kept for reference and tests).
    Every channel's result depends only on its own level and the pixel's maximum, so 8-bit input is
    one lookup per value in a 256 x 256 table of that formula (:func:`_brightness_table`).
    """
    c = BRIGHTNESS[severity - 1]
    r = _uint8_levels(x)
    if r is not None:
        index = r.amax(dim=1, keepdim=True).mul_(256.0).add(r).to(torch.int32)
        return _brightness_table(severity, str(x.device)).index_select(0, index.reshape(-1)).reshape(x.shape)
    x64 = to_reference_f64(x)
    v = x64.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp_(0.0, 1.0)
    safe_v = torch.where(v > 0, v, torch.ones_like(v))
    out = (1.0 - (v - x64) / safe_v) * v_new
    return out.clamp_(0.0, 1.0).mul_(255.0)


@functools.lru_cache(maxsize=8)
def _saturate_tables(severity: int, device: str) -> tuple[Tensor, Tensor, Tensor]:
    """Per (max level V, min level M), index ``256 V + M``: ``v``, the divisor ``delta`` (1 for grey) and
    the new saturation ``s'``, float64, exactly as :func:`saturate` computes them per pixel."""
    c0, c1 = SATURATE[severity - 1]
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    v, mn = levels.reshape(256, 1).expand(256, 256), levels.reshape(1, 256).expand(256, 256)
    delta = v - mn
    s = torch.where(v == 0, torch.zeros_like(v), delta / torch.where(v == 0, torch.ones_like(v), v))
    s_new = (s * c0 + c1).clamp_(0.0, 1.0)
    divisor = torch.where(delta == 0, torch.ones_like(delta), delta)
    return tuple(t.reshape(-1).contiguous().to(device) for t in (v, divisor, s_new))  # type: ignore[return-value]


@functools.lru_cache(maxsize=4)
def _level_differences(device: str) -> Tensor:
    """``V / 255 - X / 255`` in float64 for every level pair, index ``256 V + X``."""
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    return (levels.reshape(256, 1) - levels.reshape(1, 256)).reshape(-1).to(device)


def saturate(x: Tensor, severity: int, rng: Any) -> Tensor:
    """Scale and shift the HSV saturation: ``s * c0 + c1`` clipped to [0, 1].

    Per channel the reference's result is ``v * (1 - s' * g)`` with ``g = (v - x) / (max - min)``
    (hue kept); grey pixels have hue 0, i.e. ``g = (0, 1, 1)``, so ``c1 > 0`` tints them red exactly as
    skimage does.  Computed in float64 in a few passes (see :func:`brightness`); for 8-bit input the
    per-pixel ``v``, ``max - min`` and ``s'`` come from tables indexed by the (max, min) levels.
    """
    c0, c1 = SATURATE[severity - 1]
    r = _uint8_levels(x)
    if r is not None:
        v_level, min_level = r.amax(dim=1, keepdim=True), r.amin(dim=1, keepdim=True)
        pixel = v_level.mul(256.0).add_(min_level).to(torch.int32).reshape(-1)
        n, _, h, w = x.shape
        v, divisor, s_new = (
            t.index_select(0, pixel).reshape(n, 1, h, w) for t in _saturate_tables(severity, str(x.device))
        )
        # v - x (float64, as the formula computes it) for every (V, X) level pair: one lookup per value
        pair = r.add(v_level, alpha=256.0).to(torch.int32).reshape(-1)
        g = _level_differences(str(x.device)).index_select(0, pair).reshape(x.shape).div_(divisor)
        if c1 != 0.0:  # grey pixels (hue 0): g = (0, 1, 1); with c1 == 0 their s' is 0 and g does not matter
            grey_g = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
            g = torch.where(v_level == min_level, grey_g, g)
        # 0 <= g <= 1 and 0 <= s' <= 1 (rounding is monotonic), so the result is in [0, 1]: no clamp needed
        return g.mul_(s_new).neg_().add_(1.0).mul_(v).mul_(255.0)
    x64 = to_reference_f64(x)
    v = x64.amax(dim=1, keepdim=True)
    delta = v - x64.amin(dim=1, keepdim=True)
    grey = delta == 0
    s = torch.where(v == 0, torch.zeros_like(v), delta / torch.where(v == 0, torch.ones_like(v), v))
    s_new = (s * c0 + c1).clamp_(0.0, 1.0)
    g = (v - x64) / torch.where(grey, torch.ones_like(delta), delta)
    grey_g = torch.tensor([0.0, 1.0, 1.0], dtype=x64.dtype, device=x64.device).view(1, 3, 1, 1)
    g = torch.where(grey, grey_g, g)
    out = (1.0 - s_new * g) * v
    return out.clamp_(0.0, 1.0).mul_(255.0)


def contrast(x: Tensor, severity: int, rng: Any) -> Tensor:
    """Pull every channel towards its image mean: ``(x - m) * c + m``."""
    c = CONTRAST[severity - 1]
    means = x.to(torch.float64).mean(dim=(2, 3), keepdim=True).to(x.dtype)
    return ((x - means) * c + means).clamp_(0.0, 1.0).mul_(255.0)


@functools.lru_cache(maxsize=32)
def pil_box_matrix(n_in: int, n_out: int) -> Tensor:
    """Pillow's fixed-point BOX resampling weights (``n_out x n_in``, integers in units of 2**-22).

    Pillow (``Resample.c``) centres output pixel ``i`` at ``(i + 0.5) * n_in / n_out``, takes the input
    pixels whose centres fall in the box ``(-0.5, 0.5]`` of the (scaled) filter, normalises the weights and
    rounds them to 22-bit fixed point; the output is ``(sum(w * p) + 2**21) >> 22`` clipped to 0..255.

    Examples
    --------
    >>> (pil_box_matrix(4, 2) / 2**22).tolist()
    [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
    """
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    mat = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        weights = []
        for j in range(lo, hi):
            arg = (j - center + 0.5) / filterscale
            weights.append(1.0 if -0.5 < arg <= 0.5 else 0.0)
        total = sum(weights)
        for j, w in zip(range(lo, hi), weights, strict=True):
            k = w / total if total else 0.0
            mat[i, j] = math.floor(k * (1 << 22) + 0.5) if k >= 0 else math.ceil(k * (1 << 22) - 0.5)
    return mat


def _pil_resize(img: Tensor, n_out: int) -> Tensor:
    """Pillow BOX resize of integer-valued float (N, C, H, W) images: horizontal pass, then vertical.

    Exact in float64; callers use float32 only when :func:`_dyadic` says every product and sum is exact.
    """
    n_in = img.shape[-1]
    m = pil_box_matrix(n_in, n_out).to(device=img.device, dtype=img.dtype)
    half, unit = float(1 << 21), float(1 << 22)
    tmp = (img @ m.T).add_(half).mul_(1.0 / unit).floor_().clamp_(0.0, 255.0)  # / 2**22: exact either way
    return (m @ tmp).add_(half).mul_(1.0 / unit).floor_().clamp_(0.0, 255.0)


def _to_uint8_levels(x: Tensor) -> Tensor:
    return torch.round(x.to(torch.float64) * 255.0)


def pixelate(x: Tensor, severity: int, rng: Any) -> Tensor:
    """Pillow BOX downscale to ``int(32 * c)`` pixels and back to 32 (exact fixed-point arithmetic)."""
    c = PIXELATE[severity - 1]
    size = x.shape[-1]
    small = int(size * c)
    if _dyadic(size, small) and _dyadic(small, size):  # exact in float32, levels rounded in float32 too
        img = torch.round(x.to(torch.float32) * 255.0)
    else:
        img = _to_uint8_levels(x)
    return _pil_resize(_pil_resize(img, small), size).to(torch.float32)


@functools.lru_cache(maxsize=32)
def _dyadic(n_in: int, n_out: int) -> bool:
    """True when every BOX weight is 0, 1/2 or 1 (so float32 sums of <= 2 products are exact).

    Holds for all CIFAR sizes (32 <-> 30, 28, 27, 24, 20): a box narrower than two pixels covers 1 or 2.
    """
    m = pil_box_matrix(n_in, n_out)
    ok = (m == 0) | (m == float(1 << 21)) | (m == float(1 << 22))
    return bool(ok.all()) and int((m > 0).sum(1).max()) <= 2


def _jpeg_pil(hwc: Tensor, quality: int) -> Tensor:
    """Pillow JPEG round trip per image (the reference's own code path): uint8 NHWC in, uint8 NHWC out."""
    from io import BytesIO

    import numpy as np
    from PIL import Image

    out = np.empty(tuple(hwc.shape), dtype=np.uint8)
    for k, im in enumerate(hwc.numpy()):
        buf = BytesIO()
        Image.fromarray(im).save(buf, "JPEG", quality=quality)
        buf.seek(0)
        out[k] = np.asarray(Image.open(buf).convert("RGB"))
    return torch.from_numpy(out)


_JPEG_MIN_PER_THREAD = 16  # below this many images per thread the pool's overhead outweighs the gain


@functools.lru_cache(maxsize=4)
def _jpeg_pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads for the JPEG round trips (created on first use)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prunesafe-jpeg")


def _jpeg_torchvision_hwc(chw: Tensor, quality: int) -> Tensor | None:
    """libjpeg round trip through ``torchvision.io`` of uint8 CPU images ``(N, 3, H, W)`` (views are fine).

    Returns uint8 NHWC (libjpeg's own layout, no transposing copy), or None when ``torchvision.io``
    cannot encode here.  libjpeg runs without the GIL, so the batch is split over ``torch``'s thread
    budget (``torch.get_num_threads()``); the result does not depend on the split.
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import decode_jpeg, encode_jpeg

            def round_trip(images: list[Tensor]) -> list[Tensor]:
                return list(decode_jpeg(encode_jpeg(images, quality=quality)))

            images = list(chw)
            workers = min(torch.get_num_threads(), len(images) // _JPEG_MIN_PER_THREAD)
            if workers > 1:
                parts = [images[i::workers] for i in range(workers)]
                done = list(_jpeg_pool(workers).map(round_trip, parts))
                decoded = [done[k % workers][k // workers] for k in range(len(images))]
            else:
                decoded = round_trip(images)
    except (ImportError, RuntimeError, AttributeError):
        return None
    # decode_jpeg returns CHW views of HWC buffers: stacking the HWC views is a plain copy
    return torch.stack([im.permute(1, 2, 0) for im in decoded])


def _jpeg_round_trip_hwc(chw: Tensor, quality: int, backend: str) -> Tensor:
    """uint8 ``(N, 3, H, W)`` CPU images -> their JPEG round trip as uint8 NHWC, by ``backend``."""
    out = _jpeg_torchvision_hwc(chw, quality) if backend in ("auto", "torchvision") else None
    if out is None:
        if backend == "torchvision":
            raise RuntimeError("torchvision.io cannot encode JPEG here; use backend='pil'")
        out = _jpeg_pil(chw.permute(0, 2, 3, 1), quality)
    return out


def jpeg_compression(x: Tensor, severity: int, rng: Any, *, backend: str = "auto") -> Tensor:
    """JPEG encode/decode at quality ``c`` (libjpeg, baseline, 4:2:0 chroma subsampling, Pillow's default).

    ``backend="auto"`` uses ``torchvision.io`` when it can encode and falls back to Pillow (the
    reference's library); both give bit-identical images (tested).
    """
    quality = JPEG_QUALITY[severity - 1]
    # nearest level; in float32 (what uint8 / 255 input needs exactly) unless the input is float64
    img = torch.round(x * 255.0).clamp_(0.0, 255.0).to(torch.uint8).cpu()
    if not img.shape[0]:  # libjpeg's list API needs at least one image
        return torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    out = _jpeg_round_trip_hwc(img, quality, backend).permute(0, 3, 1, 2)
    return out.to(device=x.device, dtype=torch.float32)


def jpeg_compression_uint8(x: Tensor, severity: int, *, backend: str = "auto") -> Tensor:
    """:func:`jpeg_compression` on uint8 NHWC images, returning uint8 NHWC (what ``corrupt`` uses for uint8).

    The reference's JPEG is an 8-bit operation end to end (Pillow in, Pillow out), so uint8 input needs
    no float round trip; the result equals ``jpeg_compression``'s after the uint8 conversion (tested).

    Examples
    --------
    >>> x = torch.full((2, 32, 32, 3), 128, dtype=torch.uint8)
    >>> y = jpeg_compression_uint8(x, 3)
    >>> y.dtype, tuple(y.shape), int(y[0, 0, 0, 0])
    (torch.uint8, (2, 32, 32, 3), 128)
    """
    if not x.shape[0]:
        return torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    out = _jpeg_round_trip_hwc(x.cpu().permute(0, 3, 1, 2), JPEG_QUALITY[severity - 1], backend)
    return out.to(x.device)


register_corruption("brightness", brightness, deterministic=True)
register_corruption("contrast", contrast, deterministic=True)
register_corruption("saturate", saturate, deterministic=True)
register_corruption("pixelate", pixelate, deterministic=True)
register_corruption(
    "jpeg_compression", jpeg_compression, deterministic=True, uint8_fn=jpeg_compression_uint8
)
