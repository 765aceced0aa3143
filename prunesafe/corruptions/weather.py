"""Snow, frost, fog and spatter with the CIFAR-10-C severity parameters, batched in torch.

Each function follows the engine's contract (:mod:`prunesafe.corruptions._registry`).  The arithmetic
follows the reference (Hendrycks & Dietterich 2019, ``make_cifar_c.py``) step by step; each corruption
has a ``*_given`` core that takes the random draws explicitly (the tests feed the same draws to a
transcription of the reference that uses the real scipy / scikit-image / OpenCV / ImageMagick).

snow
    Normal snow layer ``N(loc, scale)``, ``clipped_zoom`` (scipy ``zoom(order=1)``), threshold, 8-bit
    quantisation, ImageMagick motion blur (``angle ~ U(-135, -45)``), blended with a brightened grey
    version of the image, plus the layer rotated by 180 degrees.
frost
    ``clip(a * x + b * texture)`` with a random 32x32 crop of one of the first five frost textures,
    downscaled by 5 (``cv2.resize(fx=0.2)`` with INTER_LINEAR samples exactly every fifth pixel,
    starting at 2); the image enters as ``round(255 x)`` (8-bit, like the reference's PIL input).  The
    textures are not shipped: pass ``frost_dir`` (see docs/corruptions.md, section "Frost textures").
fog
    ``x + a * plasma`` rescaled by ``max / (max + a)``; the plasma fractal is the reference's
    diamond-square algorithm (``mapsize=32``), vectorised over the batch.
spatter
    Severities 1-3 ("water"): a thresholded blurred normal layer, its Canny edges, the chamfer
    distance to them, histogram equalisation and an emboss filter give a turquoise liquid layer;
    severities 4-5 ("mud"): brown blobs where the blurred layer is above threshold.  The OpenCV steps
    are reproduced by :mod:`prunesafe.corruptions._cv`.

Examples
--------
>>> import torch
>>> from prunesafe.corruptions._random import ImageRNG
>>> x = torch.rand(2, 3, 32, 32)
>>> fog(x, 3, ImageRNG(0, "fog", 3, indices=[0, 1])).shape
torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from prunesafe.corruptions import _cv, _magick
from prunesafe.corruptions._ndimage import gaussian_filter, zoom_matrix
from prunesafe.corruptions._random import ImageRNG
from prunesafe.corruptions._registry import register_corruption

__all__ = [
    "FOG_PARAMS",
    "FROST_ENV_VAR",
    "FROST_FILES",
    "FROST_PARAMS",
    "SNOW_PARAMS",
    "SPATTER_PARAMS",
    "fog",
    "fog_given",
    "frost",
    "frost_given",
    "load_frost_textures",
    "plasma_fractal",
    "snow",
    "snow_given",
    "spatter",
    "spatter_given",
]

#: (loc, scale, zoom, threshold, blur radius, blur sigma, blend) per severity (reference, CIFAR).
SNOW_PARAMS: tuple[tuple[float, float, float, float, float, float, float], ...] = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
#: (image weight, frost weight) per severity (reference, CIFAR).
FROST_PARAMS: tuple[tuple[float, float], ...] = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
#: (strength, wibble decay) per severity (reference, CIFAR).
FOG_PARAMS: tuple[tuple[float, float], ...] = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))
#: (loc, scale, sigma, threshold, intensity, mud) per severity (reference, CIFAR).
SPATTER_PARAMS: tuple[tuple[float, float, float, float, float, int], ...] = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
#: The frost texture files of the reference; it draws among the first five only.
FROST_FILES: tuple[str, ...] = (
    "frost1.png",
    "frost2.png",
    "frost3.png",
    "frost4.jpg",
    "frost5.jpg",
    "frost6.jpg",
)
#: Environment variable consulted when ``frost_dir`` is not given.
FROST_ENV_VAR = "PRUNESAFE_FROST_DIR"

_FROST_HELP = (
    "frost needs the reference's frost texture images frost1.png, frost2.png, frost3.png, frost4.jpg and "
    "frost5.jpg (the files next to make_cifar_c.py in the ImageNet-C repository, "
    "github.com/hendrycks/robustness, folder ImageNet-C/create_c; Apache-2.0).  Put them in a folder and "
    f"pass frost_dir=<folder> (CLI: --frost-dir) or set {FROST_ENV_VAR}; see docs/corruptions.md, section "
    "'Frost textures'"
)


def _check_x(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x must be float (N, 3, H, W), got shape {tuple(x.shape)}")


def _gray(x: Tensor) -> Tensor:
    """OpenCV ``COLOR_RGB2GRAY`` on float RGB ``(N, 3, H, W)`` → ``(N, 1, H, W)``."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _zero_below(x: Tensor, threshold: float) -> Tensor:
    """``where(x < threshold, 0, x)`` (the comparison in ``x``'s dtype), as one ``threshold`` kernel.

    ``F.threshold`` keeps ``x > t``; with ``t`` the next representable value below ``threshold`` that is
    ``x >= threshold`` exactly (torch's ``where`` / ``masked_fill`` are several times slower on CPU).
    """
    if x.dtype == torch.float64:
        below = math.nextafter(float(threshold), -math.inf)
    else:
        t = np.float32(threshold) if x.dtype == torch.float32 else np.float64(threshold)
        below = float(np.nextafter(t, np.array(-np.inf, dtype=t.dtype)))
    return torch.nn.functional.threshold(x, below, 0.0)


