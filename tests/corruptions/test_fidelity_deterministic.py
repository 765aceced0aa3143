"""Deterministic corruptions vs the reference sample: mean |engine - sample| <= 1 level at every severity.

../shared/data/CIFAR-10-C-sample was made by the reference make_cifar_c.py from test images 0-199; severity
s occupies rows [(s-1)*200, s*200).  The issue's bound is 1 intensity level; the engine
measures <= 0.03 (contrast, pixelate and jpeg_compression are bit-identical), so a
second, tighter bound guards against regressions that would still pass the issue's bound.
"""

from __future__ import annotations

import numpy as np
import pytest
from _names import DETERMINISTIC

from prunesafe.corruptions import corrupt

BIT_IDENTICAL = ("contrast", "pixelate", "jpeg_compression")


@pytest.fixture(scope="module")
def clean(cifar10_dir) -> np.ndarray:
    return np.array(np.load(cifar10_dir / "test_images.npy", mmap_mode="r")[:200])


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_mean_abs_diff_to_the_sample_within_one_level(clean, cifar10c_sample_dir, name):
    sample = np.load(cifar10c_sample_dir / f"{name}.npy", mmap_mode="r")
    for s in range(1, 6):
        ref = sample[(s - 1) * 200 : s * 200].astype(np.int16)
        out = corrupt(clean, name, s).astype(np.int16)
        diff = np.abs(out - ref)
        assert diff.mean() <= 1.0, (name, s, diff.mean())
        assert diff.mean() <= 0.1, (name, s, diff.mean())  # measured <= 0.02
        assert diff.max() <= 1, (name, s, diff.max())  # only float rounding at truncation boundaries
        if name in BIT_IDENTICAL:
            assert diff.max() == 0, (name, s)


def test_float_input_path_is_as_faithful(clean, cifar10c_sample_dir):
    import torch

    x = torch.from_numpy(clean).permute(0, 3, 1, 2).double() / 255
    sample = np.load(cifar10c_sample_dir / "gaussian_blur.npy", mmap_mode="r")
    y = corrupt(x, "gaussian_blur", 3).permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(np.floor(y + 1e-6) - sample[400:600]).mean() <= 0.05


def test_jpeg_backends_agree_bit_for_bit(clean):
    """torchvision.io (fast path) and Pillow (the reference's library) give the same JPEG round trip."""
    import torch

    from prunesafe.corruptions.digital import jpeg_compression

    x = torch.from_numpy(clean[:40]).permute(0, 3, 1, 2).float() / 255
    for s in (1, 5):
        assert torch.equal(jpeg_compression(x, s, None, backend="pil"), jpeg_compression(x, s, None))


def test_jpeg_uint8_path_equals_the_float_path_and_pillow(clean, monkeypatch):
    """uint8 input skips the float round trip and threads libjpeg: the float path's bytes, Pillow's bytes."""
    import torch

    from prunesafe.corruptions import digital
    from prunesafe.corruptions.digital import jpeg_compression, jpeg_compression_uint8

    x = torch.from_numpy(clean[:70])
    as_float = x.permute(0, 3, 1, 2).float() / 255
    monkeypatch.setattr(digital, "_JPEG_MIN_PER_THREAD", 8)  # split 70 images over the threads
    for s in range(1, 6):
        fast = corrupt(clean[:70], "jpeg_compression", s)
        via_float = jpeg_compression(as_float, s, None).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        pil = jpeg_compression_uint8(x, s, backend="pil").numpy()
        np.testing.assert_array_equal(fast, via_float)
        np.testing.assert_array_equal(fast, pil)
    old = torch.get_num_threads()
    torch.set_num_threads(3)  # a split that does not divide the batch keeps the image order
    try:
        np.testing.assert_array_equal(jpeg_compression_uint8(x, 5).numpy(), fast)
    finally:
        torch.set_num_threads(old)


def test_uint8_fn_is_refused_for_random_corruptions():
    from prunesafe.corruptions._registry import register_corruption

    def identity(x, s, rng=None):
        return x

    with pytest.raises(ValueError, match="only for deterministic"):
        register_corruption("gaussian_noise", identity, deterministic=False, uint8_fn=identity)


@pytest.mark.parametrize("name", ["brightness", "saturate"])
def test_level_tables_give_the_float64_formula(clean, monkeypatch, name):
    """The 8-bit fast path (tables indexed by levels) truncates exactly like the per-pixel float64 formula."""
    import torch

    from prunesafe.corruptions import digital

    x = torch.from_numpy(clean[:64]).permute(0, 3, 1, 2).float() / 255
    x[0, :, :4, :4] = 0.0  # black and white grey pixels (hue 0, v = 0 / v = 1)
    x[1, :, :4, :4] = 1.0
    fn = getattr(digital, name)
    fast = [fn(x, s, None) for s in range(1, 6)]
    monkeypatch.setattr(digital, "_uint8_levels", lambda _x: None)
    for s, out in enumerate(fast, start=1):
        ref = fn(x, s, None)
        assert torch.equal(torch.floor(out), torch.floor(ref)), (name, s)
        assert torch.allclose(out.double(), ref.double(), rtol=0, atol=1e-4), (name, s)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_empty_batch_gives_an_empty_batch(name):
    import torch

    from prunesafe.corruptions._registry import get_corruption

    for s in (1, 5):
        assert get_corruption(name).fn(torch.zeros(0, 3, 32, 32), s, None).shape == (0, 3, 32, 32)
