"""corrupt(): types, devices, layouts, quantisation, seeding, batch-split independence and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _names import DETERMINISTIC, NOISES

from prunesafe.corruptions import (
    ALL_CORRUPTIONS,
    DEFAULT_SEED,
    corrupt,
    get_corruption,
    registered_corruptions,
)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)


def _options(name: str) -> dict:
    if "frost_dir" in get_corruption(name).options:
        from tests.conftest import require_shared

        return {"frost_dir": require_shared("data", "frost")}
    return {}


def test_noises_and_deterministic_ones_are_registered_with_the_right_determinism():
    names = registered_corruptions()
    for name in NOISES:
        assert name in names
        assert not get_corruption(name).deterministic
    for name in DETERMINISTIC:
        assert name in names
        assert get_corruption(name).deterministic


@pytest.mark.parametrize("name", NOISES + DETERMINISTIC)
def test_numpy_uint8_round_trip(images, name):
    y = corrupt(images, name, 3)
    assert isinstance(y, np.ndarray)
    assert y.dtype == np.uint8
    assert y.shape == images.shape
    if get_corruption(name).deterministic:
        assert not np.array_equal(y, images) or name == "pixelate"


def test_torch_uint8_and_float_inputs_keep_type_dtype_layout(images):
    t = torch.from_numpy(images)
    y = corrupt(t, "gaussian_noise", 2, seed=3)
    assert isinstance(y, torch.Tensor)
    assert y.dtype == torch.uint8
    assert y.shape == t.shape
    assert np.array_equal(y.numpy(), corrupt(images, "gaussian_noise", 2, seed=3))
    for dtype in (torch.float32, torch.float64):
        xf = t.permute(0, 3, 1, 2).to(dtype) / 255
        yf = corrupt(xf, "contrast", 4)
        assert yf.dtype == dtype
        assert yf.shape == xf.shape
        assert yf.device == xf.device
        assert float(yf.min()) >= 0.0
        assert float(yf.max()) <= 1.0


@pytest.mark.parametrize("name", NOISES + DETERMINISTIC)
def test_float_output_truncates_to_the_uint8_output(images, name):
    """uint8 output == floor(float output * 255): the same computation, quantised like np.uint8."""
    u8 = corrupt(images, name, 2, seed=5)
    xf = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    yf = corrupt(xf, name, 2, seed=5).permute(0, 2, 3, 1).numpy()
    levels = np.floor(yf.astype(np.float64) * 255 + 1e-3)
    assert np.abs(levels - u8).max() <= 1
    # the float output is rounded to float32 after /255, so values a hair below an integer may land on it
    assert (levels != u8).mean() < 0.02


def test_single_image_and_empty_batch(images):
    one = corrupt(images[0], "saturate", 5)
    assert one.shape == (32, 32, 3)
    assert np.array_equal(one, corrupt(images[:1], "saturate", 5)[0])
    empty = corrupt(images[:0], "gaussian_noise", 1)
    assert empty.shape == (0, 32, 32, 3)
    assert empty.dtype == np.uint8


def test_non_contiguous_numpy_input(images):
    flipped = images[:, ::-1]
    assert np.array_equal(corrupt(flipped, "zoom_blur", 2), corrupt(flipped.copy(), "zoom_blur", 2))


@pytest.mark.parametrize("name", NOISES)
def test_same_seed_bit_identical_other_seed_differs(images, name):
    a = corrupt(images, name, 4, seed=11)
    assert np.array_equal(a, corrupt(images, name, 4, seed=11))
    assert not np.array_equal(a, corrupt(images, name, 4, seed=12))
    assert np.array_equal(corrupt(images, name, 4), corrupt(images, name, 4, seed=DEFAULT_SEED))


def test_every_registered_random_corruption_is_batch_split_independent(images):
    """Image i's output depends only on (seed, name, severity, i): chunking, splitting, reordering."""
    for name in registered_corruptions():
        opts = _options(name)
        whole = corrupt(images, name, 5, seed=2, **opts)
        head = corrupt(images[:2], name, 5, seed=2, **opts)
        tail = corrupt(images[2:], name, 5, seed=2, start_index=2, **opts)
        parts = np.concatenate([head, tail])
        assert np.array_equal(whole, parts), name
        assert np.array_equal(whole, corrupt(images, name, 5, seed=2, chunk_size=4, **opts)), name
        order = np.array([5, 0, 3, 1, 4, 2])
        shuffled = corrupt(images[order], name, 5, seed=2, indices=order.tolist(), **opts)
        assert np.array_equal(shuffled, whole[order]), name


def test_streams_depend_on_the_image_index_not_its_content(images):
    same = np.repeat(images[:1], 3, axis=0)
    y = corrupt(same, "gaussian_noise", 5, seed=0)
    assert not np.array_equal(y[0], y[1])
    assert not np.array_equal(y[1], y[2])


