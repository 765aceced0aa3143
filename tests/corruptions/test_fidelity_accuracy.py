"""Accuracy fidelity of the engine over all 19 corruptions (issue 10): a model sees the same thing.

ResNet-20 (``resnet20-jpeg.th``) is evaluated on the CIFAR-10-C sample (the reference's output for test
images 0-199, 5 severities) and on the engine's output for the same images.  Required: per
corruption, the accuracy averaged over the 5 severities (1000 images) within 3 points of the sample's;
averaged over all 19 corruptions within 1 point.

The engine side is averaged over 3 seeds (0, 1, 2) for the 11 random corruptions (one seed for the 8
deterministic ones, whose output does not depend on it): the quantity compared is the engine's expected
accuracy, and one seed alone is noisy -- impulse_noise measured 63.8 / 60.9 / 61.2 / 60.3 % for seeds 0-3
(sample: 60.7 %), a seed-to-seed spread of 1.5 points.  The sample is a single reference draw with the
same spread, so for the noisiest corruptions the difference has a standard deviation of about 1.7 points
and the issue's 3-point bound is ~1.8 of them; for the others (spread <= 1 point) it is >= 3.  Over 19
corruptions the error of the mean shrinks by sqrt(19), so the 1-point bound is > 4 standard deviations.
The test prints the measured table (run with ``-s``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunesafe.corruptions import ALL_CORRUPTIONS, corrupt, get_corruption
from prunesafe.models import cifar_resnet, evaluate, load_weights

pytestmark = [pytest.mark.shared, pytest.mark.slow]
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def model(models_dir):
    return load_weights(cifar_resnet(20), models_dir / "resnet20-jpeg.th").eval()


def _accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():  # never torch.set_grad_enabled(False): it would leak into later tests of the worker
        return float(evaluate(model, (images, labels), batch_size=250)["acc"])


def test_accuracy_on_engine_output_matches_the_sample(model, cifar10_dir, cifar10c_sample_dir, shared_dir):
    clean = np.load(cifar10_dir / "test_images.npy", mmap_mode="r")[:200].copy()
    labels = np.load(cifar10c_sample_dir / "labels.npy").astype(np.int64)
    frost_dir = shared_dir / "data" / "frost"
    rows = []
    for name in ALL_CORRUPTIONS:
        sample = np.load(cifar10c_sample_dir / f"{name}.npy")
        seeds = (0,) if get_corruption(name).deterministic else SEEDS
        accs = []
        for seed in seeds:
            engine = np.concatenate(
                [corrupt(clean, name, s, seed=seed, frost_dir=frost_dir) for s in range(1, 6)]
            )
            accs.append(_accuracy(model, engine, labels))
        rows.append((name, _accuracy(model, sample, labels), float(np.mean(accs))))
    print(
        "\ncorruption            sample  engine  diff (accuracy, 1000 images each; engine: mean of 3 seeds)"
    )
    for name, ref, eng in rows:
        print(f"{name:20s}  {ref:.3f}   {eng:.3f}   {100 * (eng - ref):+.1f}")
    diffs = np.array([eng - ref for _, ref, eng in rows])
    ref_mean = np.mean([r for _, r, _ in rows])
    eng_mean = np.mean([e for _, _, e in rows])
    print(f"mean over 19: sample {ref_mean:.4f} engine {eng_mean:.4f}")
    bad = {name: round(100 * (eng - ref), 1) for name, ref, eng in rows if abs(eng - ref) > 0.03}
    assert not bad, bad
    assert abs(diffs.mean()) <= 0.01, diffs.mean()
