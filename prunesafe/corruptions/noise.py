"""Noise corruptions: gaussian, shot (Poisson), impulse (salt & pepper) and speckle noise.

CIFAR-10-C severity parameters of the reference (Hendrycks & Dietterich 2019, ``make_cifar_c.py``), with
``x = img / 255`` and the result ``clip(., 0, 1) * 255`` truncated to uint8 by :func:`corrupt`:

=============== ============================================ ==================================
corruption      rule                                          c for severity 1..5
=============== ============================================ ==================================
gaussian_noise  ``x + N(0, c)`` per pixel and channel          0.04, 0.06, 0.08, 0.09, 0.10
shot_noise      ``Poisson(x * c) / c``                         500, 250, 100, 75, 50
impulse_noise   a fraction ``c`` of values set to 0 or 1       0.01, 0.02, 0.03, 0.05, 0.07
                (each with probability 1/2; skimage "s&p")
speckle_noise   ``x + x * N(0, c)``                            0.06, 0.10, 0.12, 0.16, 0.20
=============== ============================================ ==================================

The draws come from :class:`~prunesafe.corruptions._random.ImageRNG` (one stream per image), so values
match the reference in distribution, not pixel for pixel.

Examples
--------
>>> import torch
>>> from prunesafe.corruptions._random import ImageRNG
>>> x = torch.full((2, 3, 32, 32), 0.5)
>>> y = gaussian_noise(x, 5, ImageRNG(0, "gaussian_noise", 5, [0, 1]))
>>> round(float((y / 255 - x).std()), 2)
0.1
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from prunesafe.corruptions._random import ImageRNG, _poisson_inverse, _poisson_positions
from prunesafe.corruptions._registry import register_corruption

__all__ = ["gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"]

GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)
SHOT_NOISE = (500.0, 250.0, 100.0, 75.0, 50.0)
IMPULSE_NOISE = (0.01, 0.02, 0.03, 0.05, 0.07)
SPECKLE_NOISE = (0.06, 0.10, 0.12, 0.16, 0.20)


def gaussian_noise(x: Tensor, severity: int, rng: ImageRNG) -> Tensor:
    """Additive Gaussian noise with standard deviation ``c`` (in [0, 1] units); see the module docstring."""
    c = GAUSSIAN_NOISE[severity - 1]
    noise = rng.randn(tuple(x.shape[1:]))
    return torch.add(x, noise, alpha=c).clamp_(0.0, 1.0).mul_(255.0)  # x + c * noise, one pass


@functools.lru_cache(maxsize=16)
def _shot_values(c: float, kmax: int, device: str) -> Tensor:
    """``clamp(k / c, 0, 1) * 255`` (float32, as computed on the counts) for every flat table position."""
    k = torch.arange(kmax + 1, dtype=torch.float32)
    return (k / c).clamp_(0.0, 1.0).mul_(255.0).repeat(256).to(device)


def shot_noise(x: Tensor, severity: int, rng: ImageRNG) -> Tensor:
    """Poisson (photon) noise: ``Poisson(x * c) / c``; exact Poisson draws by inversion.

    Every image draws one float32 uniform per value.  An image on the uint8 grid (``x * 255`` integral, the
    case of every uint8 image) uses a 256-entry CDF table and maps the table position of each draw straight
    to its output value ``clamp(k / c, 0, 1) * 255``; another float image inverts the float64 CDF at the
    same uniforms (slower, same distribution).  The choice is made per image, so an image's output never
    depends on the other images of the batch.
    """
    c = SHOT_NOISE[severity - 1]
    q = torch.round(x * 255.0)
    u = rng.rand(tuple(x.shape[1:]), torch.float32).to(x.device)  # what rng.poisson_levels draws
    on_grid = (q / 255.0 == x).flatten(1).all(1)

    def from_table(levels_255: Tensor, uniforms: Tensor) -> Tensor:
        rates = torch.arange(256, dtype=torch.float64, device=x.device) / 255.0 * c
        pos, kmax = _poisson_positions(levels_255, rates, uniforms)
        return _shot_values(c, kmax, str(x.device)).index_select(0, pos).reshape(levels_255.shape)

    if bool(on_grid.all()):  # every uint8 batch
        return from_table(q, u)
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    grid, rest = on_grid.nonzero().squeeze(1), (~on_grid).nonzero().squeeze(1)
    if grid.numel():
        out[grid] = from_table(q[grid], u[grid])
    counts = _poisson_inverse(x[rest].to(torch.float64) * c, u[rest].to(torch.float64)).to(torch.float32)
    out[rest] = (counts / c).clamp_(0.0, 1.0).mul_(255.0)
    return out


def _impulse_flips(rng: ImageRNG, numel: int, amount: float, sigmas: float = 12.0) -> tuple[Tensor, Tensor]:
    """Which of ``numel`` values per image flip (probability ``amount`` each) and whether to 1 or to 0.

    Returns ``(position, salt)``, both ``(N, K)``: the flat positions of the flipped values in increasing
    order (entries ``>= numel`` are unused) and one fair bit per flip (True: salt, 1).  The gaps between
    flips are drawn by inversion, ``floor(log(1 - u) / log(1 - amount))`` (geometric: the number of kept
    values before the next flip), so an image consumes ``numel * amount`` uniforms plus a 12-sigma margin
    (2-4x ``numel * amount`` at the CIFAR amounts) instead of ``numel``; the salt bits come 31 per 32-bit
    draw.  ``K`` covers ``numel`` with a ``sigmas``-sigma
    margin; an image whose flips fall short (never seen at 12) continues its own stream until covered.
    """
    sd = math.sqrt(numel * amount * (1.0 - amount))
    k = max(1, math.ceil(numel * amount + sigmas * sd + 16.0))
    scale = 1.0 / math.log1p(-amount)
    u = rng.rand((k,), torch.float32)
    gaps = torch.log1p(-u.to(torch.float64)).mul_(scale).floor_().to(torch.int64)
    position = gaps.add_(1).cumsum(1).sub_(1)
    longer = {}
    for row in (position[:, -1] < numel).nonzero().flatten().tolist():  # extend this image's own stream
        parts = [position[row]]
        while int(parts[-1][-1]) < numel:
            u_more = torch.rand((k,), generator=rng.generator(row), dtype=torch.float32).to(u.device)
            extra = torch.log1p(-u_more.to(torch.float64)).mul_(scale).floor_().to(torch.int64)
            parts.append(extra.add_(1).cumsum(0).add_(parts[-1][-1]))
        longer[row] = torch.cat(parts)
    if longer:
        width = max(seq.numel() for seq in longer.values())
        wide = torch.full((rng.n, width), numel, dtype=torch.int64, device=position.device)
        wide[:, :k] = position
        for row, seq in longer.items():
            wide[row, : seq.numel()] = seq
        position = wide
    words = rng.randint(0, 1 << 31, (-(-position.shape[1] // 31),)).to(torch.int32)
    # flip j takes bit j % 31 of word j // 31: independent of how many words the batch draws
    shifts = torch.arange(31, dtype=torch.int32, device=words.device)
    bits = torch.bitwise_and(torch.bitwise_right_shift(words.unsqueeze(-1), shifts), 1)
    salt = bits.reshape(rng.n, -1)[:, : position.shape[1]].bool()
    return position, salt


def impulse_noise(x: Tensor, severity: int, rng: ImageRNG) -> Tensor:
    """Salt-and-pepper noise as ``skimage.util.random_noise(mode="s&p", amount=c)``.

    Every value (pixel and channel independently) is replaced with probability ``c``; a replaced value is
    1 (salt) or 0 (pepper) with probability 1/2 each -- the joint law of skimage's two Bernoulli draws.
    The flipped positions are drawn as geometric gaps (:func:`_impulse_flips`): the same law as one
    Bernoulli per value, with 2-4 ``c`` as many random numbers.
    """
    c = IMPULSE_NOISE[severity - 1]
    n = x.shape[0]
    if not n:
        return x * 255.0
    numel = x[0].numel()
    position, salt = _impulse_flips(rng, numel, c)
    position, salt = position.to(x.device), salt.to(x.device)
    keep = position < numel
    flat = position + torch.arange(n, device=x.device).reshape(n, 1) * numel
    out = torch.mul(x, 255.0, out=torch.empty(x.shape, dtype=x.dtype, device=x.device))  # contiguous
    out.view(-1)[flat[keep]] = salt[keep].to(x.dtype).mul_(255.0)
    return out


def speckle_noise(x: Tensor, severity: int, rng: ImageRNG) -> Tensor:
    """Multiplicative Gaussian noise ``x + x * N(0, c)``."""
    c = SPECKLE_NOISE[severity - 1]
    noise = rng.randn(tuple(x.shape[1:]))
    return torch.addcmul(x, x, noise, value=c).clamp_(0.0, 1.0).mul_(255.0)  # x + c * x * noise, one pass


register_corruption("gaussian_noise", gaussian_noise, deterministic=False)
register_corruption("shot_noise", shot_noise, deterministic=False)
register_corruption("impulse_noise", impulse_noise, deterministic=False)
register_corruption("speckle_noise", speckle_noise, deterministic=False)
