"""ImageRNG: per-image streams, their distributions (checked with scipy.stats) and validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from prunesafe.corruptions._random import ImageRNG, image_seed


def test_draw_shapes_dtypes_and_ranges():
    rng = ImageRNG(0, "fog", 2, indices=range(4))
    assert rng.rand((3, 5)).shape == (4, 3, 5)
    assert rng.randn(7).shape == (4, 7)
    u = rng.uniform(-45, 45, (1000,))
    assert u.shape == (4, 1000)
    assert float(u.min()) >= -45
    assert float(u.max()) < 45
    r = rng.randint(-1, 1, (1000,))
    assert r.dtype == torch.int64
    assert set(r.unique().tolist()) == {-1, 0}
    c = rng.choice(5)
    assert c.shape == (4,)
    assert int(c.min()) >= 0
    assert int(c.max()) < 5
    assert rng.normal(0.3, 0.1, (2,)).shape == (4, 2)


def test_streams_are_keyed_by_index_and_continue_across_calls():
    a = ImageRNG(3, "snow", 4, indices=[10, 11, 12])
    b = ImageRNG(3, "snow", 4, indices=[12, 10])
    first = a.rand((8,))
    assert torch.equal(b.rand((8,)), first[[2, 0]])
    assert not torch.equal(a.rand((8,)), first)  # the stream moved on
    for other in (ImageRNG(4, "snow", 4, [10]), ImageRNG(3, "fog", 4, [10]), ImageRNG(3, "snow", 5, [10])):
        assert not torch.equal(other.rand((8,))[0], first[0])


def test_image_seed_matches_generator_seed():
    rng = ImageRNG(9, "frost", 1, indices=[42])
    g = torch.Generator().manual_seed(image_seed(9, "frost", 1, 42))
    assert torch.equal(rng.rand((5,))[0], torch.rand(5, generator=g))


def test_uniform_and_normal_pass_ks_tests():
    rng = ImageRNG(0, "gaussian_noise", 1, indices=range(20))
    u = rng.rand((2000,)).flatten().numpy()
    z = rng.randn((2000,)).flatten().numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # images are independent of each other: correlation between two images' streams is ~0
    zz = rng.randn((5000,)).numpy()
    assert abs(np.corrcoef(zz[0], zz[1])[0, 1]) < 0.06


@pytest.mark.parametrize("lam", [0.0, 0.3, 4.0, 37.5, 250.0, 500.0])
def test_poisson_matches_scipy_pmf(lam):
    """Both inversion paths against scipy.stats.poisson: chi-square on the bins holding 99.9% of the mass."""
    n = 40_000
    rng = ImageRNG(1, "shot_noise", 1, indices=range(4))
    rates = torch.full((4, n // 4), lam, dtype=torch.float64)
    general = rng.poisson(rates).flatten().numpy()
    levels = torch.tensor([lam, 0.0], dtype=torch.float64)
    table = rng.poisson_levels(torch.zeros(4, n // 4, dtype=torch.int64), levels).flatten().numpy()
    for draws in (general, table):
        assert np.all(draws == np.round(draws))
        assert draws.min() >= 0
        if lam == 0:
            assert np.all(draws == 0)
            continue
        lo, hi = stats.poisson.ppf([0.0005, 0.9995], lam).astype(int)
        ks = np.arange(lo, hi + 1)
        expected = stats.poisson.pmf(ks, lam) * n
        observed = np.array([(draws == k).sum() for k in ks])
        keep = expected > 5
        chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
        assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4, (lam, chi2, keep.sum())
        assert abs(draws.mean() - lam) < 5 * np.sqrt(lam / n) + 1e-9


def test_poisson_paths_agree_on_the_same_uniforms():
    from prunesafe.corruptions._random import _poisson_inverse, _poisson_table

    levels = torch.arange(256, dtype=torch.float64) / 255 * 100
    q = torch.randint(0, 256, (3000,))
    u = torch.rand(3000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = _poisson_table(q, levels, u)
    b = _poisson_inverse(levels[q], u)
    assert (a != b.float()).float().mean() < 1e-3


def test_validation():
    with pytest.raises(ValueError, match="seed"):
        ImageRNG(-1, "fog", 1, [0])
    with pytest.raises(ValueError, match="indices"):
        ImageRNG(0, "fog", 1, [-2])
    rng = ImageRNG(0, "fog", 1, [0, 1])
    with pytest.raises(ValueError, match="shape"):
        rng.rand((-1,))
    with pytest.raises(ValueError, match="high > low"):
        rng.uniform(1, 1, ())
    with pytest.raises(ValueError, match="high > low"):
        rng.randint(3, 2)
    with pytest.raises(ValueError, match="leading dimension 2"):
        rng.poisson(torch.ones(3, 4))
