"""Benchmark: the study's evaluation phase vs ``evaluate_corruptions`` alone on the same models (issue 8).

Target: the evaluation phase of ``prunesafe study`` (``prunesafe.study.runner.evaluate_model``: one
``evaluate_corruptions`` pass plus equal-mass ECE, Brier and the temperature-scaled metrics computed from the
logits it keeps) costs <= 1.10x ``evaluate_corruptions`` alone (accuracy, ECE, NLL per cell) on the same
models and data.  Both sides run the same models -- the unpruned ResNet-20 checkpoint and an
unstructured-pruned copy -- on the same clean images and CIFAR-10-C sample cells, alternating, and the
median over repeats is reported.  The temperature fit on the held-out training images is an extra forward
pass over ``n_holdout`` images; it is timed and reported separately (it is not part of evaluating the test
cells, and ``temperature_scaling = false`` skips it).

Usage::

    python benchmarks/bench_study.py                   # 15 benchmark corruptions x 5 severities x 200 images
    python benchmarks/bench_study.py --n-corrupted 40 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PRUNESAFE_SHARED", REPO.parent / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--n-corrupted", type=int, default=None, help="images per cell (default: all 200)")
    parser.add_argument("--n-holdout", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from prunesafe.metrics import evaluate_corruptions
    from prunesafe.models import cifar_resnet, load_weights
    from prunesafe.pruning import prune_model
    from prunesafe.study import StudyConfig, load_data
    from prunesafe.study.runner import _temperature, evaluate_model

    cfg = StudyConfig.from_dict({
        "models": [{"name": "resnet20", "checkpoint": str(SHARED / "models/resnet20-jpeg.th")}],
        "data_dir": str(SHARED / "data"), "n_test": args.n_test, "n_corrupted": args.n_corrupted,
        "n_holdout": args.n_holdout, "n_bins": 10, "progress": False, "out": tempfile.mkdtemp(),
        "finetune_epochs": 0,
    })  # fmt: skip
    cfg.validate()
    data = load_data(cfg)
    base = load_weights(cifar_resnet(20), SHARED / "models/resnet20-jpeg.th").eval()
    models = {"unpruned": base, "unstructured-0.5": prune_model(base, "unstructured", 0.5).eval()}
    n_images = len(data.clean[1]) + sum(len(c.labels) for c in data.corrupted.cells)

    def alone() -> float:
        start = time.perf_counter()
        for name, m in models.items():
            evaluate_corruptions(m, data.corrupted, clean=data.clean, n_bins=cfg.n_bins, progress=False,
                                 model_name=name, batch_size=cfg.batch_size)  # fmt: skip
        return time.perf_counter() - start

    temps = {name: _temperature(m, data, cfg, torch.device("cpu")) for name, m in models.items()}

    def study() -> float:
        start = time.perf_counter()
        for name, m in models.items():
            evaluate_model(m, data, cfg, name=name, temperature=temps[name])
        return time.perf_counter() - start

    def holdout() -> float:
        start = time.perf_counter()
        for m in models.values():
            _temperature(m, data, cfg, torch.device("cpu"))
        return time.perf_counter() - start

    alone(), study()  # warm-up
    t_alone, t_study, t_hold = [], [], []
    for _ in range(args.repeats):
        t_alone.append(alone())
        t_study.append(study())
        t_hold.append(holdout())
    a, s, h = (statistics.median(t) for t in (t_alone, t_study, t_hold))
    load = os.getloadavg()[0]
    print(f"{len(models)} models x {n_images} images ({len(data.corrupted.cells)} cells + clean), "
          f"threads {torch.get_num_threads()}, load average {load:.2f}")  # fmt: skip
    print(f"evaluate_corruptions alone : {a:.2f} s")
    print(f"study evaluation phase     : {s:.2f} s   ratio {s / a:.3f}x (target <= 1.10x)")
    print(
        f"temperature fit (holdout)  : {h:.2f} s   ({args.n_holdout} images per model; with it {(s + h) / a:.3f}x)"
    )
    print()
    print("| benchmark | prunesafe study | reference | ratio / target |")
    print("|---|---|---|---|")
    print(f"| evaluation phase, ResNet-20 + 50 % unstructured copy, {n_images} images each "
          f"({len(data.corrupted.cells)} CIFAR-10-C sample cells + {len(data.clean[1])} clean) | {s:.2f} s | "
          f"`evaluate_corruptions` alone: {a:.2f} s | **{s / a:.2f}×** (target ≤ 1.10×) |")  # fmt: skip


if __name__ == "__main__":
    main()
