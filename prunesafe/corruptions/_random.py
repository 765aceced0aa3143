"""Per-image random streams for the corruption engine.

Every image gets its own CPU :class:`torch.Generator` (Mersenne Twister), seeded from a 64-bit hash of the
key ``(seed, corruption name, severity, global image index)``.  A draw such as ``rng.randn((3, 32, 32))``
returns a tensor of shape ``(N, 3, 32, 32)`` whose row ``i`` comes from image ``i``'s stream only, so

* image ``i``'s randomness never depends on how the images were split into batches, nor on their order;
* the same key gives bit-identical draws on every machine (draws are made on the CPU, then moved to the
  target device, so CPU and GPU runs see the *same* random numbers; only the arithmetic that follows may
  round differently on another device).

Streams continue across calls: two consecutive ``rng.rand(())`` give two different numbers per image.
The streams are *not* numpy's: the engine reproduces the reference's distributions, not its exact draws.

Examples
--------
>>> rng = ImageRNG(0, "gaussian_noise", 3, indices=[5, 6])
>>> rng.randn((3, 32, 32)).shape
torch.Size([2, 3, 32, 32])
>>> a = ImageRNG(0, "gaussian_noise", 3, indices=[6]).randn((4,))
>>> b = ImageRNG(0, "gaussian_noise", 3, indices=[5, 6]).randn((4,))[1:]
>>> bool((a == b).all())
True
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

__all__ = ["DEFAULT_SEED", "ImageRNG", "image_seed"]

#: Seed used when ``seed=None`` is passed to :func:`~prunesafe.corruptions.corrupt` (reproducible default).
DEFAULT_SEED = 0

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(z: int) -> int:
    z = (z + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _base_key(seed: int, name: str, severity: int) -> int:
    digest = hashlib.blake2b(f"{seed}|{name}|{severity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def image_seed(seed: int, name: str, severity: int, index: int) -> int:
    """The 63-bit seed of image ``index``'s stream (what its ``torch.Generator`` is seeded with).

    Examples
    --------
    >>> image_seed(0, "fog", 1, 0) == image_seed(0, "fog", 1, 0) != image_seed(0, "fog", 1, 1)
    True
    """
    return _splitmix64(_base_key(seed, name, severity) ^ _splitmix64(index)) >> 1


def _splitmix64_u64(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """:func:`_splitmix64` on a uint64 array (numpy's unsigned arithmetic wraps modulo 2**64, as it must)."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _image_seeds(base: int, indices: Sequence[int]) -> list[int]:
    """:func:`image_seed` of many indices at once (vectorised; one Python int per index)."""
    z = _splitmix64_u64(np.uint64(base) ^ _splitmix64_u64(np.asarray(indices, dtype=np.uint64)))
    return [int(v) for v in (z >> np.uint64(1)).tolist()]


def _check_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in dims):
        raise ValueError(f"shape must be a sequence of non-negative ints, got {shape!r}")
    return tuple(int(d) for d in dims)


