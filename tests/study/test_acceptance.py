# ruff: noqa: F811  (pytest fixtures imported from _study_fixtures are redefined as arguments)
"""The study only assembles public pieces: with unstructured pruning and no fine-tuning every cell equals
prune_model + evaluate_corruptions (and the calibration functions) for the same model and data, exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _study_fixtures import CORRUPTIONS, N_TEST, base_config, checkpoint, tiny_data  # noqa: F401

from prunesafe.data import CIFAR10C, load_cifar10_arrays
from prunesafe.metrics import brier_score, evaluate_corruptions, expected_calibration_error
from prunesafe.models import cifar_resnet, load_weights
from prunesafe.pruning import load_pruned, prune_model
from prunesafe.study import CONTRACT_COLUMNS, run_study


@pytest.mark.slow
def test_unstructured_without_finetuning_equals_the_public_pieces(
    base_config: dict[str, Any], tiny_data: Path, checkpoint: Path
) -> None:
    ratios = [0.3, 0.6]
    cfg = {**base_config, "ratios": ratios, "control": False, "temperature_scaling": False, "figures": False,
           "n_bins": 10, "severities": [1, 3, 5]}  # fmt: skip
    result = run_study(cfg)
    rows = result.records
    assert all(c in rows[0] for c in CONTRACT_COLUMNS)

    base = load_weights(cifar_resnet(20), checkpoint).eval()
    clean = load_cifar10_arrays(tiny_data / "cifar10")
    c_data = CIFAR10C(tiny_data / "CIFAR-10-C", list(CORRUPTIONS), [1, 3, 5])
    for method, ratio in [("none", 0.0)] + [("unstructured", r) for r in ratios]:
        model = base if method == "none" else prune_model(base, "unstructured", ratio)
        ref = evaluate_corruptions(model, c_data, clean=clean, n_bins=10, progress=False)
        mine = [r for r in rows if r["method"] == method and r["ratio"] == ratio]
        assert len(mine) == len(ref.records) == 1 + len(CORRUPTIONS) * 3
        for rec in ref.records:
            row = next(
                r for r in mine if r["corruption"] == rec["corruption"] and r["severity"] == rec["severity"]
            )
            assert row["n"] == rec["n"]
            assert row["accuracy"] == rec["accuracy"]
            assert row["ece"] == rec["ece"]
            assert row["nll"] == rec["nll"]
            logits = ref.logits[(rec["corruption"], rec["severity"])]
            labels = ref.labels[(rec["corruption"], rec["severity"])]
            assert row["ece_equal_mass"] == expected_calibration_error(
                logits, labels, n_bins=10, binning="quantile"
            )
            assert row["brier"] == brier_score(logits, labels)
            assert row["bins"] == 10
            assert row["edges"] == "uniform"
            assert row["norm"] == "l1"
        assert mine[0]["achieved_ratio"] == (
            0.0 if method == "none" else model.prunesafe_pruning.achieved_ratio
        )
        assert mine[0]["finetune_epochs"] == 0
        assert mine[0]["severity"] == 0
        assert mine[0]["corruption"] == "clean"
        if method != "none":  # the saved checkpoint is the model that was evaluated
            slug = f"resnet20__unstructured__r{ratio:.3f}__s0"
            reloaded = load_pruned(Path(cfg["out"]) / "checkpoints" / f"{slug}.pt").eval()
            x = torch.from_numpy(np.array(clean[0][:N_TEST])).permute(0, 3, 1, 2).float() / 255
            with torch.no_grad():
                assert torch.equal(reloaded(x), model(x))
