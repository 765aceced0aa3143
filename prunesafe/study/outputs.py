"""The study's outputs: ``results.csv``, ``summary.csv``, the verdict table, ``report.md``, the figures.

Everything here reads the run folder (``results.jsonl``, ``logits/``, ``labels.npy``, ``cells.json``) and
uses the public summaries of :mod:`prunesafe.metrics` (mPC, rPC, relative mCE, ECE per severity pooled and
averaged) and :func:`~prunesafe.metrics.paired_bootstrap_ci` for the verdict.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunesafe.study.config import StudyConfig
from prunesafe.study.runner import COLUMNS, Job, StudyResult, read_rows

__all__ = ["SUMMARY_COLUMNS", "VERDICT_COLUMNS", "summarise", "verdict", "write_outputs"]

_BASE = ("model", "corruption", "severity", "n", "accuracy", "ece", "nll")
_SEV = (1, 2, 3, 4, 5)

#: Columns of ``summary.csv`` (the ``_s<k>`` ones only for the severities of the study).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "model",
    "method",
    "ratio",
    "seed",
    "finetune_epochs",
    "achieved_ratio",
    "params",
    "macs",
    "clean_accuracy",
    "clean_ece",
    "clean_ece_equal_mass",
    "clean_nll",
    "clean_brier",
    "clean_ece_ts",
    "temperature",
    "mPC",
    "rPC",
    "relative_mCE",
    "corrupted_ece_mean",
    "corrupted_ece_pooled",
    *(f"mPC_s{s}" for s in _SEV),
    *(f"ece_s{s}" for s in _SEV),
    *(f"ece_pooled_s{s}" for s in _SEV),
)
#: Columns of the verdict table (``verdict.csv``).
VERDICT_COLUMNS: tuple[str, ...] = (
    "model",
    "method",
    "ratio",
    "reference",
    "metric",
    "estimate",
    "low",
    "high",
    "excludes_zero",
    "value",
    "reference_value",
    "n_seeds",
    "n_samples",
    "n_resamples",
    "confidence",
    "interval",
)


def _safe(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, or NaN when a summary is undefined (NaN cells, zero accuracy)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    except (ValueError, ZeroDivisionError, KeyError):
        return math.nan


def _jobs_rows(rows: Sequence[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
    by_job: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_job.setdefault(int(r["job"]), []).append(r)
    return by_job


class _Run:
    """Lazy access to a run folder's logits and labels."""

    def __init__(self, out: Path, jobs: Sequence[Job]) -> None:
        self.out = out
        self.jobs = {j.index: j for j in jobs}
        self.cells: list[tuple[str, int, int]] = [
            (str(c), int(s), int(n)) for c, s, n in json.loads((out / "cells.json").read_text())
        ]
        self.labels = np.load(out / "labels.npy", allow_pickle=False)
        self.n_clean = self.cells[0][2]
        self._cache: dict[int, np.ndarray] = {}

    def logits(self, job: int) -> np.ndarray:
        if job not in self._cache:
            self._cache[job] = np.load(self.out / "logits" / f"{self.jobs[job].slug}.npy", allow_pickle=False)
        return self._cache[job]

    def result(self, job: int, rows: Sequence[Mapping[str, Any]], n_bins: int) -> Any:
        from prunesafe.metrics import RobustnessResult

        logits = torch.from_numpy(self.logits(job))
        labels = torch.from_numpy(self.labels)
        res = RobustnessResult([{k: r[k] for k in _BASE} for r in rows], n_bins=n_bins)  # type: ignore[misc]
        start = 0
        for c, s, n in self.cells:
            res.logits[(c, s)] = logits[start : start + n]
            res.labels[(c, s)] = labels[start : start + n]
            start += n
        return res

    def corrupted_clusters(self) -> np.ndarray:
        """Test-image index of every corrupted row (row i of a severity block is test image i)."""
        return (
            np.concatenate([np.arange(n) for c, _, n in self.cells[1:]])
            if len(self.cells) > 1
            else np.zeros(0)
        )


