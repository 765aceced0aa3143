"""snow, frost, fog, spatter: against the reference libraries and the reference sample.

Independent references used here:
* OpenCV 4.14 / ImageMagick 6.9.11 / scikit-image outputs stored in data/c2_golden.npz (``_c2_golden.py``)
  for snow, spatter and the OpenCV building blocks (Canny, distanceTransform, equalizeHist);
* a numpy transcription of the reference's plasma fractal (run here);
* the sample itself: every frost sample image is reproduced bit for bit by one texture and crop;
* distributions of (output - input) vs the sample: paired z-tests, tolerance from the sampling spread
  (see _c2_distribution.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _c2_distribution import Z_MAX, paired_z, stat_names
from _c2_golden import GOLDEN, draws

from prunesafe.corruptions import _cv, corrupt
from prunesafe.corruptions import weather as W
from prunesafe.corruptions._random import ImageRNG


@pytest.fixture(scope="module")
def clean(cifar10_dir) -> np.ndarray:
    return np.load(cifar10_dir / "test_images.npy", mmap_mode="r")[:200].copy()


@pytest.fixture(scope="module")
def frost_dir(shared_dir) -> Path:
    from conftest import require_shared

    return require_shared("data", "frost")


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as f:
        return {k: f[k] for k in f.files}


def _nchw(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float() / 255.0


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return torch.floor(torch.nan_to_num(t, nan=0.0).clamp(0, 255)).to(torch.uint8).permute(0, 2, 3, 1).numpy()


# --------------------------------------------------------------------------------------- OpenCV blocks
def test_canny_distance_equalize_match_opencv4(golden):
    d = draws(0)
    edges = _cv.canny(torch.from_numpy(golden["canny_blurred"]), 50, 150).numpy()
    np.testing.assert_array_equal(edges, golden["canny"])
    assert golden["canny"].any()  # the inputs do have edges
    dist = _cv.distance_transform_l2_5(torch.from_numpy(255 - golden["canny"].astype(np.int64))).numpy()
    np.testing.assert_allclose(dist, golden["distance"], atol=2e-5)
    eq = _cv.equalize_hist(torch.from_numpy((d["canny_inputs"] // 13).astype(np.uint8))).numpy()
    np.testing.assert_array_equal(eq, golden["equalized"])


def _opencv_chamfer_5x5(img: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """OpenCV's ``distanceTransform_5x5`` (DIST_L2, mask 5) transcribed pixel by pixel.

    ``dtype=np.float32`` sums like OpenCV; ``np.float64`` sums the same float32 weights in float64 (an almost
    exact path length, to show that the float32 rounding matters).
    """
    a, b, c = (dtype(np.float32(v)) for v in (1.0, 1.4, 2.1969))
    h, w = img.shape
    t = np.full((h + 4, w + 4), np.inf, dtype=dtype)
    for i in range(2, h + 2):  # forward pass: the upper half of the mask and the left neighbour
        for j in range(2, w + 2):
            t[i, j] = 0 if img[i - 2, j - 2] == 0 else min(
                t[i - 2, j - 1] + c, t[i - 2, j + 1] + c, t[i - 1, j - 2] + c, t[i - 1, j - 1] + b,
                t[i - 1, j] + a, t[i - 1, j + 1] + b, t[i - 1, j + 2] + c, t[i, j - 1] + a,
            )  # fmt: skip
    for i in range(h + 1, 1, -1):  # backward pass: the lower half and the right neighbour
        for j in range(w + 1, 1, -1):
            t[i, j] = min(
                t[i, j], t[i + 2, j + 1] + c, t[i + 2, j - 1] + c, t[i + 1, j + 2] + c, t[i + 1, j + 1] + b,
                t[i + 1, j] + a, t[i + 1, j - 1] + b, t[i + 1, j - 2] + c, t[i, j + 1] + a,
            )  # fmt: skip
    return t[2:-2, 2:-2]


def test_distance_transform_equals_opencvs_two_passes_on_random_masks():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=40, deadline=None)
    @given(st.integers(1, 12), st.integers(1, 24), st.floats(0.0, 0.3), st.integers(0, 2**31 - 1))
    def check(h: int, w: int, density: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        img = np.where(rng.random((3, h, w)) < density, 0, 255).astype(np.uint8)
        img[:, rng.integers(h), rng.integers(w)] = 0  # every image has a zero pixel
        mine = _cv.distance_transform_l2_5(torch.from_numpy(img)).numpy()
        for k in range(3):  # bit for bit: the same float32 sums, not just close
            np.testing.assert_array_equal(mine[k], _opencv_chamfer_5x5(img[k]))

    check()


def test_distance_transform_keeps_opencvs_float32_rounding_far_from_the_edges():
    # one zero pixel per image: distances up to ~40, sums of many float32 steps.  The result must be
    # OpenCV's chain of float32 additions, which here differs from the same paths summed exactly in
    # float64 and rounded once -- so the check can tell the two apart.
    img = np.full((3, 32, 32), 255, np.uint8)
    img[0, 0, 0] = img[1, 31, 5] = img[2, 13, 20] = 0
    mine = _cv.distance_transform_l2_5(torch.from_numpy(img)).numpy()
    exact_rounded_once = []
    for k in range(3):
        ref = _opencv_chamfer_5x5(img[k])
        np.testing.assert_array_equal(mine[k], ref)
        with np.errstate(over="ignore"):
            exact_rounded_once.append(_opencv_chamfer_5x5(img[k], np.float64).astype(np.float32))
    assert (mine != np.stack(exact_rounded_once)).any()


def _reflect101(img: np.ndarray) -> np.ndarray:
    return np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="reflect")  # numpy's reflect is OpenCV's REFLECT_101


def test_box_and_emboss_filters_follow_opencvs_definitions():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (4, 7, 9)).astype(np.int64)
    p = _reflect101(img)
    sums = sum(p[:, i : i + 7, j : j + 9] for i in range(3) for j in range(3))
    np.testing.assert_allclose(_cv.box3(torch.from_numpy(img)).numpy(), sums / 9.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(_cv.box3_u8(torch.from_numpy(img)).numpy(), np.floor(sums / 9.0 + 0.5))
    k = [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]
    emb = sum(k[i][j] * p[:, i : i + 7, j : j + 9] for i in range(3) for j in range(3))
    np.testing.assert_array_equal(_cv.filter3_u8(torch.from_numpy(img), k).numpy(), np.clip(emb, 0, 255))
    # a length-1 axis: OpenCV maps every border position to its only pixel
    row = rng.integers(0, 256, (2, 1, 6)).astype(np.int64)
    p1 = np.pad(row, ((0, 0), (0, 0), (1, 1)), mode="reflect")
    sums1 = 3 * sum(p1[:, :, j : j + 6] for j in range(3))
    np.testing.assert_array_equal(_cv.box3_u8(torch.from_numpy(row)).numpy(), np.floor(sums1 / 9.0 + 0.5))


def test_snow_matches_reference_golden(golden):
    d = draws(0)
    x = _nchw(d["images"])
    for s in range(1, 6):
        out = _nhwc(
            W.snow_given(
                x, s, torch.from_numpy(d["snow_layer"][s - 1]), torch.from_numpy(d["snow_angle"][s - 1])
            )
        )
        diff = np.abs(out.astype(int) - golden["snow"][s - 1].astype(int))
        assert diff.max() <= 1, (s, diff.max())
        assert (diff > 0).mean() < 0.001, (s, (diff > 0).mean())


def test_spatter_matches_reference_golden(golden):
    d = draws(0)
    x = _nchw(d["images"])
    for s in range(1, 6):
        out = _nhwc(W.spatter_given(x, s, torch.from_numpy(d["spatter_layer"][s - 1])))
        diff = np.abs(out.astype(int) - golden["spatter"][s - 1].astype(int))
        assert diff.max() <= 1, (s, diff.max())
        assert (diff > 0).mean() < 0.001, (s, (diff > 0).mean())


def test_spatter_without_liquid_is_black_like_the_reference():
    # the reference divides 0 by 0 and np.uint8 of NaN is 0 on x86; the engine returns 0 directly
    with np.errstate(invalid="ignore"):
        assert np.array([np.nan]).astype(np.uint8)[0] == 0
    x = np.full((2, 32, 32, 3), 120, np.uint8)
    out = W.spatter_given(_nchw(x), 2, torch.full((2, 32, 32), -6.0, dtype=torch.float64))
    assert torch.equal(out, torch.zeros_like(out))


# ------------------------------------------------------------------------------------------------ fog
def _reference_plasma(u: np.ndarray, decay: float, mapsize: int = 32) -> np.ndarray:
    """The reference's diamond-square, its ``uniform(-wibble, wibble)`` draws taken from ``wibble * u``."""
    grid = np.empty((mapsize, mapsize))
    grid[0, 0] = 0
    step, wibble, pos = mapsize, 100.0, 0

    def wibbled_mean(a: np.ndarray) -> np.ndarray:
        nonlocal pos
        noise = wibble * u[pos : pos + a.size].reshape(a.shape)
        pos += a.size
        return a / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        corners = grid[0:mapsize:step, 0:mapsize:step]
        acc = corners + np.roll(corners, -1, axis=0)
        acc += np.roll(acc, -1, axis=1)
        grid[half:mapsize:step, half:mapsize:step] = wibbled_mean(acc)
        dr = grid[half:mapsize:step, half:mapsize:step]
        ul = grid[0:mapsize:step, 0:mapsize:step]
        grid[0:mapsize:step, half:mapsize:step] = wibbled_mean(
            dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        )
        grid[half:mapsize:step, 0:mapsize:step] = wibbled_mean(
            dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        )
        step //= 2
        wibble /= decay
    assert pos == u.size
    grid -= grid.min()
    return grid / grid.max()