def test_unknown_name_lists_the_valid_ones(images):
    with pytest.raises(ValueError, match="valid names: gaussian_noise, shot_noise") as exc:
        corrupt(images, "gaussian", 1)
    assert all(n in str(exc.value) for n in ALL_CORRUPTIONS)
    with pytest.raises(TypeError, match="name"):
        corrupt(images, 3, 1)  # type: ignore[call-overload]


@pytest.mark.parametrize("severity", [0, 6, -1])
def test_severity_out_of_range(images, severity):
    with pytest.raises(ValueError, match="between 1 and 5"):
        corrupt(images, "contrast", severity)


@pytest.mark.parametrize("severity", [2.0, True, "3", None])
def test_severity_wrong_type(images, severity):
    with pytest.raises(TypeError, match="severity must be an int"):
        corrupt(images, "contrast", severity)  # type: ignore[call-overload]


def test_wrong_layouts_sizes_and_dtypes_are_explained(images):
    with pytest.raises(ValueError, match="looks like NCHW"):
        corrupt(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), "contrast", 1)
    with pytest.raises(ValueError, match="looks like NHWC"):
        corrupt(torch.from_numpy(images).float() / 255, "contrast", 1)
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        corrupt(np.zeros((2, 28, 28, 3), np.uint8), "contrast", 1)
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        corrupt(np.zeros((2, 32, 32, 1), np.uint8), "contrast", 1)
    with pytest.raises(ValueError, match="4-D"):
        corrupt(np.zeros((32, 32), np.uint8), "contrast", 1)
    with pytest.raises(TypeError, match="uint8"):
        corrupt(images.astype(np.int32), "contrast", 1)
    with pytest.raises(TypeError, match="uint8"):
        corrupt(torch.from_numpy(images).to(torch.int16), "contrast", 1)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        corrupt(images.tolist(), "contrast", 1)  # type: ignore[call-overload]


def test_float_values_outside_unit_range(images):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    with pytest.raises(ValueError, match="divide by 255"):
        corrupt(x, "contrast", 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(x / 255 - 0.5, "contrast", 1)


def test_bad_seed_indices_chunk_size(images):
    with pytest.raises(ValueError, match="seed"):
        corrupt(images, "shot_noise", 1, seed=-1)
    with pytest.raises(ValueError, match="indices has 2 entries"):
        corrupt(images, "shot_noise", 1, indices=[0, 1])
    with pytest.raises(ValueError, match="non-negative"):
        corrupt(images, "shot_noise", 1, indices=[-1, 0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="start_index"):
        corrupt(images, "shot_noise", 1, start_index=-3)
    with pytest.raises(ValueError, match="chunk_size"):
        corrupt(images, "shot_noise", 1, chunk_size=0)


def test_corruptions_package_does_not_import_study():
    import ast
    from pathlib import Path

    import prunesafe.corruptions as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for mod in mods:
                higher = ("prunesafe.study", "prunesafe.metrics", "prunesafe.cli")
                assert not mod.startswith(higher), (path, mod)


def test_arbitrary_shapes_and_dtypes_give_a_result_or_a_clear_error():
    """Property: any array either round-trips (right shape/dtype) or raises ValueError/TypeError."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    dtypes = st.sampled_from([np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_])
    dims = st.lists(st.sampled_from([0, 1, 2, 3, 32]), min_size=1, max_size=5)

    @settings(max_examples=60, deadline=None)
    @given(dtype=dtypes, shape=dims, sev=st.integers(-1, 7))
    def check(dtype, shape, sev):
        arr = np.zeros(shape, dtype=dtype)
        try:
            out = corrupt(arr, "contrast", sev)
        except (ValueError, TypeError) as exc:
            message = str(exc)
            if not message:
                raise AssertionError("empty error message") from exc
            return
        assert out.dtype == arr.dtype
        assert out.shape == arr.shape

    check()


@pytest.mark.parametrize("name", ["brightness", "shot_noise", "saturate", "gaussian_noise"])
def test_float_output_of_an_image_does_not_depend_on_its_batch_mates(name):
    """An image on the uint8 grid gets the same float output alone as next to an off-grid image.

    (Fast paths for 8-bit values must not change the numbers of the images they are chosen for.)
    """
    g = torch.Generator().manual_seed(3)
    on_grid = torch.randint(0, 256, (2, 3, 32, 32), generator=g).float() / 255
    off_grid = torch.rand(2, 3, 32, 32, generator=g)
    both = corrupt(torch.cat([on_grid, off_grid]), name, 3, seed=1)
    assert torch.equal(both[:2], corrupt(on_grid, name, 3, seed=1))
    assert torch.equal(both[2:], corrupt(off_grid, name, 3, seed=1, start_index=2))