def summarise(config: StudyConfig, rows: Sequence[Mapping[str, Any]], run: _Run) -> list[dict[str, Any]]:
    """One summary row per job (model x method x ratio x seed)."""
    from prunesafe.metrics import (
        expected_calibration_error,
        mean_corruption_error,
        mean_ece_by_severity,
        mean_performance_under_corruption,
        pooled_ece_by_severity,
        relative_performance_under_corruption,
    )

    by_job = _jobs_rows(rows)
    names = list(dict.fromkeys(c for c, _, _ in run.cells[1:]))
    ref_of: dict[tuple[str, int], int] = {}
    for j, rs in by_job.items():
        if rs[0]["method"] == "none":
            ref_of[(rs[0]["model"], int(rs[0]["seed"]))] = j
    out: list[dict[str, Any]] = []
    for j in sorted(by_job):
        rs = by_job[j]
        first = rs[0]
        clean = next(r for r in rs if r["corruption"] == "clean")
        table = [{k: r[k] for k in _BASE} for r in rs]
        s: dict[str, Any] = {k: first[k] for k in ("model", "method", "ratio", "seed", "finetune_epochs")}
        s.update(
            achieved_ratio=first["achieved_ratio"],
            params=first["params"],
            macs=first["macs"],
            clean_accuracy=clean["accuracy"],
            clean_ece=clean["ece"],
            clean_ece_equal_mass=clean["ece_equal_mass"],
            clean_nll=clean["nll"],
            clean_brier=clean["brier"],
            clean_ece_ts=clean["ece_ts"],
            temperature=first["temperature"],
        )
        if names:
            s["mPC"] = _safe(mean_performance_under_corruption, table, corruptions=names)
            s["rPC"] = _safe(relative_performance_under_corruption, table, corruptions=names)
            ref = ref_of.get((first["model"], int(first["seed"])))
            s["relative_mCE"] = math.nan
            if ref is not None:
                ref_table = [{k: r[k] for k in _BASE} for r in by_job[ref]]
                s["relative_mCE"] = _safe(
                    mean_corruption_error, table, ref_table, relative=True, corruptions=names
                )
            per_sev = _safe(mean_performance_under_corruption, table, per_severity=True, corruptions=names)
            ece_sev = _safe(mean_ece_by_severity, table, corruptions=names)
            res = run.result(j, rs, config.n_bins)
            pooled = _safe(pooled_ece_by_severity, res, n_bins=config.n_bins, corruptions=names)
            corrupted = [r for r in rs if r["corruption"] != "clean"]
            s["corrupted_ece_mean"] = float(np.mean([r["ece"] for r in corrupted]))
            lg = torch.from_numpy(run.logits(j)[run.n_clean :])
            lb = torch.from_numpy(run.labels[run.n_clean :])
            s["corrupted_ece_pooled"] = _safe(expected_calibration_error, lg, lb, n_bins=config.n_bins)
            for sev in _SEV:
                s[f"mPC_s{sev}"] = per_sev.get(sev, math.nan) if isinstance(per_sev, dict) else math.nan
                s[f"ece_s{sev}"] = ece_sev.get(sev, math.nan) if isinstance(ece_sev, dict) else math.nan
                s[f"ece_pooled_s{sev}"] = pooled.get(sev, math.nan) if isinstance(pooled, dict) else math.nan
        out.append({k: s.get(k, math.nan) for k in SUMMARY_COLUMNS})
    return out


