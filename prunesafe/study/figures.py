"""The study's PNG figures (matplotlib, optional): the paper's Figures 1-3 and reliability diagrams.

* ``fig1_ece_accuracy_<model>.png`` -- clean ECE (left axis, solid) and accuracy (right axis, dashed) vs
  pruning ratio, one colour per method, the unpruned model and the control as horizontal lines;
* ``fig2_mpc_severity_<model>.png`` -- mPC per severity vs ratio, one panel per method;
* ``fig3_ece_severity_<model>.png`` -- ECE per severity (mean over corruptions) vs ratio, a panel per method;
* ``reliability_<job>.png`` -- reliability diagrams (clean test data) of the cells named in ``reliability``.

Values are means over seeds; error bars are the standard deviation over seeds when there are several.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prunesafe.study.config import StudyConfig

__all__ = ["write_figures"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _stats(
    summary: Sequence[Mapping[str, Any]], model: str, method: str, key: str
) -> tuple[list[float], list[float], list[float]]:
    ratios = sorted({float(s["ratio"]) for s in summary if s["model"] == model and s["method"] == method})
    means, stds = [], []
    for r in ratios:
        vals = [
            float(s[key])
            for s in summary
            if s["model"] == model and s["method"] == method and float(s["ratio"]) == r
        ]
        means.append(float(np.mean(vals)) if vals else math.nan)
        stds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
    return ratios, means, stds


def _ref(summary: Sequence[Mapping[str, Any]], model: str, method: str, key: str) -> float:
    vals = [float(s[key]) for s in summary if s["model"] == model and s["method"] == method]
    return float(np.mean(vals)) if vals else math.nan


def write_figures(
    config: StudyConfig,
    out: Path,
    summary: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    run: Any,
) -> dict[str, Path]:
    """Draw every figure into ``out/figures``; returns name -> path (empty without matplotlib)."""
    try:
        plt = _pyplot()
    except ImportError:
        import warnings

        warnings.warn('matplotlib is not installed: no figures (pip install "prunesafe[plot]")', stacklevel=2)
        return {}
    folder = out / "figures"
    folder.mkdir(exist_ok=True)
    files: dict[str, Path] = {}
    sev = [s for s in (1, 2, 3, 4, 5) if s in config.severities]
    has_c = len(run.cells) > 1
    for spec in config.models:
        model = spec.label
        methods = [m.label for m in config.methods_of(spec)]
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        # Figure 1: ECE and accuracy vs ratio, two y axes
        fig, ax = plt.subplots(figsize=(7.5, 5.5), layout="constrained")
        ax2 = ax.twinx()
        for i, method in enumerate(methods):
            c = colours[i % len(colours)]
            x, ece, ece_sd = _stats(summary, model, method, "clean_ece")
            _, acc, acc_sd = _stats(summary, model, method, "clean_accuracy")
            ax.errorbar(x, ece, yerr=ece_sd, color=c, marker="o", label=f"{method} ECE")
            ax2.errorbar(x, acc, yerr=acc_sd, color=c, marker="s", linestyle="--", label=f"{method} accuracy")
        for ref, style in (("none", ":"), ("control", "-.")):
            e = _ref(summary, model, ref, "clean_ece")
            if not math.isnan(e):
                ax.axhline(
                    e,
                    color="grey",
                    linestyle=style,
                    label=f"{'unpruned' if ref == 'none' else 'control'} ECE",
                )
                acc_ref = _ref(summary, model, ref, "clean_accuracy")
                ax2.axhline(acc_ref, color="black", linestyle=style, alpha=0.5,
                            label=f"{'unpruned' if ref == 'none' else 'control'} accuracy")  # fmt: skip
        ax.set_xlabel("pruning ratio (fraction of the method's unit removed)")
        ax.set_ylabel(f"ECE ({config.n_bins} equal-width bins)")
        ax2.set_ylabel("accuracy")
        ax.set_title(f"{model}: clean ECE (solid) and accuracy (dashed) vs pruning ratio")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        fig.legend(h1 + h2, l1 + l2, fontsize=7, loc="outside lower center", ncol=4)
        files[f"fig1_{model}"] = _save(fig, folder / f"fig1_ece_accuracy_{model}.png", plt)
        if has_c:
            for tag, key, ylabel in (
                ("fig2", "mPC_s", "mPC (accuracy averaged over corruptions)"),
                ("fig3", "ece_s", "ECE averaged over corruptions"),
            ):
                fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.8), squeeze=False,
                                         sharey=True, constrained_layout=True)  # fmt: skip
                cmap = plt.get_cmap("viridis")
                for ax, method in zip(axes[0], methods, strict=True):
                    for k, level in enumerate(sev):
                        x, m, sd = _stats(summary, model, method, f"{key}{level}")
                        col = cmap(k / max(1, len(sev) - 1))
                        ax.errorbar(x, m, yerr=sd, marker="o", color=col, label=f"severity {level}")
                        ref_value = _ref(summary, model, "none", f"{key}{level}")
                        ax.axhline(ref_value, color=col, linestyle=":", alpha=0.6)
                    ax.set_title(method)
                    ax.set_xlabel("pruning ratio")
                axes[0][0].set_ylabel(ylabel)
                axes[0][-1].legend(fontsize=7, title="dotted: unpruned", title_fontsize=7)
                fig.suptitle(f"{model}: {ylabel} per severity vs pruning ratio")
                name = "mpc_severity" if tag == "fig2" else "ece_severity"
                files[f"{tag}_{model}"] = _save(fig, folder / f"{tag}_{name}_{model}.png", plt)
    files.update(_reliability(config, folder, rows, run, plt))
    return files


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _reliability_jobs(config: StudyConfig, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    firsts: dict[int, Mapping[str, Any]] = {}
    for r in rows:
        firsts.setdefault(int(r["job"]), r)
    chosen: list[int] = []
    for item in config.reliability:
        if item == "auto":  # unpruned, control and every method at its largest ratio, first seed
            seed = config.seeds[0]
            for spec in config.models:
                wanted = [("none", 0.0), ("control", 0.0)]
                wanted += [(m.label, max(config.ratios_of(spec))) for m in config.methods_of(spec)]
                for method, ratio in wanted:
                    chosen += [
                        j for j, r in firsts.items()
                        if r["model"] == spec.label and r["method"] == method and float(r["ratio"]) == ratio
                        and int(r["seed"]) == seed
                    ]  # fmt: skip
        else:  # "method:ratio" (first model, first seed) or "model:method:ratio:seed"
            parts = item.split(":")
            model, seed = config.models[0].label, config.seeds[0]
            if len(parts) == 4:
                model, method, ratio, seed = parts[0], parts[1], float(parts[2]), int(parts[3])
            elif len(parts) == 2:
                method, ratio = parts[0], float(parts[1])
            else:
                raise ValueError(
                    f"reliability: {item!r} must be 'auto', 'method:ratio' or 'model:method:ratio:seed'"
                )
            chosen += [
                j for j, r in firsts.items()
                if r["model"] == model and r["method"] == method and float(r["ratio"]) == ratio
                and int(r["seed"]) == seed
            ]  # fmt: skip
    return list(dict.fromkeys(chosen))


def _reliability(
    config: StudyConfig, folder: Path, rows: Sequence[Mapping[str, Any]], run: Any, plt: Any
) -> dict[str, Path]:
    import torch

    from prunesafe.metrics import reliability_diagram
    from prunesafe.plotting import plot_reliability_diagram

    files: dict[str, Path] = {}
    for j in _reliability_jobs(config, rows):
        job = run.jobs[j]
        logits = run.logits(j)[: run.n_clean]
        if not np.isfinite(logits).all():
            continue
        diagram = reliability_diagram(
            torch.from_numpy(logits), torch.from_numpy(run.labels[: run.n_clean]), n_bins=config.n_bins
        )
        title = f"{job.model} {job.method} ratio {job.ratio:g} seed {job.seed} (clean, ECE {diagram.ece:.4f})"
        fig = plot_reliability_diagram(diagram, title=title)
        files[f"reliability_{job.slug}"] = _save(fig, folder / f"reliability_{job.slug}.png", plt)
    return files
