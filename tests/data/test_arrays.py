"""ArrayDataset, iter_batches and load_cifar10_arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import ToTensor

from prunesafe.data import ArrayDataset, cifar_arrays, iter_batches, load_cifar10_arrays


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(7, 32, 32, 3), dtype=np.uint8)


def test_item_matches_torchvision_to_tensor(images: np.ndarray) -> None:
    ds = ArrayDataset(images, np.arange(7) % 3)
    for i in (0, 6, -1):
        x, y = ds[i]
        assert torch.equal(x, ToTensor()(images[i]))
        assert y == int(np.arange(7)[i] % 3)
    assert len(ds) == 7


def test_transform_applied_to_float_tensor(images: np.ndarray) -> None:
    ds = ArrayDataset(images, np.zeros(7, np.int64), transform=lambda t: t * 2)
    assert torch.equal(ds[2][0], ToTensor()(images[2]) * 2)


def test_iter_batches_bit_identical_to_to_tensor(images: np.ndarray) -> None:
    labels = np.arange(7)
    xs, ys = [], []
    for x, y in iter_batches(images, labels, batch_size=3, reuse_buffer=False):
        xs.append(x)
        ys.append(y)
    assert [x.shape[0] for x in xs] == [3, 3, 1]
    expected = torch.stack([ToTensor()(im) for im in images])
    assert torch.equal(torch.cat(xs), expected)
    assert torch.equal(torch.cat(ys), torch.arange(7))
    assert torch.cat(ys).dtype == torch.int64


def test_iter_batches_reuses_one_buffer(images: np.ndarray) -> None:
    ptrs = {x.data_ptr() for x, _ in iter_batches(images, np.zeros(7, np.int64), batch_size=3)}
    assert len(ptrs) == 1


def test_iter_batches_accepts_tensor_and_memmap(tmp_path, images: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", images)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    a = torch.cat([x.clone() for x, _ in iter_batches(mm, np.zeros(7, np.uint8), 4, release_pages=True)])
    zeros = torch.zeros(7, dtype=torch.long)
    b = torch.cat([x.clone() for x, _ in iter_batches(torch.from_numpy(images), zeros, 4)])
    assert torch.equal(a, b)
    assert list(iter_batches(images[:0], [], 4)) == []


@pytest.mark.parametrize("mode", ["c", "r+"])
def test_release_pages_keeps_edits_of_copy_on_write_and_writable_maps(
    tmp_path, images: np.ndarray, mode: str
) -> None:
    # regression: madvise(MADV_DONTNEED) on a private ("c") map silently reverted the user's edits
    np.save(tmp_path / "x.npy", images)
    mm = np.load(tmp_path / "x.npy", mmap_mode=mode)
    mm[0] = 1
    mm[5] = 2
    edited = np.array(mm)
    got = torch.cat(
        [x.clone() for x, _ in iter_batches(mm, np.zeros(7, np.int64), 4, release_pages=True)]
    )
    assert torch.equal(got, torch.stack([ToTensor()(im) for im in edited]))
    assert np.array_equal(np.asarray(mm), edited)  # the edits survive the iteration


def test_batches_method(images: np.ndarray) -> None:
    ds = ArrayDataset(images, np.arange(7))
    assert sum(x.shape[0] for x, _ in ds.batches(2)) == 7


@pytest.mark.parametrize(
    ("imgs", "labels", "exc", "match"),
    [
        (np.zeros((2, 32, 32, 3), np.float32), [0, 1], TypeError, "uint8"),
        (np.zeros((2, 3, 32, 32), np.uint8), [0, 1], ValueError, "NHWC"),
        (np.zeros((2, 32, 32), np.uint8), [0, 1], ValueError, "NHWC"),
        ([[0]], [0], TypeError, "numpy array"),
        (np.zeros((2, 32, 32, 3), np.uint8), [0], ValueError, "must match"),
        (np.zeros((2, 32, 32, 3), np.uint8), [0.0, 1.0], TypeError, "integer"),
        (np.zeros((2, 32, 32, 3), np.uint8), [0, -1], ValueError, "non-negative"),
        (np.zeros((2, 32, 32, 3), np.uint8), [[0, 1]], ValueError, "1-D"),
    ],
)
def test_bad_inputs(imgs, labels, exc, match) -> None:
    with pytest.raises(exc, match=match):
        ArrayDataset(imgs, labels)
    with pytest.raises(exc, match=match):
        next(iter_batches(imgs, labels))


def test_bad_batch_size_and_index(images: np.ndarray) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_batches(images, np.zeros(7, np.int64), 0))
    with pytest.raises(IndexError, match="out of range"):
        ArrayDataset(images, np.zeros(7, np.int64))[7]
    with pytest.raises(TypeError, match="callable"):
        ArrayDataset(images, np.zeros(7, np.int64), transform=3)  # type: ignore[arg-type]


def test_load_cifar10_arrays_roundtrip_and_errors(tmp_path) -> None:
    np.save(tmp_path / "train_images.npy", np.ones((3, 32, 32, 3), np.uint8))
    np.save(tmp_path / "train_labels.npy", np.array([1, 2, 3], np.uint8))
    x, y = load_cifar10_arrays(tmp_path, "train")
    assert isinstance(x, np.memmap)
    assert x.shape == (3, 32, 32, 3)
    assert y.dtype == np.int64
    assert y.tolist() == [1, 2, 3]
    with pytest.raises(FileNotFoundError, match=r"test_images\.npy"):
        load_cifar10_arrays(tmp_path, "test")
    with pytest.raises(ValueError, match="split"):
        load_cifar10_arrays(tmp_path, "val")  # type: ignore[arg-type]
    np.save(tmp_path / "train_labels.npy", np.array([1, 2]))
    with pytest.raises(ValueError, match="must match"):
        load_cifar10_arrays(tmp_path, "train")


def test_shared_cifar10_arrays(cifar10_dir) -> None:
    x, y = load_cifar10_arrays(cifar10_dir)
    assert x.shape == (10000, 32, 32, 3)
    assert x.dtype == np.uint8
    assert isinstance(x, np.memmap)
    assert y.dtype == np.int64
    assert set(np.unique(y).tolist()) == set(range(10))


def test_cifar_arrays_and_load_errors(tmp_path) -> None:
    from prunesafe.data import load_cifar10, load_cifar100

    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_cifar100(tmp_path, train=True)
    with pytest.raises(TypeError, match=r"\.data"):
        cifar_arrays(object())
