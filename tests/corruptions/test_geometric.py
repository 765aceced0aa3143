"""glass_blur, motion_blur, elastic_transform: against the reference libraries and the reference sample.

Independent references used here:
* the CIFAR-10-C sample itself (made by the reference with ImageMagick): every motion-blurred sample image
  must be reproduced *bit for bit* by the engine's kernel for some angle in [-45, 45];
* ImageMagick 6.9.11 Q16 and OpenCV 4.14 outputs stored in data/c2_golden.npz (``_c2_golden.py``);
* a numpy transcription of the reference's sequential glass-blur pixel loop (run here, scipy only);
* distributions of (output - input) vs the sample: paired z-tests, tolerance from the sampling spread
  (see _c2_distribution.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _c2_distribution import Z_MAX, paired_z, stat_names
from _c2_golden import ELASTIC, GOLDEN, MOTION_CASES, draws
from scipy.ndimage import gaussian_filter

from prunesafe.corruptions import corrupt
from prunesafe.corruptions import geometric as G
from prunesafe.corruptions._magick import kernel_width, motion_blur, motion_offsets


@pytest.fixture(scope="module")
def clean(cifar10_dir) -> np.ndarray:
    return np.load(cifar10_dir / "test_images.npy", mmap_mode="r")[:200].copy()


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as f:
        return {k: f[k] for k in f.files}


def _nchw(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float() / 255.0


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return torch.floor(t.clamp(0, 255)).to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------------------ motion blur
def test_kernel_width_and_offsets_follow_imagemagick_rules():
    assert [kernel_width(r, 1.0) for r in (6, 8, 9, 10, 12, 14, 0.5)] == [13, 17, 19, 21, 25, 29, 3]
    dx, dy = motion_offsets(13, torch.tensor([0.0, 90.0, -135.0]))
    assert dx[0].tolist() == list(range(13))
    assert dy[0].abs().sum() == 0
    assert dy[1].tolist() == list(range(13))
    assert dx[1].abs().sum() == 0
    # -135 degrees: cos = sin = -0.7071; ImageMagick rounds with ceil(v - 0.5), so -0.5 -> -1, -1.5 -> -2
    assert dx[2].tolist() == dy[2].tolist() == [int(np.ceil(-i * np.sqrt(0.5) - 0.5)) for i in range(13)]


def test_motion_blur_matches_imagemagick_golden(golden):
    d = draws(0)
    for k, (radius, sigma, angle) in enumerate(MOTION_CASES):
        x = torch.from_numpy(d["motion_inputs"][k]).float()[None, None]
        out = motion_blur(x, radius, sigma, torch.tensor([angle]))[0, 0].numpy()
        np.testing.assert_array_equal(
            out.astype(np.uint8), golden["motion"][k], err_msg=str((radius, sigma, angle))
        )


def test_every_sample_motion_blur_image_is_reproduced_exactly_by_some_angle(clean, cifar10c_sample_dir):
    sample = np.load(cifar10c_sample_dir / "motion_blur.npy", mmap_mode="r")
    angles = torch.arange(-45.0, 45.0001, 0.1, dtype=torch.float64)
    for s in range(1, 6):
        radius, sigma = G.MOTION_PARAMS[s - 1]
        for i in (39 * s,):
            x = torch.from_numpy(clean[i]).permute(2, 0, 1).float()[None].expand(len(angles), 3, 32, 32)
            out = motion_blur(x, radius, sigma, angles)
            target = (
                torch.from_numpy(np.ascontiguousarray(sample[(s - 1) * 200 + i])).permute(2, 0, 1).float()
            )
            errors = (out - target).abs().amax(dim=(1, 2, 3))
            assert float(errors.min()) == 0.0, (s, i, float(errors.min()))


# ------------------------------------------------------------------------------------------- glass blur
def _reference_glass(img: np.ndarray, severity: int, moves: np.ndarray, swap: bool = False) -> np.ndarray:
    """The reference's algorithm on one HWC uint8 image, its sequential loop written out (numpy + scipy).

    ``swap=False`` is what the reference's tuple assignment on numpy views does (duplicate);
    ``swap=True`` is the swap its comment intends.
    """
    sigma, delta, iterations = G.GLASS_PARAMS[severity - 1]
    x = np.uint8(gaussian_filter(img / 255.0, (sigma, sigma, 0), mode="nearest") * 255)
    for it in range(iterations):
        for h in range(32 - delta, delta, -1):
            for w in range(32 - delta, delta, -1):
                dx, dy = moves[it, 0, h - 2, w - 2], moves[it, 1, h - 2, w - 2]
                hp, wp = h + dy, w + dx
                if swap:
                    x[h, w], x[hp, wp] = x[hp, wp].copy(), x[h, w].copy()
                else:
                    x[h, w], x[hp, wp] = x[hp, wp], x[h, w]  # numpy views: x[h, w] = x[hp, wp] only
    return np.clip(gaussian_filter(x / 255.0, (sigma, sigma, 0), mode="nearest"), 0, 1) * 255


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_vectorised_glass_blur_equals_the_sequential_reference_loop(clean, severity):
    iterations = G.GLASS_PARAMS[severity - 1][2]
    moves = np.random.default_rng(severity).integers(-1, 1, (6, iterations, 2, 30, 30))
    mine = _nhwc(G.glass_blur_given(_nchw(clean[:6]), severity, torch.from_numpy(moves)))
    ref = np.stack([np.uint8(_reference_glass(clean[i], severity, moves[i])) for i in range(6)])
    diff = np.abs(mine.astype(int) - ref.astype(int))
    # the blurs are matrix products (scipy: a tap loop): float64 sums in another order, so a value within
    # ~1e-13 of an integer (flat regions) may truncate the other way -- in the first blur that moves a
    # pixel by one level before the moves and the second blur (measured: <= 2 levels on < 0.4 % of values)
    assert diff.max() <= 2, diff.max()
    assert (diff > 0).mean() < 0.005, (diff > 0).mean()


def test_sample_has_the_duplicating_glass_blur_not_a_true_swap(clean, cifar10c_sample_dir):
    sample = np.load(cifar10c_sample_dir / "glass_blur.npy", mmap_mode="r")[800:1000]
    moves = np.random.default_rng(7).integers(-1, 1, (200, 2, 2, 30, 30))
    dup = _nhwc(G.glass_blur_given(_nchw(clean), 5, torch.from_numpy(moves)))
    swapped = np.stack([np.uint8(_reference_glass(clean[i], 5, moves[i], swap=True)) for i in range(200)])
    z_dup = paired_z(clean, dup, sample)
    z_swap = paired_z(clean, swapped, sample)
    assert np.abs(z_dup).max() <= Z_MAX, dict(zip(stat_names(), z_dup.round(2)))
    assert np.abs(z_swap).max() > 2 * Z_MAX, dict(zip(stat_names(), z_swap.round(2)))


# ------------------------------------------------------------------------------------- elastic transform
def test_elastic_transform_matches_opencv4_scipy_golden(golden):
    d = draws(0)
    x = _nchw(d["images"])
    for s in range(1, 6):
        out = _nhwc(
            G.elastic_given(
                x,
                s,
                torch.from_numpy(d["elastic_affine"][s - 1]),
                torch.from_numpy(d["elastic_noise"][s - 1]),
            )
        )
        diff = np.abs(out.astype(int) - golden["elastic"][s - 1].astype(int))
        assert diff.max() <= 1, (s, diff.max())
        assert (diff > 0).mean() < 0.005, (s, (diff > 0).mean())
    assert len(ELASTIC) == len(G.ELASTIC_PARAMS)
    assert np.allclose(ELASTIC, G.ELASTIC_PARAMS)


# ------------------------------------------------------------------------------------ vs the sample
@pytest.mark.slow
@pytest.mark.parametrize("name", ["glass_blur", "motion_blur", "elastic_transform"])
def test_change_distribution_matches_the_sample(clean, cifar10c_sample_dir, name):
    sample = np.load(cifar10c_sample_dir / f"{name}.npy", mmap_mode="r")
    for s in range(1, 6):
        z = paired_z(clean, corrupt(clean, name, s, seed=0), sample[(s - 1) * 200 : s * 200])
        assert np.abs(z).max() <= Z_MAX, (name, s, dict(zip(stat_names(), z.round(2))))


@pytest.mark.parametrize("name", ["glass_blur", "motion_blur", "elastic_transform"])
def test_seeded_and_independent_of_batch_split(clean, name):
    whole = corrupt(clean[:6], name, 4, seed=3)
    parts = np.concatenate(
        [corrupt(clean[:2], name, 4, seed=3), corrupt(clean[2:6], name, 4, seed=3, start_index=2)]
    )
    np.testing.assert_array_equal(whole, parts)
    assert not np.array_equal(whole, corrupt(clean[:6], name, 4, seed=4))


# ------------------------------------------------------------------------------------ building blocks
def test_map_coordinates_linear_equals_scipy_reflect():
    """Bilinear sampling vs scipy.ndimage.map_coordinates(order=1, mode="reflect"), also far outside."""
    from scipy.ndimage import map_coordinates

    from prunesafe.corruptions._ndimage import map_coordinates_linear

    rng = np.random.default_rng(0)
    img = rng.random((2, 3, 16, 16))
    rows = rng.uniform(-20, 36, (2, 16, 16))
    cols = rng.uniform(-20, 36, (2, 16, 16))
    rows[0, 0, :4] = [-0.5, 15.5, 3.0, -16.0]  # reflection axes and an integer coordinate
    mine = map_coordinates_linear(torch.from_numpy(img), torch.from_numpy(rows), torch.from_numpy(cols))
    for k in range(2):
        for ch in range(3):
            ref = map_coordinates(img[k, ch], [rows[k], cols[k]], order=1, mode="reflect")
            np.testing.assert_allclose(mine[k, ch].numpy(), ref, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="rows / cols"):
        map_coordinates_linear(torch.from_numpy(img), torch.from_numpy(rows[0]), torch.from_numpy(cols[0]))


def test_glass_moves_are_fair_independent_bits():
    """31 moves per 32-bit draw: values in {-1, 0}, each -1 with probability 1/2, neighbours uncorrelated."""
    from prunesafe.corruptions._random import ImageRNG

    moves = G._glass_moves(ImageRNG(0, "glass_blur", 5, range(100)), 2, 32, 32)
    assert moves.shape == (100, 2, 2, 30, 30)
    assert set(moves.unique().tolist()) == {-1, 0}
    bits = (-moves).reshape(100, -1).double()
    n = bits.numel()
    assert abs(float(bits.mean()) - 0.5) < 5 * 0.5 / np.sqrt(n)
    # consecutive moves (same word and across words) and the two coordinates of one move: no correlation
    for a, b in ((bits[:, :-1], bits[:, 1:]), (bits[:, :-31], bits[:, 31:])):
        corr = float(((a - 0.5) * (b - 0.5)).mean() / 0.25)
        assert abs(corr) < 5 / np.sqrt(a.numel()), corr
    dx, dy = (-moves[:, :, 0]).double(), (-moves[:, :, 1]).double()
    assert abs(float(((dx - 0.5) * (dy - 0.5)).mean() / 0.25)) < 5 / np.sqrt(dx.numel())


@pytest.mark.parametrize("name", ["glass_blur", "motion_blur", "elastic_transform"])
def test_empty_batch_gives_an_empty_batch(name):
    from prunesafe.corruptions._random import ImageRNG
    from prunesafe.corruptions._registry import get_corruption

    for s in (1, 5):
        out = get_corruption(name).fn(torch.zeros(0, 3, 32, 32), s, ImageRNG(0, name, s, []))
        assert out.shape == (0, 3, 32, 32)


def test_elastic_given_non_square_identity_draws():
    """Zero perturbations keep the image, also on a non-square, non-power-of-two size."""
    x = torch.rand(2, 3, 24, 40)
    for s in (1, 3):
        out = G.elastic_given(x, s, torch.zeros(2, 3, 2), torch.zeros(2, 2, 24, 40))
        assert out.shape == x.shape
        assert float((out - x * 255).abs().max()) < 2e-3, s