# -------------------------------------------------------------------------------------------------- snow
def _clipped_zoom(layer: Tensor, zoom: float) -> Tensor:
    """The reference's ``clipped_zoom`` for square ``(N, H, W)`` layers (centre crop, zoom, centre trim)."""
    h = layer.shape[-1]
    ch = math.ceil(h / zoom)
    top = (h - ch) // 2
    crop = layer[:, top : top + ch, top : top + ch]
    z = zoom_matrix(ch, zoom, dtype=layer.dtype).to(layer.device)
    zoomed = z @ crop @ z.T
    trim = (zoomed.shape[-1] - h) // 2
    return zoomed[:, trim : trim + h, trim : trim + h]


def snow_given(x: Tensor, severity: int, layer: Tensor, angle: Tensor) -> Tensor:
    """Snow with given draws: ``layer`` ``(N, H, W)`` standard normal, ``angle`` ``(N,)`` degrees.

    Examples
    --------
    >>> x = torch.zeros(1, 3, 32, 32)
    >>> out = snow_given(x, 1, torch.full((1, 32, 32), -10.0), torch.tensor([-90.0]))
    >>> round(float(out.max()), 4)  # no flakes: only the grey brightening, 0.05 * 0.5 * 255
    6.375
    """
    _check_x(x)
    loc, scale, zoom, thresh, radius, sigma, blend = SNOW_PARAMS[severity - 1]
    snow_layer = layer.to(device=x.device, dtype=torch.float64) * scale + loc
    if zoom != 1:  # zoom 1 is the identity (an exact product with the identity matrix)
        snow_layer = _clipped_zoom(snow_layer, zoom)
    snow_layer = _zero_below(snow_layer, thresh)
    eight = torch.floor_(snow_layer.clamp_(0.0, 1.0).mul_(255.0))
    blurred = _magick.motion_blur(eight.unsqueeze(1), radius, sigma, angle.to(x.device)) / 255.0
    img = x.to(torch.float32)
    grey = _gray(img).mul_(1.5).add_(0.5)
    out = img * blend
    out += torch.maximum(img, grey).mul_(1 - blend)  # blend * x + (1 - blend) * max(x, grey)
    out += blurred
    out += torch.flip(blurred, dims=(-2, -1))
    return out.clamp_(0.0, 1.0).mul_(255.0)


def snow(x: Tensor, severity: int, rng: ImageRNG) -> Tensor:
    """CIFAR-10-C snow.

    Examples
    --------
    >>> x = torch.rand(2, 3, 32, 32)
    >>> snow(x, 5, ImageRNG(0, "snow", 5, indices=[0, 1])).shape
    torch.Size([2, 3, 32, 32])
    """
    _check_x(x)
    # one call per image: H * W + 1 float32 normal draws (a third of the float64 draws' cost; the layer is
    # processed in float64); the last one gives the angle U(-135, -45) as 90 Phi(z) - 135 (Phi(z) ~ U(0, 1))
    h, w = x.shape[2], x.shape[3]
    draws = rng.randn((h * w + 1,), dtype=torch.float32)
    angle = torch.special.ndtr(draws[:, -1].to(torch.float64)) * 90.0 - 135.0
    return snow_given(x, severity, draws[:, :-1].reshape(-1, h, w), angle)


