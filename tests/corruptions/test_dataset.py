"""OnTheFlyCIFARC (cells / items), write_cifar_c (folder read back by CIFAR10C) and the make-c CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from prunesafe.corruptions import corrupt
from prunesafe.corruptions.cli import add_arguments, run
from prunesafe.corruptions.dataset import OnTheFlyCIFARC
from prunesafe.corruptions.writer import MANIFEST, write_cifar_c
from prunesafe.data import CIFAR10C


@pytest.fixture(scope="module")
def clean() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 10)


def test_cells_have_the_cifar10c_reading_interface(clean):
    x, y = clean
    ds = OnTheFlyCIFARC(x, y, ["gaussian_noise", "contrast"], [2, 4], seed=5)
    assert [(c.corruption, c.severity) for c in ds.cells] == [
        ("gaussian_noise", 2),
        ("gaussian_noise", 4),
        ("contrast", 2),
        ("contrast", 4),
    ]
    cell = ds.cells[1]
    assert cell.images.dtype == np.uint8
    assert cell.images.shape == x.shape
    assert np.array_equal(cell.labels, y)
    assert np.array_equal(cell.images, corrupt(x, "gaussian_noise", 4, seed=5))
    assert cell.images is cell.images  # cached while it is the latest cell
    assert not cell.images.flags.writeable


def test_items_match_cells_and_order_is_corruption_major(clean):
    x, y = clean
    ds = OnTheFlyCIFARC(x, y, ["shot_noise", "saturate"], "all", seed=3)
    assert len(ds) == 2 * 5 * 10
    assert np.array_equal(ds.labels, np.tile(y, 10))
    idx = 1 * 10 + 7  # shot_noise, severity 2, image 7
    assert ds.source(idx) == ("shot_noise", 2)
    img, label = ds[idx]
    assert label == int(y[7])
    assert img.shape == (3, 32, 32)
    assert img.dtype == torch.float32
    expected = corrupt(x, "shot_noise", 2, seed=3)[7]  # item computed alone == image 7 of the whole cell
    assert torch.equal(img, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    _ = ds.cells[1].images  # with the cell cached, the item comes from the cache: same value
    assert torch.equal(ds[idx][0], img)
    assert ds[-1][1] == int(y[-1])
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(TypeError):
        ds[1.0]  # type: ignore[index]


def test_transform_and_bad_arguments(clean):
    x, y = clean
    ds = OnTheFlyCIFARC(x, y, "contrast", 1, transform=lambda t: t * 0)
    assert float(ds[0][0].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="unknown corruption"):
        OnTheFlyCIFARC(x, y, "nope")
    with pytest.raises(ValueError, match="between 1 and 5"):
        OnTheFlyCIFARC(x, y, "contrast", 7)
    with pytest.raises(ValueError, match="10 images"):
        OnTheFlyCIFARC(x, y[:3], "contrast")
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        OnTheFlyCIFARC(np.zeros((2, 28, 28, 3), np.uint8), [0, 1], "contrast")
    with pytest.raises(TypeError, match="uint8"):
        OnTheFlyCIFARC(x.astype(np.float32), y, "contrast")
    with pytest.raises(ValueError, match="seed"):
        OnTheFlyCIFARC(x, y, "contrast", seed=-2)


def test_writer_folder_is_read_by_cifar10c_and_matches_on_the_fly(tmp_path, clean):
    x, y = clean
    names = ["impulse_noise", "pixelate"]
    write_cifar_c(tmp_path, x, y, names, seed=9, chunk_size=3, progress=False)
    ds = CIFAR10C(tmp_path, names)
    fly = OnTheFlyCIFARC(x, y, names, seed=9)
    assert len(ds) == len(fly) == 2 * 5 * 10
    for stored, generated in zip(ds.cells, fly.cells, strict=True):
        assert (stored.corruption, stored.severity) == (generated.corruption, generated.severity)
        assert np.array_equal(stored.images, generated.images)
        assert np.array_equal(stored.labels, generated.labels)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["seed"] == 9
    assert manifest["severities"] == {"impulse_noise": [1, 2, 3, 4, 5], "pixelate": [1, 2, 3, 4, 5]}


def test_writer_subset_of_severities_then_completion(tmp_path, clean):
    x, y = clean
    with pytest.warns(UserWarning, match="not written yet"):
        write_cifar_c(tmp_path, x, y, "speckle_noise", [1, 2], seed=1, progress=False)
    write_cifar_c(tmp_path, x, y, "speckle_noise", [3, 4, 5], seed=1, progress=False)
    full = tmp_path / "full"
    write_cifar_c(full, x, y, "speckle_noise", seed=1, progress=False)
    assert np.array_equal(np.load(tmp_path / "speckle_noise.npy"), np.load(full / "speckle_noise.npy"))
    with pytest.raises(ValueError, match="seed=1"):
        write_cifar_c(tmp_path, x, y, "speckle_noise", 1, seed=2, progress=False)


def test_writer_refuses_foreign_files_unless_overwrite(tmp_path, clean):
    x, y = clean
    np.save(tmp_path / "contrast.npy", np.zeros((50, 32, 32, 3), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_cifar_c(tmp_path, x, y, "contrast", progress=False)
    write_cifar_c(tmp_path, x, y, "contrast", overwrite=True, progress=False)
    assert np.array_equal(np.load(tmp_path / "contrast.npy")[:10], corrupt(x, "contrast", 1))


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make-c")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_make_c_writes_a_readable_folder(tmp_path, clean, capsys):
    x, y = clean
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "C"
    argv = ["--images", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--out", str(out)]
    opts = ["--corruptions", "gaussian_noise", "brightness", "--seed", "4", "--no-progress"]
    assert run(_parse([*argv, *opts])) == 0
    assert "wrote 2 corruption(s)" in capsys.readouterr().out
    ds = CIFAR10C(out, ["gaussian_noise", "brightness"], 3)
    assert np.array_equal(ds.cells[0].images, corrupt(x, "gaussian_noise", 3, seed=4))
    assert np.array_equal(ds.cells[1].images, corrupt(x, "brightness", 3))


def test_cli_bad_input_exits_2_with_a_message(tmp_path, clean, capsys):
    x, y = clean
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y[:4])
    base = ["--images", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]
    base += ["--out", str(tmp_path / "o")]
    assert run(_parse([*base, "--corruptions", "fgo"])) == 2
    assert "unknown corruption 'fgo'" in capsys.readouterr().err
    assert run(_parse([*base, "--severities", "0"])) == 2
    assert "between 1 and 5" in capsys.readouterr().err
    assert run(_parse([*base, "--corruptions", "contrast", "--no-progress"])) == 2
    assert "4 entries but there are 10 images" in capsys.readouterr().err
    missing = ["--images", str(tmp_path / "nope.npy"), "--labels", str(tmp_path / "y.npy"), "--out", "o"]
    assert run(_parse(missing)) == 2
    assert "not found" in capsys.readouterr().err


def test_evaluate_corruptions_accepts_the_on_the_fly_dataset(tmp_path, clean):
    """Same table from OnTheFlyCIFARC as from the folder write_cifar_c made with the same seed."""
    from prunesafe.metrics import evaluate_corruptions
    from prunesafe.models import cifar_resnet

    x, y = clean
    torch.manual_seed(0)
    model = cifar_resnet(20).eval()
    names = ["gaussian_noise", "zoom_blur"]
    with pytest.warns(UserWarning, match="not written yet"):
        write_cifar_c(tmp_path, x, y, names, [1, 5], seed=2, progress=False)
    fly = evaluate_corruptions(model, OnTheFlyCIFARC(x, y, names, [1, 5], seed=2), progress=False)
    files = evaluate_corruptions(model, CIFAR10C(tmp_path, names, [1, 5]), progress=False)
    cols = ("corruption", "severity", "n", "accuracy", "nll", "ece")
    key = [tuple(r[c] for c in cols) for r in fly.records]
    assert key == [tuple(r[c] for c in cols) for r in files.records]
    assert [(r[0], r[1]) for r in key] == [(c, s) for c in names for s in (1, 5)]