class ImageRNG:
    """One random stream per image; every draw has leading dimension ``N`` (the number of images).

    Parameters
    ----------
    seed : int
        User seed (non-negative).
    name : str
        Corruption name (part of the key, so corruptions draw independent numbers).
    severity : int
        Severity (part of the key).
    indices : sequence of int or 1-D tensor
        Global index of every image of the batch (e.g. its row in the source array).  Image ``k`` of the
        batch draws from the stream of ``indices[k]``.
    device : torch.device or str, default "cpu"
        Device of the returned tensors (draws are always made on the CPU).

    Examples
    --------
    >>> rng = ImageRNG(1, "shot_noise", 2, indices=range(3))
    >>> rng.uniform(-45, 45, ()).shape, rng.randint(0, 5, ()).dtype
    (torch.Size([3]), torch.int64)
    """

    def __init__(
        self,
        seed: int,
        name: str,
        severity: int,
        indices: Sequence[int] | Tensor | range,
        device: torch.device | str = "cpu",
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        idx = indices.tolist() if isinstance(indices, Tensor) else list(indices)
        if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0 for i in idx):
            raise ValueError("indices must be non-negative ints (global image indices)")
        self.seed, self.name, self.severity = int(seed), str(name), int(severity)
        self.indices = tuple(int(i) for i in idx)
        self.device = torch.device(device)
        self._seeds = _image_seeds(_base_key(self.seed, self.name, self.severity), self.indices)
        self._gens: list[torch.Generator] | None = None  # created on the first draw (deterministic
        # corruptions never draw, and creating 256 generators costs about as much as a cheap corruption)

    @property
    def _generators(self) -> list[torch.Generator]:
        if self._gens is None:
            self._gens = [torch.Generator().manual_seed(s) for s in self._seeds]
        return self._gens

    @property
    def n(self) -> int:
        """Number of images (streams)."""
        return len(self._seeds)

    def generator(self, k: int) -> torch.Generator:
        """The CPU generator of batch row ``k`` (for per-image code that cannot use the batched draws)."""
        return self._generators[k]

    def _fill(self, shape: int | Sequence[int], dtype: torch.dtype, kind: str) -> Tensor:
        dims = _check_shape(shape)
        out = torch.empty((self.n, *dims), dtype=dtype)
        for k, g in enumerate(self._generators):
            if kind == "rand":
                torch.rand(dims, generator=g, dtype=dtype, out=out[k])
            else:
                torch.randn(dims, generator=g, dtype=dtype, out=out[k])
        return out.to(self.device)

    def rand(self, shape: int | Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """Uniform draws in ``[0, 1)`` of shape ``(N, *shape)``."""
        return self._fill(shape, dtype, "rand")

    def randn(self, shape: int | Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """Standard normal draws of shape ``(N, *shape)``."""
        return self._fill(shape, dtype, "randn")

    def normal(
        self, loc: float, scale: float, shape: int | Sequence[int], dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Normal draws ``loc + scale * randn`` of shape ``(N, *shape)`` (numpy's ``normal(loc, scale)``)."""
        return self.randn(shape, dtype) * scale + loc

    def uniform(
        self, low: float, high: float, shape: int | Sequence[int], dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Uniform draws in ``[low, high)`` of shape ``(N, *shape)`` (numpy's ``uniform(low, high)``)."""
        if not high > low:
            raise ValueError(f"uniform needs high > low, got low={low}, high={high}")
        return self.rand(shape, torch.float64).mul_(high - low).add_(low).to(dtype)

    def randint(self, low: int, high: int, shape: int | Sequence[int] = ()) -> Tensor:
        """Integers uniform in ``[low, high)`` (numpy's ``randint``), int64 of shape ``(N, *shape)``."""
        if not high > low:
            raise ValueError(f"randint needs high > low, got low={low}, high={high}")
        dims = _check_shape(shape)
        out = torch.empty((self.n, *dims), dtype=torch.int64)
        for k, g in enumerate(self._generators):
            torch.randint(low, high, dims, generator=g, out=out[k])
        return out.to(self.device)

    def choice(self, n_options: int) -> Tensor:
        """One index in ``[0, n_options)`` per image: int64 of shape ``(N,)``."""
        return self.randint(0, n_options, ())

    def poisson(self, rates: Tensor) -> Tensor:
        """Poisson draws with the given rates (shape ``(N, ...)``), float32, exact (inversion).

        One float64 uniform per element is consumed from the image's stream, so the stream position does
        not depend on the rates.  The count is the smallest ``k`` with ``CDF(k) >= u``; the CDF is evaluated
        in float64 (tail mass below ``1e-13`` is cut off).
        """
        if rates.shape[0] != self.n:
            raise ValueError(f"rates must have leading dimension {self.n}, got shape {tuple(rates.shape)}")
        u = self.rand(tuple(rates.shape[1:]), torch.float64).to(rates.device)
        return _poisson_inverse(rates.to(torch.float64), u).to(torch.float32)

    def poisson_levels(self, levels: Tensor, level_rates: Tensor) -> Tensor:
        """Poisson draws with rate ``level_rates[levels]`` (fast path when rates take few distinct values).

        ``levels`` is an integer tensor of shape ``(N, ...)`` indexing the 1-D ``level_rates`` (e.g. the 256
        rates ``c * q / 255`` of uint8 pixels).  Consumes one float32 uniform per element (24-bit
        resolution; the CDF table is float32 too, so probabilities are resolved to about 6e-8) and inverts
        the CDF exactly at that resolution.
        """
        if levels.shape[0] != self.n:
            raise ValueError(f"levels must have leading dimension {self.n}, got shape {tuple(levels.shape)}")
        u = self.rand(tuple(levels.shape[1:]), torch.float32).to(levels.device)
        return _poisson_table(levels, level_rates.to(levels.device), u)


def _poisson_inverse(lam: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF Poisson sampling, vectorised: start from a Cornish-Fisher guess and walk to the answer."""
    lam = lam.clamp(min=0.0)
    z = torch.special.ndtri(u.clamp(1e-300, 1 - 1e-16))
    guess = torch.floor(lam + lam.sqrt() * z + (z * z - 1.0) / 6.0 + 0.5).clamp(min=0.0)
    k = guess
    # P(X <= k) via the regularised upper incomplete gamma: Q(k + 1, lam)
    cdf = torch.special.gammaincc(k + 1.0, lam)
    log_lam = torch.log(lam.clamp(min=1e-300))
    # walk down while P(X <= k - 1) >= u
    pmf_k = torch.exp(k * log_lam - lam - torch.lgamma(k + 1.0))
    pmf_k = torch.where(lam == 0, (k == 0).to(lam.dtype), pmf_k)
    cdf_below = cdf - pmf_k
    down = (cdf_below >= u) & (k > 0)
    while bool(down.any()):
        k = torch.where(down, k - 1.0, k)
        cdf = torch.where(down, cdf_below, cdf)
        pmf_k = torch.where(down, torch.exp(k * log_lam - lam - torch.lgamma(k + 1.0)), pmf_k)
        cdf_below = cdf - pmf_k
        down = down & (cdf_below >= u) & (k > 0)
    up = cdf < u
    while bool(up.any()):
        k = torch.where(up, k + 1.0, k)
        pmf = torch.exp(k * log_lam - lam - torch.lgamma(k + 1.0))
        cdf = torch.where(up, cdf + pmf, cdf)
        up = up & (cdf < u) & (cdf < 1.0 - 1e-13) & (k < lam + 40.0 * lam.sqrt() + 50.0)
    return k


@functools.lru_cache(maxsize=16)
def _poisson_lookup(rates: tuple[float, ...], device: str) -> tuple[Tensor, Tensor, int, int]:
    """CDF table (float32, ``len(rates) x (kmax + 1)``, flat) and guide table for :func:`_poisson_table`.

    The guide has ``n_bins`` (a power of two, so ``floor(u * n_bins)`` is exact for float32 ``u``) entries
    per rate: entry ``b`` is the smallest ``k`` whose float32 CDF reaches ``b / n_bins``, a lower bound of
    the answer for every ``u`` in bin ``b``.
    """
    lam = torch.tensor(rates, dtype=torch.float64)
    top = float(lam.max()) if len(rates) else 0.0
    kmax = math.ceil(top + 12.0 * math.sqrt(top) + 30.0)
    ks = torch.arange(kmax + 1, dtype=torch.float64)
    logp = ks[None, :] * torch.log(lam.clamp(min=1e-300))[:, None] - lam[:, None] - torch.lgamma(ks + 1.0)
    pmf = torch.exp(logp)
    pmf[lam == 0] = 0.0
    pmf[lam == 0, 0] = 1.0
    cdf = pmf.cumsum(1)
    cdf[:, -1] = 2.0  # every u < 1 stops at the last entry at the latest (tail mass < 1e-20 is cut)
    cdf32 = cdf.to(torch.float32)  # the comparisons are made against this table
    n_bins = 1 << max(kmax, 1).bit_length()  # >= kmax + 1: most bins hold at most one CDF step
    edges = torch.arange(n_bins, dtype=torch.float64) / n_bins
    guide = torch.searchsorted(cdf32.to(torch.float64), edges.expand(len(rates), n_bins).contiguous())
    guide = (guide + torch.arange(len(rates))[:, None] * (kmax + 1)).to(torch.int32)
    return cdf32.reshape(-1).to(device), guide.reshape(-1).to(device), kmax, n_bins


def _poisson_positions(levels: Tensor, rates: Tensor, u: Tensor) -> tuple[Tensor, int]:
    """Flat positions ``level * (kmax + 1) + count`` (int32, flattened) of inverse-CDF Poisson draws.

    ``levels`` holds integral values (any dtype) indexing ``rates``.  The count is the smallest ``k`` with
    ``CDF32(k) >= u``: start at the guide entry of ``u``'s bin, take one step up where ``u`` is above its
    CDF (on every element: no index bookkeeping), then finish the few draws still below (bins spanning
    several CDF steps) on their own.  Lookups are ``index_select`` with int32 positions (several times
    faster than ``take`` on CPU).  Returns the positions and ``kmax``.
    """
    flat_cdf, guide, kmax, n_bins = _poisson_lookup(tuple(rates.tolist()), str(levels.device))
    uu = u.reshape(-1)
    # bin of u (exact: n_bins is a power of two and u a float32 in [0, 1)) plus the level's first bin;
    # floored before the (exact, integral) sum so no fraction can round it up
    cell = (uu * n_bins).floor_().add_(levels.reshape(-1).to(uu.dtype), alpha=n_bins).to(torch.int32)
    pos = guide.index_select(0, cell)
    pos += uu > flat_cdf.index_select(0, pos)
    active = (uu > flat_cdf.index_select(0, pos)).nonzero().squeeze(1)
    for _ in range(3):  # the rest is settled within a step or two
        if not active.numel():
            break
        pos[active] += 1
        active = active[uu[active] > flat_cdf.index_select(0, pos[active])]
    if active.numel():  # far tails (u in a bin spanning many k): exact search in their rows
        row = torch.div(cell[active], n_bins, rounding_mode="floor")
        table = flat_cdf.reshape(-1, kmax + 1)[row]
        k = torch.searchsorted(table, uu[active, None], right=False).squeeze(1)
        pos[active] = (row * (kmax + 1) + k).to(torch.int32)
    return pos, kmax


def _poisson_table(levels: Tensor, rates: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF Poisson counts (float32, ``levels``' shape) for the rates ``rates[levels]``."""
    pos, kmax = _poisson_positions(levels, rates, u)
    first = levels.reshape(-1).to(torch.int32) * (kmax + 1)
    return pos.sub_(first).reshape(levels.shape).to(torch.float32)
