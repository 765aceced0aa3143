"""``report.md``: the result tables (mean ± std over seeds) and the verdict table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from prunesafe.study.config import StudyConfig

__all__ = ["mean_std", "write_report"]


def mean_std(values: Sequence[float], digits: int = 4) -> str:
    """``"mean ± std"`` over seeds (sample std, ddof=1); a single value is shown alone.

    Examples
    --------
    >>> mean_std([0.1, 0.3])
    '0.2000 ± 0.1414'
    >>> mean_std([0.5])
    '0.5000'
    """
    vals = [float(v) for v in values]
    if not vals:
        return "–"
    if any(math.isnan(v) for v in vals):
        return "nan"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals, ddof=1):.{digits}f}"


def _group(
    summary: Sequence[Mapping[str, Any]], model: str
) -> list[tuple[str, float, list[Mapping[str, Any]]]]:
    keys: list[tuple[str, float]] = []
    for s in summary:
        if s["model"] == model and (s["method"], float(s["ratio"])) not in keys:
            keys.append((s["method"], float(s["ratio"])))
    return [
        (m, r, [s for s in summary if s["model"] == model and s["method"] == m and float(s["ratio"]) == r])
        for m, r in keys
    ]


def _ci(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "–"
    est = float(row["estimate"])
    if math.isnan(est):
        return "nan"
    mark = " **✱**" if row["excludes_zero"] in (True, "True") else ""
    return f"{est:+.4f} [{float(row['low']):+.4f}, {float(row['high']):+.4f}]{mark}"


def write_report(
    config: StudyConfig,
    out: Path,
    summary: Sequence[Mapping[str, Any]],
    verdict: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
) -> Path:
    """Write ``out/report.md`` and return its path."""
    from prunesafe import __version__

    first = rows[0] if rows else {}
    n_clean = next((r["n"] for r in rows if r["corruption"] == "clean"), 0)
    cells = sorted({(r["corruption"], r["severity"]) for r in rows if r["corruption"] != "clean"})
    n_cell = next((r["n"] for r in rows if r["corruption"] != "clean"), 0)
    lines = [
        "# prunesafe study report",
        "",
        f"- written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by prunesafe {__version__}; "
        f"config hash `{config.config_hash()}` (config.json)",
        f"- data: {config.dataset}, {n_clean} clean test images; {len(cells)} corruption cells "
        f"({len({c for c, _ in cells})} corruptions × severities {sorted({s for _, s in cells})}, {n_cell} "
        "images "
        f"each) from `{first.get('corruptions_from', '?')}`",
        f"- seeds {list(config.seeds)}; fine-tuning {config.finetune_epochs} epochs, lr "
        f"{config.finetune_lr}, "
        f"batch {config.finetune_batch_size} (FINETUNE recipe: SGD momentum 0.9, weight decay 1e-4, "
        "crop+flip)" + (f" on {config.n_train} training images" if config.n_train else ""),
        f"- ECE: top-label, {config.n_bins} bins, L1; `ECE` equal-width (right-closed), `ECE (mass)` "
        "equal-mass",
        "- temperature scaling: "
        + (
            f"fitted per model on the last {config.n_holdout} training images (held out of fine-tuning)"
            if config.temperature_scaling
            else "off"
        ),
        "- mPC / rPC / relative mCE over the study's corruptions; relative mCE against the unpruned model "
        "of the same seed",
    ]
    if config.notes:
        lines += ["", "## Notes on this configuration", ""] + [f"- {n}" for n in config.notes]
    for spec in config.models:
        model = spec.label
        lines += [
            "",
            f"## {model}: results (mean ± std over {len(config.seeds)} seed(s))",
            "",
            "| method | ratio | achieved | params | clean acc | ECE | ECE (mass) | NLL | ECE (TS) | mPC "
            "| rPC | rel. mCE |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method, ratio, group in _group(summary, model):

            def col(key: str, g: Sequence[Mapping[str, Any]] = group) -> str:
                return mean_std([float(s[key]) for s in g])

            lines.append(
                f"| {method} | {ratio:g} | {col('achieved_ratio')} | "
                f"{int(np.mean([s['params'] for s in group])):,} | "
                f"{col('clean_accuracy')} | {col('clean_ece')} | {col('clean_ece_equal_mass')} | "
                f"{col('clean_nll')} | "
                f"{col('clean_ece_ts')} | {col('mPC')} | {col('rPC')} | {col('relative_mCE')} |"
            )
        sev = [s for s in (1, 2, 3, 4, 5) if s in config.severities]
        if cells:
            lines += [
                "",
                f"### {model}: under corruption per severity (mean over seeds)",
                "",
                "mPC_s = accuracy averaged over corruptions; ECE_s = per-cell ECE averaged over corruptions; "
                "pooled ECE_s = ECE of all corruptions' predictions of severity s pooled.",
                "",
                "| method | ratio | "
                + " | ".join(f"mPC s{s}" for s in sev)
                + " | "
                + " | ".join(f"ECE s{s}" for s in sev)
                + " | "
                + " | ".join(f"pooled ECE s{s}" for s in sev)
                + " |",
                "|---|---|" + "---|" * (3 * len(sev)),
            ]
            for method, ratio, group in _group(summary, model):
                vals = [
                    f"{np.mean([float(s[f'{k}{v}']) for s in group]):.4f}"
                    for k in ("mPC_s", "ece_s", "ece_pooled_s")
                    for v in sev
                ]
                lines.append(f"| {method} | {ratio:g} | " + " | ".join(vals) + " |")
        lines += _verdict_section(config, model, verdict)
    lines += [
        "",
        "## Files",
        "",
        "`results.jsonl` / `results.csv` (one row per model × method × ratio × seed × cell), `summary.csv` "
        "(one row "
        "per model × method × ratio × seed), `verdict.csv`, `checkpoints/` (save_pruned), `logits/`, "
        "`figures/`.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _verdict_section(config: StudyConfig, model: str, verdict: Sequence[Mapping[str, Any]]) -> list[str]:
    refs = ["none", "control"] if config.control else ["none"]
    metrics = ["accuracy", "ece", "mPC"]
    head = {"accuracy": "Δacc", "ece": "ΔECE", "mPC": "ΔmPC"}
    name = {"none": "unpruned", "control": "control"}
    lines = [
        "",
        f"### {model}: verdict (pruned − reference, {int(config.confidence * 100)} % paired bootstrap "
        "interval)",
        "",
        f"Seeds pooled; {config.bootstrap_resamples} resamples of whole test images (basic interval); "
        "**✱** = the interval excludes 0. ΔECE > 0 means pruning made calibration worse; Δacc, ΔmPC < 0 "
        "mean it "
        "lost accuracy. The control is the unpruned model fine-tuned with the same recipe and seeds.",
        "",
        "| method | ratio | " + " | ".join(f"{head[m]} vs {name[r]}" for r in refs for m in metrics) + " |",
        "|---|---|" + "---|" * (len(refs) * len(metrics)),
    ]
    keys: list[tuple[str, float]] = []
    for v in verdict:
        if v["model"] == model and (v["method"], float(v["ratio"])) not in keys:
            keys.append((v["method"], float(v["ratio"])))
    for method, ratio in keys:
        cells = []
        for r in refs:
            for m in metrics:
                hit = next(
                    (
                        v
                        for v in verdict
                        if v["model"] == model and v["method"] == method and float(v["ratio"]) == ratio
                        and v["reference"] == r and v["metric"] == m
                    ),
                    None,
                )  # fmt: skip
                cells.append(_ci(hit))
        lines.append(f"| {method} | {ratio:g} | " + " | ".join(cells) + " |")
    return lines
