"""Acceptance: the public checkpoints reach their accuracy on the full shared CIFAR-10 test set (10000)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prunesafe.models import cifar_resnet, evaluate, load_weights

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def test_set(cifar10_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images = np.load(cifar10_dir / "test_images.npy")
    labels = np.load(cifar10_dir / "test_labels.npy")
    assert images.shape == (10000, 32, 32, 3)
    assert images.dtype == np.uint8
    return images, labels


# (file, depth, acceptance threshold, accuracy measured on this JPEG-decoded test set per shared/README.md)
CASES = [
    ("resnet20-12fca82f.th", 20, 0.80, 0.810),
    ("resnet20-jpeg.th", 20, 0.87, 0.883),
    ("resnet32-d509ac18.th", 32, 0.82, 0.826),
]


@pytest.mark.parametrize(("filename", "depth", "threshold", "measured"), CASES)
def test_checkpoint_accuracy_on_full_test_set(
    models_dir: Path,
    test_set: tuple[np.ndarray, np.ndarray],
    filename: str,
    depth: int,
    threshold: float,
    measured: float,
) -> None:
    model = load_weights(cifar_resnet(depth), models_dir / filename).eval()
    result = evaluate(model, test_set, batch_size=250)
    assert result["n"] == 10000
    assert result["acc"] >= threshold
    # A wrong normalisation or shortcut costs far more than this tolerance.
    assert abs(result["acc"] - measured) < 0.005
