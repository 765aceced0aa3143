"""Noise corruptions vs the reference sample: distribution of (output - input), tolerances from seed spread.

The sample (../shared/data/CIFAR-10-C-sample) was made by the reference from test images 0-199 with numpy
seed 12345; the engine's streams differ, so only distributions can match.  For every statistic the
tolerance is derived from the spread of that statistic over engine seeds (same 200 images): the sample is
one more independent draw, so |engine - sample| has a standard deviation of about sqrt(2) * sd_seeds; we
allow 5 of those (plus the float-rounding floor of 0.02 levels).  Histograms: total-variation distance
between the engine's and the sample's histograms of (output - input) must stay within 3x the largest TV
distance seen between two engine seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

from prunesafe.corruptions import corrupt

NOISES = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
SEEDS = (0, 1, 2, 3, 4)
BINS = np.arange(-256, 257, 8)


@pytest.fixture(scope="module")
def clean(cifar10_dir) -> np.ndarray:
    return np.load(cifar10_dir / "test_images.npy", mmap_mode="r")[:200].astype(np.int16)


def _stats(diff: np.ndarray) -> tuple[float, float, np.ndarray]:
    hist = np.histogram(diff, bins=BINS)[0] / diff.size
    return float(diff.mean()), float(diff.std()), hist


@pytest.mark.parametrize("name", NOISES)
def test_change_distribution_matches_the_sample(clean, cifar10c_sample_dir, name):
    sample = np.load(cifar10c_sample_dir / f"{name}.npy", mmap_mode="r")
    x = clean.astype(np.uint8)
    for s in range(1, 6):
        ref_mean, ref_std, ref_hist = _stats(sample[(s - 1) * 200 : s * 200].astype(np.int16) - clean)
        runs = [_stats(corrupt(x, name, s, seed=seed).astype(np.int16) - clean) for seed in SEEDS]
        means = np.array([r[0] for r in runs])
        stds = np.array([r[1] for r in runs])
        tol_mean = 5 * np.sqrt(2) * means.std(ddof=1) + 0.02
        tol_std = 5 * np.sqrt(2) * stds.std(ddof=1) + 0.02
        assert abs(means.mean() - ref_mean) < tol_mean, (name, s, means.mean(), ref_mean, tol_mean)
        assert abs(stds.mean() - ref_std) < tol_std, (name, s, stds.mean(), ref_std, tol_std)
        tv_seeds = max(
            0.5 * np.abs(runs[i][2] - runs[j][2]).sum() for i in range(len(SEEDS)) for j in range(i)
        )
        tv_ref = 0.5 * np.abs(runs[0][2] - ref_hist).sum()
        assert tv_ref < 3 * tv_seeds, (name, s, tv_ref, tv_seeds)


def test_impulse_noise_only_writes_0_or_255(clean):
    x = clean.astype(np.uint8)
    y = corrupt(x, "impulse_noise", 5, seed=0)
    changed = y != x
    assert set(np.unique(y[changed]).tolist()) <= {0, 255}
    # amount 0.07 of the values is flipped; half of the flips to a value that already equals it are invisible
    assert 0.05 < changed.mean() < 0.075


def test_shot_noise_keeps_black_black_and_is_unbiased_on_grey():
    black = np.zeros((4, 32, 32, 3), np.uint8)
    assert np.array_equal(corrupt(black, "shot_noise", 5), black)
    grey = np.full((50, 32, 32, 3), 128, np.uint8)
    y = corrupt(grey, "shot_noise", 5, seed=0).astype(float)
    # Poisson(c x)/c: mean x, variance x/c (in [0, 1] units); truncation to uint8 lowers the mean by ~0.5
    lam = 50 * 128 / 255
    assert abs(y.std() / 255 - np.sqrt(lam) / 50) < 0.002
    assert abs(y.mean() - (128 - 0.5)) < 0.5


@pytest.mark.parametrize("sigmas", [12.0, -6.0])  # -6: almost every image must extend its own stream
def test_impulse_flip_positions_are_iid_bernoulli(sigmas):
    """The geometric-gap sampler vs the law of one Bernoulli(c) per value (scipy.stats as the reference)."""
    import torch
    from scipy import stats

    from prunesafe.corruptions._random import ImageRNG
    from prunesafe.corruptions.noise import _impulse_flips

    numel, c, n = 3072, 0.07, 300
    position, salt = _impulse_flips(ImageRNG(0, "impulse_noise", 5, range(n)), numel, c, sigmas=sigmas)
    keep = position < numel
    assert bool((position[:, -1] >= numel).all())  # every image is covered to its last value
    steps = position.diff(dim=1)[keep[:, 1:]]
    assert bool((steps >= 1).all())  # strictly increasing: no value flipped twice
    flips = int(keep.sum())
    expected, sd = n * numel * c, np.sqrt(n * numel * c * (1 - c))
    assert abs(flips - expected) < 5 * sd, (flips, expected)
    assert abs(int(salt[keep].sum()) - flips / 2) < 5 * np.sqrt(flips / 4)
    # gaps between consecutive flips (and before the first) follow the geometric law of the kept run
    first = position[:, :1]
    gaps = torch.cat([first, position.diff(dim=1) - 1], dim=1)[keep].numpy()
    ks = np.arange(0, 60)
    observed = np.array([(gaps == k).sum() for k in ks] + [(gaps >= 60).sum()])
    pmf = stats.geom.pmf(ks + 1, c)  # scipy's geom counts trials to the first success (k + 1)
    probs = np.append(pmf, 1 - pmf.sum())
    chi2 = (((observed - probs * gaps.size) ** 2) / (probs * gaps.size)).sum()
    assert chi2 < stats.chi2.ppf(0.999, len(probs) - 1), chi2
    # the same key gives the same flips; another image index gives others
    again, again_salt = _impulse_flips(ImageRNG(0, "impulse_noise", 5, [7]), numel, c, sigmas=sigmas)
    np.testing.assert_array_equal(again[0][again[0] < numel], position[7][keep[7]])
    np.testing.assert_array_equal(again_salt[0][again[0] < numel], salt[7][keep[7]])


@pytest.mark.parametrize("name", NOISES)
def test_empty_batch_gives_an_empty_batch(name):
    import torch

    from prunesafe.corruptions._random import ImageRNG
    from prunesafe.corruptions._registry import get_corruption

    for s in (1, 5):
        out = get_corruption(name).fn(torch.zeros(0, 3, 32, 32), s, ImageRNG(0, name, s, []))
        assert out.shape == (0, 3, 32, 32)
