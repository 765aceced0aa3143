"""Glass blur, motion blur and elastic transform with the CIFAR-10-C severity parameters, batched in torch.

Each function follows the engine's contract (:mod:`prunesafe.corruptions._registry`): ``x`` float32
``(N, 3, 32, 32)`` in ``[0, 1]``, one random stream per image in ``rng``, result in the reference's
``[0, 255]`` scale before its final ``np.uint8`` truncation.  The arithmetic follows the reference
(Hendrycks & Dietterich 2019, ``make_cifar_c.py``) step by step -- float64 where it computes in float64,
float32 where it casts -- so that, given the same random draws, the output is the reference's (see
tests/corruptions/test_geometric.py); the draws themselves come from :class:`ImageRNG`, not numpy.
glass_blur and motion_blur start from the 8-bit image ``round(255 x)`` like the reference (which is
handed PIL images), so float input is quantised to 1/255 there; elastic_transform uses ``x`` as given.

glass_blur
    Gaussian blur (``sigma``), truncation to uint8, ``iterations`` rounds of local pixel moves, Gaussian
    blur again.  The reference's move loop ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on an HWC numpy
    array does *not* swap: both sides are views, so after the first assignment the second copies the
    new value back and only ``x[h, w] = x[h', w']`` survives (a duplication).  With
    ``randint(-1, 1)`` the source ``(h', w')`` is ``(h, w)`` or its upper / left / upper-left
    neighbour, and the loop visits pixels from the bottom-right corner upwards, so every source is read
    before the loop reaches it: the sequential loop equals one simultaneous gather per round.  That
    gather is what this module does (exact, not an approximation); the duplication is kept because the
    released files contain it (docs/corruptions.md measures the difference to a true swap).
motion_blur
    ImageMagick's motion blur (:mod:`prunesafe.corruptions._magick`, bit-exact to ImageMagick 6.9.11
    Q16) with ``angle ~ U(-45, 45)`` degrees per image.
elastic_transform
    Random affine warp of three control points (OpenCV ``getAffineTransform`` + ``warpAffine`` with
    linear interpolation, ``BORDER_REFLECT_101`` and OpenCV's 1/32-pixel fixed-point coordinates),
    then a smooth random displacement field (uniform noise, Gaussian-filtered with ``mode="reflect"``,
    ``truncate=3``) applied with ``map_coordinates(order=1, mode="reflect")``.

Examples
--------
>>> import torch
>>> from prunesafe.corruptions._random import ImageRNG
>>> x = torch.rand(2, 3, 32, 32)
>>> out = glass_blur(x, 3, ImageRNG(0, "glass_blur", 3, indices=[0, 1]))
>>> out.shape, out.dtype
(torch.Size([2, 3, 32, 32]), torch.float64)
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from prunesafe.corruptions import _magick
from prunesafe.corruptions._ndimage import gaussian_filter
from prunesafe.corruptions._random import ImageRNG
from prunesafe.corruptions._registry import register_corruption

__all__ = [
    "ELASTIC_PARAMS",
    "GLASS_PARAMS",
    "MOTION_PARAMS",
    "elastic_transform",
    "glass_blur",
    "glass_blur_given",
    "motion_blur",
]

#: (sigma, max_delta, iterations) per severity (reference, CIFAR).
GLASS_PARAMS: tuple[tuple[float, int, int], ...] = (
    (0.05, 1, 1),
    (0.25, 1, 1),
    (0.4, 1, 1),
    (0.25, 1, 2),
    (0.4, 1, 2),
)
#: (radius, sigma) of ImageMagick's motion blur per severity (reference, CIFAR).
MOTION_PARAMS: tuple[tuple[float, float], ...] = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))
#: (alpha, sigma, affine) per severity: 32 x the reference's CIFAR fractions.
ELASTIC_PARAMS: tuple[tuple[float, float, float], ...] = (
    (32 * 0.0, 32 * 0.0, 32 * 0.08),
    (32 * 0.05, 32 * 0.2, 32 * 0.07),
    (32 * 0.08, 32 * 0.06, 32 * 0.06),
    (32 * 0.1, 32 * 0.04, 32 * 0.05),
    (32 * 0.1, 32 * 0.03, 32 * 0.03),
)


def _check_x(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x must be float (N, 3, H, W), got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------- glass blur
def glass_blur_given(x: Tensor, severity: int, moves: Tensor) -> Tensor:
    """Glass blur with given pixel moves: ``moves`` int ``(N, iterations, 2, H-2, W-2)`` in ``{-1, 0}``.

    ``moves[:, it, 0]`` is the column offset ``dx`` and ``moves[:, it, 1]`` the row offset ``dy`` that
    the reference draws (``dx, dy = randint(-1, 1, 2)``) for target pixel ``(h, w)``, ``h, w >= 2``;
    pixels in the first two rows / columns are never targets.  Returns float64 in ``[0, 255]`` (both blurs
    in float64 like the reference, so the final truncation agrees with it; the moves copy the truncated
    8-bit values, exactly).

    Examples
    --------
    >>> x = torch.randint(0, 256, (1, 3, 32, 32)) / 255
    >>> still = torch.zeros(1, 1, 2, 30, 30, dtype=torch.long)  # sigma 0.05: blur is the identity
    >>> torch.allclose(glass_blur_given(x, 1, still).float(), x * 255, atol=1e-3)
    True
    """
    _check_x(x)
    sigma, delta, iterations = GLASS_PARAMS[severity - 1]
    if delta != 1:  # the simultaneous-gather identity below holds for sources up/left only
        raise ValueError("glass_blur_given supports max_delta == 1 (all CIFAR severities)")
    n, c, h, w = x.shape
    if moves.shape != (n, iterations, 2, h - 2, w - 2):
        raise ValueError(
            f"moves must have shape {(n, iterations, 2, h - 2, w - 2)}, got {tuple(moves.shape)}"
        )
    dev = x.device
    blurred = gaussian_filter(torch.round(x * 255.0).to(torch.float64).div_(255.0), sigma, mode="nearest")
    # np.uint8(... * 255), kept float64 (no clamp needed: a convex combination of [0, 1] values stays there)
    img = blurred.mul_(255.0).floor_().reshape(-1)
    # one flat source index per value: image-channel plane offset + source pixel (the pixel itself where
    # no move applies); each round is one index_select (the sequential loop = a simultaneous gather)
    rows = torch.arange(2, h, device=dev, dtype=torch.int32).reshape(1, h - 2, 1)
    cols = torch.arange(2, w, device=dev, dtype=torch.int32).reshape(1, 1, w - 2)
    planes = (torch.arange(n * c, device=dev, dtype=torch.int32) * (h * w)).reshape(n, c, 1, 1)
    ident = torch.arange(h * w, device=dev, dtype=torch.int32).reshape(1, h, w)
    for it in range(iterations):
        src = ident.expand(n, h, w).clone()
        mv = moves[:, it].to(device=dev, dtype=torch.int32)
        src[:, 2:, 2:] = (rows + mv[:, 1]) * w + (cols + mv[:, 0])
        img = img.index_select(0, (src.unsqueeze(1) + planes).reshape(-1))
    out = gaussian_filter(img.reshape(n, c, h, w).div_(255.0), sigma, mode="nearest")
    return out.clamp_(0.0, 1.0).mul_(255.0)


def _glass_moves(rng: ImageRNG, iterations: int, h: int, w: int) -> Tensor:
    """The reference's ``randint(-1, 1)`` moves, 31 per 32-bit draw: ``(N, iterations, 2, h-2, w-2)``.

    Each move is ``-1`` or ``0`` with probability 1/2, independently: one bit of a uniform 31-bit integer
    (``torch.randint(0, 2**31)`` takes one 32-bit Mersenne Twister output), so the stream supplies 31 moves
    per draw instead of one.
    """
    count = iterations * 2 * (h - 2) * (w - 2)
    words = rng.randint(0, 1 << 31, (-(-count // 31),)).to(torch.int32)
    shifts = torch.arange(31, dtype=torch.int32, device=words.device).reshape(1, 31, 1)
    bits = torch.bitwise_and(torch.bitwise_right_shift(words.unsqueeze(1), shifts), 1)  # (N, 31, words)
    return (
        bits.reshape(rng.n, 31 * words.shape[1])[:, :count].neg_().reshape(rng.n, iterations, 2, h - 2, w - 2)
    )


def glass_blur(x: Tensor, severity: int, rng: ImageRNG) -> Tensor:
    """CIFAR-10-C glass blur (see the module docstring for the reference's duplication "swap").

    Examples
    --------
    >>> x = torch.rand(1, 3, 32, 32)
    >>> glass_blur(x, 5, ImageRNG(0, "glass_blur", 5, indices=[0])).shape
    torch.Size([1, 3, 32, 32])
    """
    _check_x(x)
    _, _, iterations = GLASS_PARAMS[severity - 1]
    h, w = x.shape[2], x.shape[3]
    return glass_blur_given(x, severity, _glass_moves(rng, iterations, h, w))


# -------------------------------------------------------------------------------------------- motion blur
def motion_blur(x: Tensor, severity: int, rng: ImageRNG) -> Tensor:
    """CIFAR-10-C motion blur: ImageMagick ``motion_blur(radius, sigma, angle ~ U(-45, 45))``.

    Examples
    --------
    >>> x = torch.full((1, 3, 32, 32), 0.5)
    >>> motion_blur(x, 1, ImageRNG(0, "motion_blur", 1, indices=[0])).unique().tolist()
    [128.0]
    """
    _check_x(x)
    radius, sigma = MOTION_PARAMS[severity - 1]
    angle = rng.uniform(-45.0, 45.0, (), dtype=torch.float64)
    return _magick.motion_blur(torch.round(x * 255.0), radius, sigma, angle)


# -------------------------------------------------------------------------------------- elastic transform
def _affine_inverse(dst: Tensor) -> Tensor:
    """Inverse affine maps (``(N, 2, 3)``, float64) taking the perturbed points back to the fixed ones."""
    src = torch.tensor([[26.0, 26.0], [26.0, 6.0], [6.0, 6.0]], dtype=torch.float64, device=dst.device)
    n = dst.shape[0]
    ones = torch.ones((n, 3, 1), dtype=torch.float64, device=dst.device)
    a = torch.cat([dst, ones], dim=2)  # rows (x', y', 1)
    sol: Tensor = torch.linalg.solve(a, src.expand(n, 3, 2))  # a @ sol = src
    return sol.transpose(1, 2)


def _mirror_q(q: Tensor, limit: int) -> Tensor:
    """OpenCV BORDER_REFLECT_101 (whole-sample symmetric about 0 and ``limit``) on integer coordinates."""
    if limit <= 0:
        return torch.zeros_like(q)
    r = limit - (limit - q.abs()).abs()  # exact for |q| <= 2 limit: one reflection per side
    if bool((r < 0).any()):
        r = torch.remainder(q, 2 * limit)
        r = torch.where(r > limit, 2 * limit - r, r)
    return r


def _warp_affine_cv(img: Tensor, inv: Tensor) -> Tensor:
    """OpenCV 4 ``warpAffine`` (INTER_LINEAR, BORDER_REFLECT_101) with its fixed-point coordinates, float32.

    OpenCV rounds ``M * (x, y) * 1024`` to integers, adds 16 and shifts by 5: coordinates on a 1/32-pixel
    grid, the fraction indexing a table of float32 bilinear weights (exact products of multiples of 1/32).
    Here one ``grid_sample`` call does the interpolation: the 1/32-pixel coordinates are mirrored into the
    image first (mirroring the coordinate of a linear interpolation = mirroring its two taps), and for
    power-of-two sizes (all CIFAR ones) they pass through ``grid_sample``'s normalisation exactly, so its
    weights are OpenCV's table entries.
    """
    n, _, h, w = img.shape
    dev = img.device
    m = inv.reshape(n, 2, 3) * 1024.0
    xs = torch.arange(w, dtype=torch.float64, device=dev).reshape(1, 1, 1, w)
    ys = torch.arange(h, dtype=torch.float64, device=dev).reshape(1, 1, h, 1)
    # channel 0: x (column), channel 1: y (row), both in 1/32 pixel
    delta = torch.round(m[:, :, 0].reshape(n, 2, 1, 1) * xs).to(torch.int32)  # (n, 2, 1, w)
    start = torch.round(m[:, :, 1].reshape(n, 2, 1, 1) * ys + m[:, :, 2].reshape(n, 2, 1, 1))
    q = torch.bitwise_right_shift(start.to(torch.int32) + 16 + delta, 5)  # (n, 2, h, w); shift = floor
    grid = torch.empty((n, h, w, 2), dtype=torch.float32, device=dev)
    # grid_sample (align_corners=False) reads ((g + 1) * size - 1) / 2: g = (q / 32 + 0.5) * 2 / size - 1
    if h == w:  # both coordinates at once
        grid.copy_(_mirror_q(q, 32 * (w - 1)).permute(0, 2, 3, 1)).mul_(1.0 / (16.0 * w)).add_(1.0 / w - 1.0)
    else:
        for k, size in enumerate((w, h)):
            coord = grid[..., k].copy_(_mirror_q(q[:, k], 32 * (size - 1)))
            coord.mul_(1.0 / (16.0 * size)).add_(1.0 / size - 1.0)
    return torch.nn.functional.grid_sample(
        img.to(torch.float32), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


@functools.lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int, device: str) -> Tensor:
    """``(h, w, 2)`` float64: ``grid_sample``'s normalised coordinates of every pixel centre (x, y)."""
    gx = (torch.arange(w, dtype=torch.float64) + 0.5) * (2.0 / w) - 1.0
    gy = (torch.arange(h, dtype=torch.float64) + 0.5) * (2.0 / h) - 1.0
    return torch.stack([gx.expand(h, w), gy[:, None].expand(h, w)], dim=-1).to(device)


def elastic_given(x: Tensor, severity: int, affine: Tensor, noise: Tensor) -> Tensor:
    """Elastic transform with given draws: ``affine`` ``(N, 3, 2)``, ``noise`` ``(N, 2, H, W)``.

    ``affine`` perturbs the three control points (the reference's ``uniform(-c[2], c[2], (3, 2))``),
    ``noise[:, 0]`` / ``noise[:, 1]`` are the uniform ``[-1, 1)`` fields behind ``dx`` / ``dy``.
    Returns float32 in ``[0, 255]``.  The displacement is ``(gaussian(noise) * alpha).astype(float32)``
    like the reference, added to the integer pixel grid in float64 (numpy's ``int + float32``), and the
    ``map_coordinates`` interpolation is done in float64 (:func:`map_coordinates_linear`'s method).

    Examples
    --------
    >>> x = torch.rand(1, 3, 32, 32)
    >>> out = elastic_given(x, 1, torch.zeros(1, 3, 2), torch.zeros(1, 2, 32, 32))
    >>> bool((out - x * 255).abs().max() < 1e-3)
    True
    """
    _check_x(x)
    alpha, sigma, _ = ELASTIC_PARAMS[severity - 1]
    n, _, h, w = x.shape
    if noise.shape != (n, 2, h, w) or affine.shape != (n, 3, 2):
        raise ValueError(
            f"affine must be {(n, 3, 2)} and noise {(n, 2, h, w)}, got {tuple(affine.shape)}, "
            f"{tuple(noise.shape)}"
        )
    pts = torch.tensor([[26.0, 26.0], [26.0, 6.0], [6.0, 6.0]], dtype=torch.float32, device=x.device)
    dst = (pts + affine.to(device=x.device, dtype=torch.float32)).to(torch.float64)
    warped = _warp_affine_cv(x, _affine_inverse(dst))
    if alpha != 0.0:
        field = gaussian_filter(
            noise.to(device=x.device, dtype=torch.float64), sigma, mode="reflect", truncate=3.0
        )
        shift = (field * alpha).to(torch.float32)  # the reference's float32 dx (channel 0), dy (channel 1)
        grid = torch.empty((n, h, w, 2), dtype=torch.float64, device=x.device)
        grid.copy_(shift.permute(0, 2, 3, 1))
        if h == w:
            grid.mul_(2.0 / w)
        else:
            grid[..., 0].mul_(2.0 / w)
            grid[..., 1].mul_(2.0 / h)
        grid.add_(_pixel_grid(h, w, str(x.device)))
        warped = torch.nn.functional.grid_sample(
            warped.to(torch.float64), grid, mode="bilinear", padding_mode="reflection", align_corners=False
        ).to(torch.float32)
    return warped.clamp_(0.0, 1.0).mul_(255.0)


def elastic_transform(x: Tensor, severity: int, rng: ImageRNG) -> Tensor:
    """CIFAR-10-C elastic transform (random affine + smooth random displacement).

    Examples
    --------
    >>> x = torch.rand(2, 3, 32, 32)
    >>> elastic_transform(x, 4, ImageRNG(0, "elastic_transform", 4, indices=[0, 1])).shape
    torch.Size([2, 3, 32, 32])
    """
    _check_x(x)
    _, _, a = ELASTIC_PARAMS[severity - 1]
    h, w = x.shape[2], x.shape[3]
    # one draw per image: 6 affine offsets and the 2 noise fields, float32 uniforms (24-bit resolution; one
    # 32-bit Mersenne Twister output each instead of two), mapped to [-a, a) / [-1, 1) in float64
    u = rng.rand((6 + 2 * h * w,), torch.float32).to(torch.float64).mul_(2.0).sub_(1.0)
    affine = u[:, :6].reshape(-1, 3, 2) * a
    noise = u[:, 6:].reshape(-1, 2, h, w)
    return elastic_given(x, severity, affine, noise)


register_corruption("glass_blur", glass_blur, deterministic=False)
register_corruption("motion_blur", motion_blur, deterministic=False)
register_corruption("elastic_transform", elastic_transform, deterministic=False)
