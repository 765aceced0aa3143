"""Paired distribution test of (output - input) between the engine and the reference sample (C2's tests).

The sample holds one reference draw per clean image (test images 0-199, severity s in rows
[(s-1)*200, s*200)); the engine produces one independent draw per *same* image.  For a per-image
statistic f (mean of the change, its standard deviation, the fraction of pixels whose change falls in
each histogram bin) the paired differences ``d_i = f(engine_i) - f(sample_i)`` are independent across
images with mean 0 when both draw from the same distribution, so

    z = mean(d) / (std(d) / sqrt(n))

is approximately standard normal (n = 200, CLT).  The tolerance is therefore the sampling spread
itself: we require ``|z| <= Z_MAX`` with ``Z_MAX = 4.5`` (two-sided p = 7e-6 per check, so the ~600
checks of the C2 corruptions give a family-wise false-alarm rate below 0.5 %).  A systematic
difference of the implementation shows up as a growing |z|; the same test rejects, e.g., a glass blur
that truly swaps pixels (test_geometric.py).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> clean = rng.integers(0, 200, (200, 4, 4, 3))
>>> a = clean + rng.integers(0, 20, clean.shape)
>>> b = clean + rng.integers(0, 20, clean.shape)
>>> bool(np.abs(paired_z(clean, a, b)).max() < Z_MAX)
True
"""

from __future__ import annotations

import itertools

import numpy as np

Z_MAX = 4.5
#: bin edges of the change (output - input), integer levels; bins are [e_k, e_{k+1})
EDGES = np.array([-256, -64, -16, -4, -1, 0, 1, 4, 16, 64, 256])


def per_image_stats(clean: np.ndarray, corrupted: np.ndarray) -> np.ndarray:
    """(n, 2 + bins) per-image statistics of the change: mean, std, fraction in each bin."""
    d = corrupted.astype(np.int16).reshape(len(clean), -1) - clean.astype(np.int16).reshape(len(clean), -1)
    idx = np.searchsorted(EDGES, d, side="right") - 1
    fracs = np.stack([(idx == k).mean(1) for k in range(len(EDGES) - 1)], axis=1)
    return np.concatenate([d.mean(1, keepdims=True), d.std(1, keepdims=True), fracs], axis=1)


def paired_z(clean: np.ndarray, engine: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """z-scores (one per statistic) of the paired differences engine - sample (0 where both agree exactly)."""
    diff = per_image_stats(clean, engine) - per_image_stats(clean, sample)
    mean = diff.mean(0)
    se = diff.std(0, ddof=1) / np.sqrt(len(diff))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, mean / se, np.where(mean == 0, 0.0, np.inf))
    return z  # type: ignore[no-any-return]


def stat_names() -> list[str]:
    """Names of the statistics, in the order of :func:`per_image_stats`."""
    bins = [f"[{a},{b})" for a, b in itertools.pairwise(EDGES)]
    return ["mean", "std", *bins]