def verdict(config: StudyConfig, rows: Sequence[Mapping[str, Any]], run: _Run) -> list[dict[str, Any]]:
    """The verdict: Δaccuracy, ΔECE and ΔmPC of every pruned cell vs the unpruned model and vs the control.

    For one (model, method, ratio) and one reference, the predictions of all seeds are stacked (the pruned
    model of seed s beside the reference of seed s), and :func:`~prunesafe.metrics.paired_bootstrap_ci`
    resamples whole test images (``clusters`` = test-image index, so the seeds and, for ΔmPC, all corruption
    cells of one image move together).  ``estimate`` = pruned − reference.
    """
    from prunesafe.metrics import accuracy, expected_calibration_error, paired_bootstrap_ci

    by_job = _jobs_rows(rows)
    index: dict[tuple[str, str, float, int], int] = {}
    for j, rs in by_job.items():
        r = rs[0]
        index[(r["model"], r["method"], float(r["ratio"]), int(r["seed"]))] = j
    labels_clean = run.labels[: run.n_clean]
    labels_c = run.labels[run.n_clean :]
    clusters_c = run.corrupted_clusters()
    refs = ["none", "control"] if config.control else ["none"]
    out: list[dict[str, Any]] = []
    for spec in config.models:
        for method in config.methods_of(spec):
            for ratio in config.ratios_of(spec):
                seeds = [s for s in config.seeds if (spec.label, method.label, ratio, s) in index]
                for ref in refs:
                    pairs = [
                        (index[(spec.label, ref, 0.0, s)], index[(spec.label, method.label, ratio, s)])
                        for s in seeds
                        if (spec.label, ref, 0.0, s) in index
                    ]
                    if not pairs:
                        continue
                    a = np.concatenate([run.logits(p[0]) for p in pairs])
                    b = np.concatenate([run.logits(p[1]) for p in pairs])
                    k = len(pairs)
                    n_all = len(run.labels)
                    a_clean = np.concatenate([a[i * n_all : i * n_all + run.n_clean] for i in range(k)])
                    b_clean = np.concatenate([b[i * n_all : i * n_all + run.n_clean] for i in range(k)])
                    a_c = np.concatenate([a[i * n_all + run.n_clean : (i + 1) * n_all] for i in range(k)])
                    b_c = np.concatenate([b[i * n_all + run.n_clean : (i + 1) * n_all] for i in range(k)])
                    tests: list[
                        tuple[
                            str,
                            Callable[..., float],
                            np.ndarray,
                            np.ndarray,
                            np.ndarray,
                            np.ndarray,
                            dict[str, Any],
                        ]
                    ] = [
                        (
                            "accuracy",
                            accuracy,
                            a_clean,
                            b_clean,
                            np.tile(labels_clean, k),
                            np.tile(np.arange(run.n_clean), k),
                            {},
                        ),
                        (
                            "ece",
                            expected_calibration_error,
                            a_clean,
                            b_clean,
                            np.tile(labels_clean, k),
                            np.tile(np.arange(run.n_clean), k),
                            {"n_bins": config.n_bins},
                        ),
                    ]
                    if len(labels_c):
                        tests.append(
                            ("mPC", accuracy, a_c, b_c, np.tile(labels_c, k), np.tile(clusters_c, k), {})
                        )
                    for metric, fn, la, lb, y, cl, kw in tests:
                        row: dict[str, Any] = {
                            "model": spec.label,
                            "method": method.label,
                            "ratio": ratio,
                            "reference": ref,
                            "metric": metric,
                            "n_seeds": k,
                            "n_samples": len(y),
                            "n_resamples": config.bootstrap_resamples,
                            "confidence": config.confidence,
                            "interval": "basic",
                        }
                        if not (np.isfinite(la).all() and np.isfinite(lb).all()):
                            row.update(estimate=math.nan, low=math.nan, high=math.nan, excludes_zero=False)
                        else:
                            res = paired_bootstrap_ci(
                                fn,
                                torch.from_numpy(la),
                                torch.from_numpy(lb),
                                torch.from_numpy(y),
                                clusters=torch.from_numpy(cl),
                                n_resamples=config.bootstrap_resamples,
                                confidence=config.confidence,
                                seed=0,
                                method="basic",
                                **kw,
                            )
                            row.update(
                                estimate=res.estimate,
                                low=res.low,
                                high=res.high,
                                excludes_zero=bool(res.excludes_zero),
                                value=res.estimate_b,
                                reference_value=res.estimate_a,
                            )
                        out.append({c: row.get(c, math.nan) for c in VERDICT_COLUMNS})
    return out


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {c: ("" if isinstance(r.get(c), float) and math.isnan(r[c]) else r.get(c)) for c in columns}
            )
    return path


def write_outputs(config: StudyConfig, out: Path, jobs: Sequence[Job]) -> StudyResult:
    """Write results.csv, summary.csv, verdict.csv, the figures and report.md from the run folder."""
    from prunesafe.study.figures import write_figures
    from prunesafe.study.report import write_report

    rows = read_rows(out / "results.jsonl")
    rows.sort(key=lambda r: int(r["job"]))  # the file is in job order already; keep it explicit
    run = _Run(out, jobs)
    files = {"results.jsonl": out / "results.jsonl"}
    files["results.csv"] = _write_csv(out / "results.csv", rows, COLUMNS)
    summary = summarise(config, rows, run)
    files["summary.csv"] = _write_csv(out / "summary.csv", summary, SUMMARY_COLUMNS)
    table = verdict(config, rows, run)
    files["verdict.csv"] = _write_csv(out / "verdict.csv", table, VERDICT_COLUMNS)
    if config.figures:
        files.update(write_figures(config, out, summary, rows, run))
    files["report.md"] = write_report(config, out, summary, table, rows)
    return StudyResult(records=list(rows), summary=summary, verdict=table, out=out, files=files)