# ------------------------------------------------------------------------------------------------- frost
def _resolve_frost_dir(frost_dir: str | os.PathLike[str] | None) -> Path:
    if frost_dir is None:
        env = os.environ.get(FROST_ENV_VAR)
        if not env:
            raise FileNotFoundError(f"no frost_dir given and {FROST_ENV_VAR} is not set: {_FROST_HELP}")
        frost_dir = env
    if not isinstance(frost_dir, (str, os.PathLike)):
        raise TypeError(f"frost_dir must be a path (str or os.PathLike), got {type(frost_dir).__name__}")
    path = Path(frost_dir).expanduser()
    missing = [f for f in FROST_FILES[:5] if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"frost_dir {str(path)!r} lacks {', '.join(missing)}: {_FROST_HELP}")
    return path.resolve()


@functools.lru_cache(maxsize=4)
def _load_textures(folder: str) -> tuple[Tensor, ...]:
    from PIL import Image

    out = []
    for name in FROST_FILES[:5]:
        with Image.open(Path(folder) / name) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        h, w = arr.shape[:2]
        # cv2.resize(fx=fy=0.2, INTER_LINEAR): output round(0.2 * size); source (5 i + 2) exactly
        small = arr[2::5, 2::5][: round(h * 0.2), : round(w * 0.2)]
        out.append(torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1).to(torch.float32))
    return tuple(out)


def load_frost_textures(frost_dir: str | os.PathLike[str] | None = None) -> tuple[Tensor, ...]:
    """The five downscaled frost textures (float32 ``(3, h, w)`` RGB, 0..255) the reference draws from.

    ``frost_dir`` defaults to the folder named by the environment variable ``PRUNESAFE_FROST_DIR``;
    a missing folder or file raises ``FileNotFoundError`` saying where the textures come from.

    Examples
    --------
    >>> try:
    ...     load_frost_textures("/nonexistent")
    ... except FileNotFoundError as err:
    ...     "Frost textures" in str(err)
    True
    """
    return _load_textures(str(_resolve_frost_dir(frost_dir)))


def frost_given(x: Tensor, severity: int, textures: tuple[Tensor, ...], index: Tensor, u: Tensor) -> Tensor:
    """Frost with given draws: texture ``index`` ``(N,)`` in 0..4, crop position ``u`` ``(N, 2)`` in [0, 1).

    The crop's top-left corner is ``floor(u * (size - 32))`` on each axis (numpy's ``randint(0, size -
    32)``).  Returns float32 in the reference's scale (``clip(a * x + b * crop, 0, 255)``).

    Examples
    --------
    >>> tex = tuple(torch.full((3, 40, 40), 100.0) for _ in range(5))
    >>> out = frost_given(torch.zeros(1, 3, 32, 32), 1, tex, torch.tensor([0]), torch.zeros(1, 2))
    >>> out.unique().tolist()
    [20.0]
    """
    _check_x(x)
    a, b = FROST_PARAMS[severity - 1]
    h, w = x.shape[2], x.shape[3]
    windows, sizes = _texture_windows(textures, h, w, x.device, float(b))
    idx = index.to(device=x.device, dtype=torch.int64)
    th, tw = sizes[idx, 0], sizes[idx, 1]
    if bool(((th < h) | (tw < w)).any()):
        raise ValueError(f"every frost texture must be at least {h}x{w}, got sizes {sizes.tolist()}")
    uu = u.to(device=x.device, dtype=torch.float64)
    # the crop corner floor(u * (size - 32)) in float64, like math.floor(float(u) * (size - 32))
    r0 = torch.floor(uu[:, 0] * (th - h).to(torch.float64)).to(torch.int64)
    c0 = torch.floor(uu[:, 1] * (tw - w).to(torch.float64)).to(torch.int64)
    out = torch.round_(x.to(torch.float32) * 255.0)
    if a != 1:
        out.mul_(a)
    out += windows[idx, :, r0, c0]  # b * the (h, w) window at (r0, c0) of each image's texture
    return out.clamp_(0.0, 255.0)


