"""CIFAR10C / CIFAR100C: layout, selection, memory mapping, verification and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import ToTensor

from prunesafe.data import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    CIFAR10C,
    CIFAR100C,
    CORRUPTION_GROUPS,
    EXTRA_CORRUPTIONS,
    ChecksumError,
    file_md5,
    integrity,
    resolve_corruptions,
    resolve_severities,
    write_md5sums,
)


def make_cifar_c(root: Path, corruptions=("fog", "snow"), n: int = 4, labels_len: str = "5n", seed: int = 0):
    """Tiny CIFAR-C folder whose pixel values encode (corruption index, severity, row)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, name in enumerate(corruptions):
        arr = rng.integers(0, 256, size=(5 * n, 32, 32, 3), dtype=np.uint8)
        arr[:, 0, 0, 0] = k
        arr[:, 0, 0, 1] = np.repeat(np.arange(1, 6), n)
        arr[:, 0, 0, 2] = np.tile(np.arange(n), 5)
        np.save(root / f"{name}.npy", arr)
    base = np.arange(n, dtype=np.int64) % 10
    np.save(root / "labels.npy", np.tile(base, 5) if labels_len == "5n" else base)
    return root


def test_named_sets() -> None:
    assert len(BENCHMARK_CORRUPTIONS) == 15
    assert len(set(BENCHMARK_CORRUPTIONS)) == 15
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert len(ALL_CORRUPTIONS) == 19
    assert [len(v) for v in CORRUPTION_GROUPS.values()] == [3, 4, 4, 4]
    assert resolve_corruptions("benchmark") == BENCHMARK_CORRUPTIONS
    assert resolve_corruptions(["fog", "weather"]) == ("fog", "snow", "frost", "brightness")
    assert resolve_severities([5, 1]) == (5, 1)


@pytest.mark.parametrize(
    ("corruption", "severity", "exc", "match"),
    [
        ("fgo", 1, ValueError, r"unknown corruption 'fgo'; valid names: gaussian_noise, .*saturate"),
        ([], 1, ValueError, "selects nothing"),
        ([3], 1, TypeError, "must be str"),
        ("fog", 0, ValueError, "between 1 and 5"),
        ("fog", 6, ValueError, "between 1 and 5"),
        ("fog", [1, 1], ValueError, "twice"),
        ("fog", True, TypeError, "ints in 1..5"),
        ("fog", 2.0, TypeError, "sequence of ints"),
        ("fog", "max", ValueError, "'all'"),
        ("fog", [], ValueError, "selects nothing"),
    ],
)
def test_bad_selection(tmp_path, corruption, severity, exc, match) -> None:
    make_cifar_c(tmp_path)
    with pytest.raises(exc, match=match):
        CIFAR10C(tmp_path, corruption, severity)


def test_sample_layout(cifar10c_sample_dir) -> None:
    labels = np.load(cifar10c_sample_dir / "labels.npy")
    assert labels.dtype == np.uint8
    assert labels.shape == (1000,)
    ds = CIFAR10C(cifar10c_sample_dir, "all", "all")
    assert len(ds) == 19 * 5 * 200
    assert len(ds.cells) == 95
    assert {c.corruption for c in ds.cells} == set(ALL_CORRUPTIONS)
    raw = np.load(cifar10c_sample_dir / "fog.npy")
    cell = next(c for c in ds.cells if (c.corruption, c.severity) == ("fog", 4))
    assert isinstance(cell.images, np.memmap)
    assert not cell.images.flags.writeable
    assert np.array_equal(cell.images, raw[600:800])
    assert cell.labels.dtype == np.int64
    assert np.array_equal(cell.labels, labels[600:800])
    # items and provenance
    i = ds.cells.index(cell) * 200 + 17
    x, y = ds[i]
    assert torch.equal(x, ToTensor()(raw[617]))
    assert y == int(labels[617])
    assert ds.source(i) == ("fog", 4)
    assert ds.cell_index[i] == ds.cells.index(cell)
    assert ds.labels.dtype == np.int64
    assert ds.labels.shape == (19000,)


