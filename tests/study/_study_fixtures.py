"""Fixtures of the study tests: tiny data cut from ../shared (64 test, 160 train, 2x5x16 corrupted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO_ROOT, run_cli  # noqa: F401  (re-exported for the study tests)

N_TEST, N_TRAIN, N_CELL = 64, 160, 16
CORRUPTIONS = ("fog", "contrast")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory, cifar10_dir: Path, cifar10c_sample_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("study-data")
    (root / "cifar10").mkdir()
    for split, n in (("test", N_TEST), ("train", N_TRAIN)):
        images = np.load(cifar10_dir / f"{split}_images.npy", mmap_mode="r")[:n]
        labels = np.load(cifar10_dir / f"{split}_labels.npy")[:n]
        np.save(root / "cifar10" / f"{split}_images.npy", np.ascontiguousarray(images))
        np.save(root / "cifar10" / f"{split}_labels.npy", labels)
    c_dir = root / "CIFAR-10-C"
    c_dir.mkdir()
    per = 200  # images per severity in the shared sample
    labels = np.load(cifar10c_sample_dir / "labels.npy")
    for name in CORRUPTIONS:
        full = np.load(cifar10c_sample_dir / f"{name}.npy", mmap_mode="r")
        np.save(c_dir / f"{name}.npy", np.concatenate([full[s * per : s * per + N_CELL] for s in range(5)]))
    np.save(c_dir / "labels.npy", np.concatenate([labels[s * per : s * per + N_CELL] for s in range(5)]))
    return root


@pytest.fixture(scope="session")
def checkpoint(models_dir: Path) -> Path:
    return models_dir / "resnet20-jpeg.th"


@pytest.fixture
def base_config(tiny_data: Path, checkpoint: Path, tmp_path: Path) -> dict[str, Any]:
    return {
        "models": [{"name": "resnet20", "checkpoint": str(checkpoint)}],
        "methods": ["unstructured"],
        "ratios": [0.5],
        "seeds": [0],
        "finetune_epochs": 0,
        "n_holdout": 32,
        "corruptions": list(CORRUPTIONS),
        "severities": [1, 2],
        "data_dir": str(tiny_data),
        "out": str(tmp_path / "run"),
        "progress": False,
        "bootstrap_resamples": 100,
        "batch_size": 64,
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


PY = sys.executable