@functools.lru_cache(maxsize=8)
def _texture_windows(
    textures: tuple[Tensor, ...], h: int, w: int, device: torch.device, weight: float
) -> tuple[Tensor, Tensor]:
    """``weight *`` the textures, zero-padded to one size, as all their ``h x w`` windows (a view).

    Returns the ``(T, 3, rows, cols, h, w)`` windows and the ``(T, 2)`` texture sizes.
    """
    if not textures or any(t.dim() != 3 or t.shape[0] != 3 for t in textures):
        raise ValueError("textures must be a non-empty tuple of (3, h, w) tensors")
    hm = max(h, *(int(t.shape[1]) for t in textures))
    wm = max(w, *(int(t.shape[2]) for t in textures))
    stack = torch.zeros((len(textures), 3, hm, wm), dtype=torch.float32)
    for k, t in enumerate(textures):
        stack[k, :, : t.shape[1], : t.shape[2]] = t.to(torch.float32).cpu()
    stack *= weight  # the same float32 product b * crop as per pixel
    sizes = torch.tensor([[int(t.shape[1]), int(t.shape[2])] for t in textures], dtype=torch.int64)
    return stack.to(device).unfold(2, h, 1).unfold(3, w, 1), sizes.to(device)


def frost(
    x: Tensor, severity: int, rng: ImageRNG, *, frost_dir: str | os.PathLike[str] | None = None
) -> Tensor:
    """CIFAR-10-C frost; ``frost_dir`` is the folder of the texture images (see docs/corruptions.md).

    Examples
    --------
    >>> x = torch.rand(1, 3, 32, 32)
    >>> try:
    ...     frost(x, 1, ImageRNG(0, "frost", 1, indices=[0]), frost_dir="/nonexistent")
    ... except FileNotFoundError as err:
    ...     "frost1.png" in str(err)
    True
    """
    _check_x(x)
    textures = load_frost_textures(frost_dir)
    # one draw of three uniforms per image: the texture floor(5 u0) (uniform on 0..4 like randint(0, 5)),
    # the crop position (u1, u2)
    u = rng.rand((3,), dtype=torch.float64)
    index = torch.floor(u[:, 0] * 5.0).to(torch.int64).clamp_(max=4)
    return frost_given(x, severity, textures, index, u[:, 1:])


# --------------------------------------------------------------------------------------------------- fog
_PLASMA_DRAWS = 1023  # number of uniforms the 32x32 diamond-square consumes: 3 * (1 + 4 + 16 + 64 + 256)


def plasma_fractal(u: Tensor, wibbledecay: float, mapsize: int = 32) -> Tensor:
    """Diamond-square height maps in ``[0, 1]`` from uniforms ``u`` ``(N, D)`` in ``[-1, 1)``: ``(N, m, m)``.

    Vectorised form of the reference's ``plasma_fractal``: each new point is the mean of its four
    neighbours (wrapping around) plus ``wibble**2 * u`` (the reference's ``wibble * uniform(-wibble,
    wibble)``), ``wibble`` starting at 100 and divided by ``wibbledecay`` per level; finally rescaled
    to ``[0, 1]``.  ``D`` is at least ``3 * (1 + 4 + ... + (m/2)**2)`` (1023 for ``m = 32``).

    Examples
    --------
    >>> maps = plasma_fractal(torch.rand(2, 1023, dtype=torch.float64) * 2 - 1, 3.0)
    >>> maps.shape, float(maps.min()), float(maps.max())
    (torch.Size([2, 32, 32]), 0.0, 1.0)
    """
    grid = _plasma_raw(u, wibbledecay, mapsize)
    grid = grid - grid.amin(dim=(1, 2), keepdim=True)
    return grid / grid.amax(dim=(1, 2), keepdim=True)