def test_single_corruption_images_is_a_view(cifar10c_sample_dir) -> None:
    ds = CIFAR10C(cifar10c_sample_dir, "contrast", [2, 3, 4])
    raw = np.load(cifar10c_sample_dir / "contrast.npy", mmap_mode="r")
    assert isinstance(ds.images, np.memmap)
    assert ds.images.shape == (600, 32, 32, 3)
    assert np.array_equal(ds.images, raw[200:800])
    assert np.array_equal(ds.labels, np.load(cifar10c_sample_dir / "labels.npy")[200:800])
    with pytest.raises(ValueError, match=r"\.cells"):
        _ = CIFAR10C(cifar10c_sample_dir, ["fog", "snow"], 1).images
    with pytest.raises(ValueError, match=r"\.cells"):
        _ = CIFAR10C(cifar10c_sample_dir, "fog", [1, 3]).images


@pytest.mark.parametrize("labels_len", ["5n", "n"])
def test_any_n_and_label_lengths(tmp_path, labels_len) -> None:
    make_cifar_c(tmp_path, n=3, labels_len=labels_len)
    ds = CIFAR10C(tmp_path, ["snow", "fog"], [5, 2], transform=lambda t: t.sum())
    assert len(ds) == 12
    cells = [(c.corruption, c.severity) for c in ds.cells]
    assert cells == [("snow", 5), ("snow", 2), ("fog", 5), ("fog", 2)]
    for i in range(len(ds)):
        name, sev = ds.source(i)
        cell = ds.cells[i // 3]
        assert int(cell.images[i % 3, 0, 0, 0]) == ("fog", "snow").index(name)
        assert int(cell.images[i % 3, 0, 0, 1]) == sev
        assert int(cell.images[i % 3, 0, 0, 2]) == i % 3
    assert ds.labels.tolist() == [0, 1, 2] * 4
    assert isinstance(ds[0][0], torch.Tensor)
    assert ds[0][0].ndim == 0
    assert ds.source(-1) == ("fog", 2)
    with pytest.raises(IndexError):
        ds[12]


def test_parent_folder_and_cifar100c(tmp_path) -> None:
    make_cifar_c(tmp_path / "CIFAR-10-C")
    assert CIFAR10C(tmp_path, "fog", 1).root == tmp_path / "CIFAR-10-C"
    d = make_cifar_c(tmp_path / "c100", corruptions=("saturate",))
    np.save(d / "labels.npy", np.tile(np.array([99, 0, 50, 1], np.uint8), 5))
    assert CIFAR100C(d, "saturate", 3).labels.tolist() == [99, 0, 50, 1]
    with pytest.raises(ValueError, match=r"outside 0..9"):
        CIFAR10C(d, "saturate", 3)


def test_missing_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"(?s)CIFAR-10-C.*zenodo.org/records/2535967.*labels.npy"):
        CIFAR10C(tmp_path, "fog", 1)
    make_cifar_c(tmp_path, corruptions=("fog",))
    with pytest.raises(FileNotFoundError, match=r"corruption 'snow' file .*snow.npy not found"):
        CIFAR10C(tmp_path, "snow", 1)


def test_truncated_file(tmp_path) -> None:
    make_cifar_c(tmp_path)
    data = (tmp_path / "fog.npy").read_bytes()
    (tmp_path / "fog.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated or not a valid \.npy"):
        CIFAR10C(tmp_path, "fog", 1)
    (tmp_path / "snow.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"truncated or not a valid \.npy"):
        CIFAR10C(tmp_path, "snow", 1)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((20, 32, 32, 3), np.float32), "must be uint8"),
        (np.zeros((20, 3, 32, 32), np.uint8), "must be uint8 of shape"),
        (np.zeros((20, 32, 32), np.uint8), "must be uint8 of shape"),
        (np.zeros((19, 32, 32, 3), np.uint8), "expected 5\\*N"),
        (np.zeros((0, 32, 32, 3), np.uint8), "expected 5\\*N"),
    ],
)
def test_misshaped_file(tmp_path, array, match) -> None:
    make_cifar_c(tmp_path)
    np.save(tmp_path / "fog.npy", array)
    with pytest.raises(ValueError, match=match):
        CIFAR10C(tmp_path, "fog", 1)


