"""The study on engine corruptions vs on the released-format files: the same config, two corruption sources.

Runs ``run_study`` twice on ../shared (ResNet-20 jpeg checkpoint, unpruned + unstructured 50 % without
fine-tuning, the 200 test images the CIFAR-10-C sample was made from, the 15 benchmark corruptions x 5
severities): once with ``corruptions_from = "files"`` (../shared/data/CIFAR-10-C-sample, made by the reference
code) and once with ``"engine"``, and prints per corruption the difference engine - files of accuracy and ECE
(averaged over severities) and of mPC.  The figures are in docs/study.md ("On a fresh machine").

Usage: ``python benchmarks/study_engine_vs_files.py [--shared ../shared] [--n 200] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from prunesafe.study import run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--n", type=int, default=200, help="corrupted images per cell (<= 200)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="engine-vs-files-"))
    base = {
        "models": [{"name": "resnet20", "checkpoint": str(args.shared / "models" / "resnet20-jpeg.th")}],
        "methods": ["unstructured"],
        "ratios": [0.5],
        "seeds": [0],
        "finetune_epochs": 0,
        "control": False,
        "temperature_scaling": False,
        "figures": False,
        "n_test": args.n,
        "n_corrupted": args.n,
        "corruptions": ["benchmark"],
        "severities": [1, 2, 3, 4, 5],
        "data_dir": str(args.shared / "data"),
        "corruptions_dir": str(args.shared / "data" / "CIFAR-10-C-sample"),
        "progress": False,
        "bootstrap_resamples": 100,
    }
    frames = {}
    for source in ("files", "engine"):
        start = time.perf_counter()
        result = run_study({**base, "corruptions_from": source, "out": str(out / source)})
        frames[source] = result.to_pandas()
        print(f"{source}: {time.perf_counter() - start:.1f} s")
    key = ["method", "corruption", "severity"]
    m = frames["files"].merge(frames["engine"], on=key, suffixes=("_files", "_engine"))
    m = m[m["corruption"] != "clean"]
    per = m.groupby(["method", "corruption"])[
        ["accuracy_files", "accuracy_engine", "ece_files", "ece_engine"]
    ].mean()
    per["d_acc"] = per["accuracy_engine"] - per["accuracy_files"]
    per["d_ece"] = per["ece_engine"] - per["ece_files"]
    print((per * 100).round(1).to_string())
    for method, g in per.groupby(level=0):
        print(
            f"{method}: mPC files {g['accuracy_files'].mean():.4f} engine {g['accuracy_engine'].mean():.4f} "
            f"(diff {100 * (g['accuracy_engine'].mean() - g['accuracy_files'].mean()):+.2f} points); "
            f"max |d acc| {100 * g['d_acc'].abs().max():.1f} points ({g['d_acc'].abs().idxmax()[1]}); "
            f"mean ECE files {g['ece_files'].mean():.4f} engine {g['ece_engine'].mean():.4f}; "
            f"max |d ECE| {100 * g['d_ece'].abs().max():.1f} points"
        )
    print(f"runs in {out}")


if __name__ == "__main__":
    main()
