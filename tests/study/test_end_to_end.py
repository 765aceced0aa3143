# ruff: noqa: F811  (pytest fixtures imported from _study_fixtures are redefined as arguments)
"""End to end on a tiny config: every output exists and all agree; a NaN model does not stop the run."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from _study_fixtures import N_TEST, base_config, checkpoint, tiny_data  # noqa: F401
from torch import nn

from prunesafe.pruning import Pruner, load_pruned, register_pruner, unregister_pruner
from prunesafe.study import CONTRACT_COLUMNS, run_study


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path, checkpoint: Path) -> Any:
    out = tmp_path_factory.mktemp("e2e") / "run"
    cfg = {
        "models": [{"name": "resnet20", "checkpoint": str(checkpoint)}], "methods": ["unstructured"],
        "ratios": [0.5], "seeds": [0, 1], "finetune_epochs": 1, "n_holdout": 32,
        "corruptions": ["fog", "contrast"], "severities": [1, 2], "data_dir": str(tiny_data), "out": str(out),
        "progress": False, "bootstrap_resamples": 200, "batch_size": 64,
    }  # fmt: skip
    return run_study(cfg), out


@pytest.mark.slow
def test_jsonl_csv_and_pandas_hold_the_same_rows(e2e: Any) -> None:
    result, out = e2e
    jsonl = pd.read_json(out / "results.jsonl", lines=True)
    csv = pd.read_csv(out / "results.csv")
    assert list(jsonl.columns[: len(CONTRACT_COLUMNS)]) == list(CONTRACT_COLUMNS)
    assert list(csv.columns) == list(jsonl.columns)
    assert len(jsonl) == 2 * 3 * 5  # seeds x (none, control, unstructured) x (clean + 4 cells)
    pd.testing.assert_frame_equal(jsonl, csv, check_dtype=False)
    pd.testing.assert_frame_equal(result.to_pandas(), jsonl, check_dtype=False)
    assert set(jsonl["method"]) == {"none", "control", "unstructured"}
    assert (jsonl.loc[jsonl.corruption == "clean", "severity"] == 0).all()
    assert (jsonl["corruptions_from"] == "files").all()
    assert (jsonl["temperature"] > 0).all()
    assert (jsonl.loc[jsonl.method == "none", "finetune_epochs"] == 0).all()
    assert (jsonl.loc[jsonl.method != "none", "finetune_epochs"] == 1).all()


@pytest.mark.slow
def test_summary_and_report_match_the_rows(e2e: Any) -> None:
    _, out = e2e
    rows = pd.read_json(out / "results.jsonl", lines=True)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 6
    for _, s in summary.iterrows():
        job = rows[(rows.method == s["method"]) & (rows.ratio == s["ratio"]) & (rows.seed == s["seed"])]
        corrupted = job[job.corruption != "clean"]
        clean = job[job.corruption == "clean"].iloc[0]
        assert s["mPC"] == pytest.approx(corrupted["accuracy"].mean(), abs=1e-12)
        assert s["rPC"] == pytest.approx(corrupted["accuracy"].mean() / clean["accuracy"], abs=1e-12)
        for sev in (1, 2):
            assert s[f"mPC_s{sev}"] == pytest.approx(corrupted[corrupted.severity == sev]["accuracy"].mean())
            assert s[f"ece_s{sev}"] == pytest.approx(corrupted[corrupted.severity == sev]["ece"].mean())
        # relative mCE: mean over c of sum_s (E - E_clean) / sum_s (E_ref - E_ref_clean)
        ref = rows[(rows.method == "none") & (rows.seed == s["seed"])]
        ref_clean = 1 - ref[ref.corruption == "clean"].iloc[0]["accuracy"]
        ratios = []
        for c in ("fog", "contrast"):
            num = ((1 - corrupted[corrupted.corruption == c]["accuracy"]) - (1 - clean["accuracy"])).sum()
            den = ((1 - ref[ref.corruption == c]["accuracy"]) - ref_clean).sum()
            ratios.append(num / den)
        assert s["relative_mCE"] == pytest.approx(np.mean(ratios), abs=1e-9)
    report = (out / "report.md").read_text(encoding="utf-8")
    for method in ("none", "control", "unstructured"):
        group = summary[summary.method == method]
        for key in ("clean_accuracy", "mPC"):
            expected = f"{group[key].mean():.4f} ± {group[key].std(ddof=1):.4f}"
            line = next(ln for ln in report.splitlines() if ln.startswith(f"| {method} | "))
            assert expected in line, (method, key, expected, line)


@pytest.mark.slow
def test_verdict_estimates_are_the_pooled_differences(e2e: Any) -> None:
    _, out = e2e
    summary = pd.read_csv(out / "summary.csv")
    verdict = pd.read_csv(out / "verdict.csv")
    assert set(verdict["reference"]) == {"none", "control"}
    assert set(verdict["metric"]) == {"accuracy", "ece", "mPC"}
    pruned = summary[summary.method == "unstructured"].set_index("seed")
    for ref in ("none", "control"):
        base = summary[summary.method == ref].set_index("seed")
        for metric, col in (("accuracy", "clean_accuracy"), ("mPC", "mPC")):
            v = verdict[(verdict.reference == ref) & (verdict.metric == metric)].iloc[0]
            # equal n per seed and cell: the pooled difference is the mean over seeds of the differences
            assert v["estimate"] == pytest.approx((pruned[col] - base[col]).mean(), abs=1e-12)
            assert v["n_seeds"] == 2
            assert v["low"] <= v["high"]
            assert bool(v["excludes_zero"]) == (v["low"] > 0 or v["high"] < 0)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "verdict" in report
    assert re.search(r"\| unstructured \| 0\.5 \| [+-]\d\.\d{4} \[", report)


@pytest.mark.slow
def test_figures_and_checkpoints(e2e: Any) -> None:
    _, out = e2e
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    for name in (
        "fig1_ece_accuracy_resnet20.png",
        "fig2_mpc_severity_resnet20.png",
        "fig3_ece_severity_resnet20.png",
    ):
        assert name in figures
    assert any(n.startswith("reliability_resnet20__unstructured") for n in figures)
    for p in (out / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the checkpoint is the model that was evaluated: its clean logits are the stored ones
    slug = "resnet20__unstructured__r0.500__s1"
    model = load_pruned(out / "checkpoints" / f"{slug}.pt").eval()
    logits = np.load(out / "logits" / f"{slug}.npy")[:N_TEST]
    from prunesafe.data import load_cifar10_arrays

    data_dir = Path(pd.read_json(out / "config.json", typ="series")["config"]["data_dir"])
    x, _ = load_cifar10_arrays(data_dir / "cifar10")
    with torch.no_grad():
        again = model(torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(again.numpy(), logits, rtol=0, atol=1e-5)


class _NaNHead(Pruner):
    """A 'pruner' that breaks the model: its classifier weights become NaN."""

    def prune(self, model: nn.Module, *, example_inputs: Any = None) -> nn.Module:
        with torch.no_grad():
            model.linear.weight.fill_(math.nan)  # type: ignore[operator]
        self.achieved_ratio = 0.0
        self.pruned_modules = ["linear"]
        return model


@pytest.fixture
def nan_pruner() -> Iterator[str]:
    register_pruner("nan-test")(_NaNHead)
    try:
        yield "nan-test"
    finally:
        unregister_pruner("nan-test")


@pytest.mark.slow
def test_nan_model_gives_nan_cells_with_a_warning_and_the_run_goes_on(
    base_config: dict[str, Any], nan_pruner: str
) -> None:
    cfg = {**base_config, "methods": [nan_pruner, "unstructured"], "control": False, "figures": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_study(cfg)
    assert any("NaN" in str(w.message) and "recorded as NaN" in str(w.message) for w in caught)
    rows = pd.DataFrame(result.records)
    broken, fine = rows[rows.method == nan_pruner], rows[rows.method == "unstructured"]
    assert len(broken) == len(fine) == 5
    assert broken[["accuracy", "ece", "ece_equal_mass", "nll", "brier"]].isna().all().all()
    assert (broken["status"] == "nan").all()
    assert np.isfinite(fine[["accuracy", "ece", "nll"]].to_numpy()).all()
    assert (Path(cfg["out"]) / "report.md").is_file()
    verdict = pd.DataFrame(result.verdict)
    assert verdict[verdict.method == nan_pruner]["estimate"].isna().all()
    assert verdict[verdict.method == "unstructured"]["estimate"].notna().all()


@pytest.mark.slow
def test_a_ratio_that_prunes_nothing_reuses_the_control_bit_for_bit(base_config: dict[str, Any]) -> None:
    cfg = {
        **base_config,
        "ratios": [0.0],
        "finetune_epochs": 1,
        "figures": False,
        "temperature_scaling": False,
    }
    with_control = pd.DataFrame(run_study(cfg).records)
    alone = pd.DataFrame(run_study({**cfg, "control": False, "out": cfg["out"] + "-alone"}).records)
    reused = with_control[with_control.method == "unstructured"].reset_index(drop=True)
    computed = alone[alone.method == "unstructured"].reset_index(drop=True)  # fine-tuned itself, no control
    cols = ["corruption", "severity", "accuracy", "ece", "ece_equal_mass", "nll", "brier", "achieved_ratio"]
    pd.testing.assert_frame_equal(reused[cols], computed[cols])
    control = with_control[with_control.method == "control"].reset_index(drop=True)
    pd.testing.assert_frame_equal(reused[cols[:-1]], control[cols[:-1]])
    ckpt = Path(cfg["out"]) / "checkpoints"
    reused_file = (ckpt / "resnet20__unstructured__r0.000__s0.pt").read_bytes()
    assert reused_file == (ckpt / "resnet20__control__r0.000__s0.pt").read_bytes()  # it was reused
    alone_file = Path(cfg["out"] + "-alone") / "checkpoints" / "resnet20__unstructured__r0.000__s0.pt"
    assert alone_file.read_bytes() != reused_file  # there it was fine-tuned itself (masked model)


@pytest.mark.slow
def test_train_baseline_once_per_seed_and_reuse_it_on_resume(base_config: dict[str, Any]) -> None:
    cfg = {**base_config, "models": [{"name": "resnet20", "train": "baseline", "baseline_epochs": 1,
           "baseline_batch_size": 32}], "seeds": [0, 1], "control": False, "figures": False,
           "temperature_scaling": False, "corruptions": ["fog"], "severities": [1]}  # fmt: skip
    out = Path(cfg["out"])
    first = pd.DataFrame(run_study(cfg, stop_after=3).records)  # none s0, unstructured s0, none s1
    saved = {s: (out / "base" / f"resnet20__s{s}.pt").read_bytes() for s in (0, 1)}
    assert saved[0] != saved[1]  # the seed drives the baseline's initialisation and batches
    none = first[first.method == "none"]
    clean = none[none.corruption == "clean"].set_index("seed")
    assert clean.loc[0, "nll"] != clean.loc[1, "nll"]
    rows = pd.DataFrame(run_study(cfg).records)  # resumed: the saved baselines are loaded, not retrained
    assert {s: (out / "base" / f"resnet20__s{s}.pt").read_bytes() for s in (0, 1)} == saved
    pd.testing.assert_frame_equal(
        rows[rows.method == "none"].reset_index(drop=True), none.reset_index(drop=True)
    )
    assert len(rows) == 2 * 2 * 2  # seeds x (none, unstructured) x (clean, fog-1)