def test_labels_mismatch(tmp_path) -> None:
    make_cifar_c(tmp_path, n=4)
    np.save(tmp_path / "labels.npy", np.zeros(7, np.int64))
    with pytest.raises(ValueError, match=r"labels.npy has 7 labels but fog.npy has 20 images"):
        CIFAR10C(tmp_path, "fog", 1)
    np.save(tmp_path / "labels.npy", np.zeros((4, 5), np.int64))
    with pytest.raises(ValueError, match="1-D integer"):
        CIFAR10C(tmp_path, "fog", 1)
    np.save(tmp_path / "labels.npy", np.zeros(20, np.float32))
    with pytest.raises(ValueError, match="1-D integer"):
        CIFAR10C(tmp_path, "fog", 1)
    make_cifar_c(tmp_path, n=4)
    np.save(tmp_path / "snow.npy", np.zeros((25, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="other corruption files have 20"):
        CIFAR10C(tmp_path, ["fog", "snow"], 1)


def test_verify_with_manifest_and_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    d = make_cifar_c(tmp_path / "data")
    write_md5sums(d, {p.name: file_md5(p, use_cache=False) for p in d.glob("*.npy")})
    calls: list[Path] = []
    real = integrity.hashlib.md5

    def counting_md5(*args, **kwargs):
        calls.append(Path("x"))
        return real(*args, **kwargs)

    monkeypatch.setattr(integrity.hashlib, "md5", counting_md5)
    CIFAR10C(d, "fog", 1, verify=True)
    assert len(calls) == 2  # labels.npy + fog.npy hashed once
    CIFAR10C(d, "fog", 1, verify=True)
    assert len(calls) == 2  # served from the cache
    cache = json.loads((d / integrity.CACHE_NAME).read_text())
    assert {Path(k).name for k in cache} == {"labels.npy", "fog.npy"}
    # modifying the file invalidates the cached digest
    arr = np.load(d / "fog.npy")
    arr[0, 0, 0, 0] ^= 1
    np.save(d / "fog.npy", arr)
    with pytest.raises(ChecksumError, match=r"MD5 mismatch for .*fog.npy"):
        CIFAR10C(d, "fog", 1, verify=True)
    assert len(calls) == 3
    # explicit mapping; names without a digest are an error
    good = {"labels.npy": file_md5(d / "labels.npy"), "snow.npy": file_md5(d / "snow.npy")}
    assert len(CIFAR10C(d, "snow", 2, verify=good)) == 4
    with pytest.raises(ValueError, match=r"no MD5 known for fog\.npy"):
        CIFAR10C(d, "fog", 2, verify=good)


def test_verify_without_manifest(tmp_path) -> None:
    make_cifar_c(tmp_path)
    with pytest.raises(FileNotFoundError, match="MD5SUMS"):
        CIFAR10C(tmp_path, "fog", 1, verify=True)


def test_cache_falls_back_to_user_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    d = make_cifar_c(tmp_path / "ro")
    monkeypatch.setattr(integrity, "_write_json_atomic", _fail_for(d))
    digest = file_md5(d / "fog.npy")
    assert not (d / integrity.CACHE_NAME).exists()
    user = json.loads((tmp_path / "cache" / "prunesafe" / "md5-cache.json").read_text())
    assert next(iter(user.values()))["md5"] == digest


def _fail_for(folder: Path):
    real = integrity._write_json_atomic

    def write(path, data):
        if path.parent == folder:
            return False
        return real(path, data)

    return write


def test_pickling_reopens_memory_maps(cifar10c_sample_dir) -> None:
    import pickle

    ds = CIFAR10C(cifar10c_sample_dir, ["fog", "snow"], "all")
    blob = pickle.dumps(ds)
    assert len(blob) < 50_000  # the 2 x 1000 images (6 MB) are not copied
    back = pickle.loads(blob)
    assert isinstance(back.cells[3].images, np.memmap)
    assert len(back) == len(ds)
    for i in (0, 999, 1999):
        assert torch.equal(back[i][0], ds[i][0])
        assert back.source(i) == ds.source(i)


def test_old_module_path_reexports_every_public_name():
    import prunesafe.data.cifar_c as new
    import prunesafe.data.corruptions as old

    assert set(old.__all__) == set(new.__all__)
    for name in new.__all__:
        assert getattr(old, name) is getattr(new, name)
    from prunesafe.data.corruptions import CIFAR10C as OldCIFAR10C

    assert OldCIFAR10C is CIFAR10C
