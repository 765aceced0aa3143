"""prunesafe quickstart: is a pruned ResNet-20 still calibrated and robust?

The project's main job in miniature (the study runner will grow out of it):

1. load the public CIFAR-10 ResNet-20 checkpoint (``../shared/models/resnet20-jpeg.th``),
2. prune it three ways (unstructured weights, L1 filters, network-slimming channels) at one ratio and
   fine-tune each pruned model briefly with the study's fine-tuning recipe (SGD, lr 1e-3, batch 64;
   one epoch on the 10k training subset by default instead of the study's 40),
3. evaluate every model on clean CIFAR-10 test images and on all 19 CIFAR-10-C corruptions
   (accuracy, ECE, NLL per cell), then summarise mPC, rPC and relative mCE against the unpruned model
   over the 15 benchmark corruptions,
4. write the tidy table to ``results/quickstart.csv`` / ``.json`` and a reliability diagram PNG
   when matplotlib is installed.

Without ``../shared`` it runs on synthetic data with a randomly initialised model, so the commands in
the README work anywhere (the numbers are then meaningless, which the script says).

Run ``python examples/quickstart.py --help`` for options.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from prunesafe import (
    evaluate_corruptions,
    expected_calibration_error,
    mean_corruption_error,
    mean_performance_under_corruption,
    prune_model,
    pruning_report,
    relative_performance_under_corruption,
    reliability_diagram,
)
from prunesafe.data import CIFAR10C, load_cifar10_arrays
from prunesafe.metrics import RobustnessResult
from prunesafe.models import cifar_resnet, fit, load_weights

HERE = Path(__file__).resolve().parent
DEFAULT_SHARED = HERE.parent.parent / "shared"


def _synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared/ data folder")
    parser.add_argument("--ratio", type=float, default=0.3, help="pruning ratio for all three methods")
    parser.add_argument(
        "--finetune-epochs", type=int, default=1, help="fine-tuning epochs after pruning (0: none)"
    )
    parser.add_argument("--n-clean", type=int, default=2000, help="clean test images to evaluate")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    checkpoint = args.shared / "models" / "resnet20-jpeg.th"
    cifar_dir = args.shared / "data" / "cifar10"
    c_dir = args.shared / "data" / "CIFAR-10-C-sample"
    real = checkpoint.exists() and cifar_dir.exists() and c_dir.exists()

    model = cifar_resnet(20)
    if real:
        load_weights(model, checkpoint)
        images, labels = load_cifar10_arrays(cifar_dir)
        clean = (images[: args.n_clean], labels[: args.n_clean])
        train = load_cifar10_arrays(cifar_dir, "train")
        corrupted: object = CIFAR10C(c_dir, "all", "all")
    else:
        print(
            f"NOTE: {args.shared} not found -- synthetic data and an untrained model; "
            "the numbers are meaningless."
        )
        clean = _synthetic(256)
        train = _synthetic(256, seed=1)
        corrupted = None
    model.eval()

    example = torch.rand(1, 3, 32, 32)
    models = {"unpruned": model}
    for method in ("unstructured", "filter", "channel"):
        start = time.perf_counter()
        pruned = prune_model(model, method, args.ratio, example_inputs=example)
        print(f"pruned {method:<12} in {time.perf_counter() - start:.2f} s")
        rep = pruning_report(model, pruned, example)
        print(
            f"  achieved {rep.ratio_achieved:.3f} of {rep.unit}; "
            f"parameters {rep.params_before} -> {rep.params_after}"
            f" (nonzero {rep.nonzero_params_after}); MACs {rep.macs_before} -> {rep.macs_after}"
        )
        if args.finetune_epochs > 0:  # unstructured masks stay in place while fine-tuning
            fit(pruned, train, recipe="finetune", epochs=args.finetune_epochs, progress=not args.no_progress)
        models[f"{method}-{args.ratio}"] = pruned.eval()

    results: dict[str, RobustnessResult] = {}
    for name, m in models.items():
        results[name] = evaluate_corruptions(
            m,
            corrupted,
            clean=clean,
            model_name=name,
            progress=not args.no_progress,
            corruptions="all" if real else None,
        )

    args.out.mkdir(parents=True, exist_ok=True)
    table = RobustnessResult([r for res in results.values() for r in res.records])
    table.to_csv(args.out / "quickstart.csv")
    summary = {}
    print(f"\n{'model':<20} {'clean acc':>9} {'clean ECE':>9} {'mPC':>7} {'rPC':>7} {'rel. mCE':>9}")
    for name, res in results.items():
        row = res.cell("clean", 0)
        entry = {"clean_accuracy": row["accuracy"], "clean_ece": row["ece"]}
        if corrupted is not None:
            # summaries over the 15 benchmark corruptions, comparable with the literature
            entry["mPC"] = mean_performance_under_corruption(res, corruptions="benchmark")
            entry["rPC"] = relative_performance_under_corruption(res, corruptions="benchmark")
            entry["relative_mCE"] = mean_corruption_error(
                res, results["unpruned"], relative=True, corruptions="benchmark"
            )
        summary[name] = entry
        print(
            f"{name:<20} {entry['clean_accuracy']:>9.4f} {entry['clean_ece']:>9.4f} "
            + " ".join(
                f"{entry.get(k, float('nan')):>{w}.4f}"
                for k, w in (("mPC", 7), ("rPC", 7), ("relative_mCE", 9))
            )
        )
    (args.out / "quickstart_summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")

    logits = results["unpruned"].logits[("clean", 0)]
    targets = results["unpruned"].labels[("clean", 0)]
    print(
        f"\nunpruned clean ECE (15 equal-width bins, L1): {expected_calibration_error(logits, targets):.4f}"
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        from prunesafe.plotting import plot_reliability_diagram

        fig = plot_reliability_diagram(reliability_diagram(logits, targets))
        fig.savefig(args.out / "reliability_unpruned.png", dpi=120)
        print(f"reliability diagram -> {args.out / 'reliability_unpruned.png'}")
    except ImportError:
        print('matplotlib not installed: pip install "prunesafe[plot]" for the reliability diagram')
    print(f"table -> {args.out / 'quickstart.csv'}")


if __name__ == "__main__":
    main()
