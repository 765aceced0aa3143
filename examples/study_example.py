"""A small pruning-safety study from Python, commented step by step.

``prunesafe study --preset quick ...`` runs the same thing from the command line; this script shows the
pieces a study is made of and how to read its results.  It runs in a few minutes on a laptop CPU from
``../shared`` (the shared ResNet-20 checkpoint and CIFAR-10 / CIFAR-10-C sample):

    python examples/study_example.py --out results-example
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prunesafe.study import StudyConfig, preset, run_study

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results-example", help="run folder (resumed if it exists)")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared/ data folder")
    args = parser.parse_args()

    # 1. Start from the quick preset (a plain dict) and change what you need.  Every key is listed in
    #    docs/study.md; StudyConfig validates them all before any work starts.
    data = preset("quick")
    data.update(
        models=[{"name": "resnet20", "checkpoint": str(args.shared / "models" / "resnet20-jpeg.th")}],
        data_dir=str(args.shared / "data"),  # holds cifar10/ and CIFAR-10-C-sample/
        methods=["unstructured", "filter"],  # any registered pruner; {name, options, label} for variants
        ratios=[0.0, 0.5],  # fraction of the method's unit removed
        seeds=[0],  # fine-tuning order + augmentation (and random pruners)
        finetune_epochs=1,  # the study uses 40; 0 = no fine-tuning
        corruptions=["gaussian_noise", "fog", "contrast"],  # or "benchmark" for the 15 of CIFAR-10-C
        out=args.out,
    )
    config = StudyConfig.from_dict(data)

    # 2. Run it.  The control (the unpruned model fine-tuned with the same recipe and seed) is on by
    #    default; every pruned cell is compared with it and with the unpruned model.  Killing the run and
    #    starting it again resumes from the last finished job.
    result = run_study(config)

    # 3. Read the results: tidy rows (one per model x method x ratio x seed x cell) ...
    frame = result.to_pandas()
    clean = frame[frame.corruption == "clean"]
    print(clean[["method", "ratio", "accuracy", "ece", "ece_equal_mass", "ece_ts", "params"]].to_string())

    # ... the summary (one row per model x method x ratio x seed: mPC, rPC, relative mCE, per severity) ...
    for row in result.summary:
        print(f"{row['method']:>12} {row['ratio']:.1f}: mPC {row['mPC']:.4f}  rPC {row['rPC']:.4f}")

    # ... and the verdict: pruned - reference with a 95 % paired bootstrap interval (seeds pooled).
    for v in result.verdict:
        if v["metric"] == "ece":
            mark = "*" if v["excludes_zero"] else " "
            print(f"dECE {v['method']} {v['ratio']} vs {v['reference']:<7}: "
                  f"{v['estimate']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}] {mark}")  # fmt: skip

    print(f"report -> {result.files['report.md']}; figures in {result.out / 'figures'}")


if __name__ == "__main__":
    main()