@pytest.mark.parametrize("decay", [3.0, 2.5, 1.75])
def test_plasma_fractal_equals_the_reference_diamond_square(decay):
    u = np.random.default_rng(0).uniform(-1, 1, (3, 1023))
    mine = W.plasma_fractal(torch.from_numpy(u), decay).numpy()
    for k in range(3):
        np.testing.assert_allclose(mine[k], _reference_plasma(u[k], decay), atol=1e-12)


def test_fog_formula_on_a_known_plasma():
    u = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (2, 1023)))
    x = _nchw(np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    for s in range(1, 6):
        a, decay = W.FOG_PARAMS[s - 1]
        plasma = W.plasma_fractal(u, decay).numpy()[:, None]
        xn = x.double().numpy()
        mx = xn.max(axis=(1, 2, 3), keepdims=True)
        expected = np.clip((xn + a * plasma) * mx / (mx + a), 0, 1) * 255
        np.testing.assert_allclose(W.fog_given(x, s, u).numpy(), expected, atol=1e-3)


# ---------------------------------------------------------------------------------------------- frost
def _exact_crop_exists(x: torch.Tensor, target: torch.Tensor, textures, a: float, b: float) -> bool:
    """Is ``target == floor(clip(a * x + b * crop))`` for some 32x32 crop of some texture?"""
    for t in textures:
        windows = t.double().unfold(1, 32, 1).unfold(2, 32, 1)  # (3, nh, nw, 32, 32)
        # screen every position on a 4x4 corner of the first channel, then check the survivors fully
        corner = torch.floor((a * x[0, :4, :4] + b * windows[0, :, :, :4, :4]).clamp(0, 255))
        hits = ((corner - target[0, :4, :4]).abs().amax(dim=(2, 3)) == 0).nonzero().tolist()
        for r, c in hits:
            full = torch.floor((a * x + b * windows[:, r, c]).clamp(0, 255))
            if torch.equal(full, target):
                return True
    return False


def test_every_frost_sample_image_is_one_texture_crop(clean, cifar10c_sample_dir, frost_dir):
    sample = np.load(cifar10c_sample_dir / "frost.npy", mmap_mode="r")
    textures = W.load_frost_textures(frost_dir)
    assert [tuple(t.shape) for t in textures] == [
        (3, 120, 180),
        (3, 63, 112),
        (3, 63, 112),
        (3, 70, 105),
        (3, 99, 132),
    ]
    for s in (1, 3, 5):
        a, b = W.FROST_PARAMS[s - 1]
        for i in (s, 50 + s):
            x = torch.from_numpy(clean[i]).permute(2, 0, 1).double()
            target = torch.from_numpy(sample[(s - 1) * 200 + i].copy()).permute(2, 0, 1).double()
            assert _exact_crop_exists(x, target, textures, a, b), (s, i)


def test_frost_without_textures_says_where_to_get_them(tmp_path, monkeypatch):
    x = np.zeros((1, 32, 32, 3), np.uint8)
    monkeypatch.delenv(W.FROST_ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match="Frost textures") as err:
        corrupt(x, "frost", 1)
    assert "frost_dir" in str(err.value)
    assert "hendrycks/robustness" in str(err.value)
    (tmp_path / "frost1.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"frost2\.png"):
        corrupt(x, "frost", 1, frost_dir=tmp_path)
    with pytest.raises(TypeError, match="frost_dir"):
        W.frost(_nchw(x), 1, ImageRNG(0, "frost", 1, indices=[0]), frost_dir=3)  # type: ignore[arg-type]


def test_frost_dir_from_environment_variable(frost_dir, monkeypatch):
    x = np.full((2, 32, 32, 3), 100, np.uint8)
    monkeypatch.setenv(W.FROST_ENV_VAR, os.fspath(frost_dir))
    np.testing.assert_array_equal(
        corrupt(x, "frost", 2, seed=5), corrupt(x, "frost", 2, seed=5, frost_dir=frost_dir)
    )


def test_frost_given_rejects_textures_smaller_than_the_image():
    small = tuple(torch.zeros(3, 20, 40) for _ in range(5))
    with pytest.raises(ValueError, match="at least 32x32"):
        W.frost_given(torch.zeros(1, 3, 32, 32), 1, small, torch.tensor([0]), torch.zeros(1, 2))


def test_frost_texture_choice_is_uniform_over_the_five_textures(frost_dir):
    # frost draws one uniform u per image for the texture (floor(5 u)); the reference: randint(0, 5)
    n = 5000
    calls = []
    orig = W.frost_given

    def spy(x, severity, textures, index, u):
        calls.append(index)
        return orig(x, severity, textures, index, u)

    W.frost_given = spy  # type: ignore[assignment]
    try:
        W.frost(torch.zeros(n, 3, 32, 32), 1, ImageRNG(0, "frost", 1, indices=range(n)), frost_dir=frost_dir)
    finally:
        W.frost_given = orig  # type: ignore[assignment]
    counts = np.bincount(calls[0].numpy(), minlength=5)
    assert counts.size == 5
    chi2 = float(((counts - n / 5) ** 2 / (n / 5)).sum())
    assert chi2 < 18.5, counts  # chi-square, 4 degrees of freedom: p = 0.001


@pytest.mark.parametrize("severity", [1, 4])
def test_empty_batch_gives_an_empty_batch(frost_dir, severity):
    x = torch.zeros(0, 3, 32, 32)
    for name in ("snow", "frost", "fog", "spatter"):
        kw = {"frost_dir": frost_dir} if name == "frost" else {}
        out = getattr(W, name)(x, severity, ImageRNG(0, name, severity, indices=[]), **kw)
        assert out.shape == (0, 3, 32, 32), name


def test_snow_angle_is_uniform_between_minus_135_and_minus_45():
    # snow takes its angle from its last normal draw z as 90 Phi(z) - 135; the reference: uniform(-135, -45)
    n = 4000
    seen = []
    orig = W.snow_given

    def spy(x, severity, layer, angle):
        seen.append(angle)
        return orig(x, severity, layer, angle)

    W.snow_given = spy  # type: ignore[assignment]
    try:
        W.snow(torch.zeros(n, 3, 32, 32), 1, ImageRNG(0, "snow", 1, indices=range(n)))
    finally:
        W.snow_given = orig  # type: ignore[assignment]
    u = np.sort((seen[0].numpy() + 135.0) / 90.0)
    assert u.min() >= 0
    assert u.max() < 1
    ks = max(np.abs(np.arange(1, n + 1) / n - u).max(), np.abs(np.arange(n) / n - u).max())
    assert ks < 1.95 / np.sqrt(n), ks  # Kolmogorov-Smirnov against U(0, 1), p = 0.001


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_below_is_the_references_threshold_rule_at_the_edge(dtype):
    # the reference: layer[layer < t] = 0, compared in the layer's precision; values equal to t survive
    for t in (0.5, 0.69, 0.7, 0.8):
        tt = torch.tensor(t, dtype=dtype)
        x = torch.stack(
            [
                tt,
                torch.nextafter(tt, torch.tensor(0.0, dtype=dtype)),
                torch.nextafter(tt, torch.tensor(1.0, dtype=dtype)),
            ]
        )
        x = torch.cat([x, torch.linspace(0.0, 1.0, 101, dtype=dtype)])
        expected = np.where(x.numpy() < x.numpy().dtype.type(t), 0, x.numpy())
        np.testing.assert_array_equal(W._zero_below(x, t).numpy(), expected)


def test_plasma_fractal_rejects_too_few_uniforms():
    with pytest.raises(ValueError, match="1023"):
        W.plasma_fractal(torch.zeros(2, 1000, dtype=torch.float64), 2.0)
    with pytest.raises(ValueError, match="power of two"):
        W.plasma_fractal(torch.zeros(2, 1023, dtype=torch.float64), 2.0, mapsize=24)


# ------------------------------------------------------------------------------------ vs the sample
@pytest.mark.slow
@pytest.mark.parametrize("name", ["snow", "frost", "fog", "spatter"])
def test_change_distribution_matches_the_sample(clean, cifar10c_sample_dir, frost_dir, name):
    sample = np.load(cifar10c_sample_dir / f"{name}.npy", mmap_mode="r")
    for s in range(1, 6):
        out = corrupt(clean, name, s, seed=0, frost_dir=frost_dir)
        z = paired_z(clean, out, sample[(s - 1) * 200 : s * 200])
        assert np.abs(z).max() <= Z_MAX, (name, s, dict(zip(stat_names(), z.round(2))))


@pytest.mark.parametrize("name", ["snow", "frost", "fog", "spatter"])
def test_seeded_and_independent_of_batch_split(clean, frost_dir, name):
    kw = {"frost_dir": frost_dir}
    whole = corrupt(clean[:6], name, 3, seed=3, **kw)
    parts = np.concatenate(
        [corrupt(clean[:2], name, 3, seed=3, **kw), corrupt(clean[2:6], name, 3, seed=3, start_index=2, **kw)]
    )
    np.testing.assert_array_equal(whole, parts)
    assert not np.array_equal(whole, corrupt(clean[:6], name, 3, seed=4, **kw))