def _plasma_raw(u: Tensor, wibbledecay: float, mapsize: int) -> Tensor:
    """:func:`plasma_fractal` before the rescaling to ``[0, 1]`` (float64 ``(N, m, m)``)."""
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    n = u.shape[0]
    need = sum(3 * (mapsize // step) ** 2 for step in _plasma_steps(mapsize))
    if u.dim() != 2 or u.shape[1] < need:
        raise ValueError(f"u must be (N, >= {need}) uniforms for mapsize {mapsize}, got {tuple(u.shape)}")
    # every draw pre-scaled by its level's wibble**2 (the reference's wibble * uniform(-wibble, wibble))
    noise = u[:, :need].to(torch.float64) * _plasma_scale(mapsize, float(wibbledecay), str(u.device))
    grid = torch.zeros((n, 1, 1), dtype=torch.float64, device=u.device)  # the corners of the current level
    pos = 0
    for step in _plasma_steps(mapsize):
        k = mapsize // step
        blocks = noise[:, pos : pos + 3 * k * k].reshape(n, 3, k, k)
        pos += 3 * k * k
        # g[i + 1] and g[j + 1] wrap around: the grid padded periodically by one row and column
        g = _wrap(grid, (0, 1, 0, 1))
        down = g[:, :-1, :] + g[:, 1:, :]  # g[i, j] + g[i + 1, j], for j = 0..k
        # the diamond step, new points (2i + 1, 2j + 1): mean of the 4 corners plus noise
        centre = torch.add(blocks[:, 0], down[:, :, :-1] + down[:, :, 1:], alpha=0.25)
        c = _wrap(centre, (1, 0, 1, 0))
        # the square step: (2i, 2j + 1) from centres (i - 1, j), (i, j) and corners (i, j), (i, j + 1);
        # (2i + 1, 2j) from centres (i, j - 1), (i, j) and corners (i, j), (i + 1, j)
        left = (centre + c[:, :-1, 1:]) + (g[:, :-1, :-1] + g[:, :-1, 1:])
        left = torch.add(blocks[:, 1], left, alpha=0.25)
        top = torch.add(blocks[:, 2], (centre + c[:, 1:, :-1]) + down[:, :, :-1], alpha=0.25)
        new = torch.empty((n, 2 * k, 2 * k), dtype=torch.float64, device=u.device)
        new[:, 0::2, 0::2] = grid
        new[:, 0::2, 1::2] = left
        new[:, 1::2, 0::2] = top
        new[:, 1::2, 1::2] = centre
        grid = new
    return grid


def _wrap(grid: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    """Periodic padding of ``(N, k, k)`` grids by one row and one column (a 1 x 1 grid repeats)."""
    if grid.shape[-1] == 1:
        return grid.expand(grid.shape[0], 2, 2)
    return torch.nn.functional.pad(grid, pad, mode="circular")


def _plasma_steps(mapsize: int) -> list[int]:
    """The diamond-square step sizes ``mapsize, mapsize / 2, ..., 2``."""
    steps = []
    step = mapsize
    while step >= 2:
        steps.append(step)
        step //= 2
    return steps


@functools.lru_cache(maxsize=32)
def _plasma_scale(mapsize: int, wibbledecay: float, device: str) -> Tensor:
    """``wibble**2`` for every uniform the diamond-square consumes (``wibble`` = 100, / decay per level)."""
    scale = []
    wibble = 100.0
    for step in _plasma_steps(mapsize):
        scale += [wibble * wibble] * (3 * (mapsize // step) ** 2)
        wibble /= wibbledecay
    return torch.tensor(scale, dtype=torch.float64, device=device)


def fog_given(x: Tensor, severity: int, u: Tensor) -> Tensor:
    """Fog with given draws: ``u`` ``(N, 1023)`` uniforms in ``[-1, 1)`` for the plasma fractal.

    Examples
    --------
    >>> x = torch.full((1, 3, 32, 32), 0.5)
    >>> out = fog_given(x, 1, torch.zeros(1, 1023))  # flat plasma: 0 after rescaling (0/0 -> nan)
    >>> bool(torch.isnan(out).all())
    True
    """
    _check_x(x)
    a, decay = FOG_PARAMS[severity - 1]
    img = x.to(torch.float32)
    h, w = x.shape[2], x.shape[3]
    max_val = img.amax(dim=(1, 2, 3), keepdim=True)
    raw = _plasma_raw(u.to(x.device), decay, 32)
    low = raw.amin(dim=(1, 2), keepdim=True)
    span = (raw.amax(dim=(1, 2), keepdim=True) - low).to(torch.float32).unsqueeze(1)
    # (x + a * plasma) * max / (max + a) * 255 as x * s + (raw - low) * (a * s / span),
    # s = 255 * max / (max + a), plasma = (raw - low) / span
    s = max_val * 255.0 / (max_val + a)
    fog_layer = (raw[:, :h, :w] - low).unsqueeze(1).to(torch.float32).mul_(a * s / span)
    return torch.addcmul(fog_layer, img, s).clamp_(0.0, 255.0)


def fog(x: Tensor, severity: int, rng: ImageRNG) -> Tensor:
    """CIFAR-10-C fog.

    Examples
    --------
    >>> x = torch.rand(1, 3, 32, 32)
    >>> bool(fog(x, 5, ImageRNG(0, "fog", 5, indices=[0])).isfinite().all())
    True
    """
    _check_x(x)
    u = rng.uniform(-1.0, 1.0, (_PLASMA_DRAWS,), dtype=torch.float64)
    return fog_given(x, severity, u)


# ----------------------------------------------------------------------------------------------- spatter
_EMBOSS = [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]


def spatter_given(x: Tensor, severity: int, layer: Tensor) -> Tensor:
    """Spatter with given draws: ``layer`` ``(N, H, W)`` standard normal (the liquid layer's noise).

    Returns float32 in ``[0, 255]``.
    An image whose liquid layer stays below the threshold everywhere gives NaN in the reference (0/0),
    which its final ``np.uint8`` turns into 0 (x86); here such an image is returned as 0 directly.

    Examples
    --------
    >>> x = torch.full((1, 3, 32, 32), 0.5)
    >>> out = spatter_given(x, 4, torch.full((1, 32, 32), -5.0))  # no mud anywhere
    >>> torch.allclose(out, torch.full_like(out, 127.5))
    True
    """
    _check_x(x)
    loc, scale, sigma, thresh, intensity, mud = SPATTER_PARAMS[severity - 1]
    img = x.to(torch.float32)
    liquid = layer.to(device=x.device, dtype=torch.float64) * scale + loc
    liquid = gaussian_filter(liquid, sigma, mode="nearest")
    if mud == 0:
        liquid = _zero_below(liquid, thresh)
        # (liquid * 255).astype(np.uint8): truncation, and values >= 256 wrap around (numpy on x86): the
        # floor of these non-negative values as int64, then int64 -> uint8 keeps the value modulo 256
        liquid8 = torch.floor_(liquid * 255.0).to(torch.int64).to(torch.uint8)
        dist = _cv.distance_transform_l2_5(255 - _cv.canny(liquid8, 50, 150))
        dist = torch.clamp_(dist, max=20.0)  # THRESH_TRUNC at 20
        dist = torch.floor_(_cv.box3(dist).to(torch.float32))  # blur, astype(uint8)
        dist = _cv.equalize_hist(dist)
        dist = _cv.filter3_u8(dist, _EMBOSS)
        # blur of a uint8 image rounds; liquid8 * blur is an exact integer (< 2^16), so int32 then float32
        m = (_cv.box3_u8(dist) * liquid8).to(torch.float32)
        top = m.amax(dim=(1, 2), keepdim=True)
        m = m.div_(top).mul_(intensity).unsqueeze(1)
        colour = torch.tensor([175 / 255.0, 238 / 255.0, 238 / 255.0], dtype=torch.float32, device=x.device)
        out = m * colour.reshape(1, 3, 1, 1)
        out = out.add_(img).clamp_(0.0, 1.0).mul_(255.0)
        dry = top.reshape(-1) == 0  # 0/0 without liquid: NaN in the reference, np.uint8(nan) is 0
        if bool(dry.any()):
            out[dry] = 0.0
        return out
    mask = gaussian_filter((liquid > thresh).to(torch.float64), intensity, mode="nearest").to(torch.float32)
    mask = _zero_below(mask, 0.8).unsqueeze(1)
    colour = torch.tensor([63 / 255.0, 42 / 255.0, 20 / 255.0], dtype=torch.float32, device=x.device)
    out = img * (1 - mask)
    out += colour.reshape(1, 3, 1, 1) * mask
    return out.clamp_(0.0, 1.0).mul_(255.0)


def spatter(x: Tensor, severity: int, rng: ImageRNG) -> Tensor:
    """CIFAR-10-C spatter (water drops for severities 1-3, mud for 4-5).

    Examples
    --------
    >>> x = torch.rand(2, 3, 32, 32)
    >>> spatter(x, 2, ImageRNG(0, "spatter", 2, indices=[0, 1])).shape
    torch.Size([2, 3, 32, 32])
    """
    _check_x(x)
    # float32 normal draws (a third of the float64 draws' cost); the filtering is done in float64
    layer = rng.randn((x.shape[2], x.shape[3]), dtype=torch.float32)
    return spatter_given(x, severity, layer)


register_corruption("snow", snow, deterministic=False)
register_corruption("frost", frost, deterministic=False, options=("frost_dir",))
register_corruption("fog", fog, deterministic=False)
register_corruption("spatter", spatter, deterministic=False)
