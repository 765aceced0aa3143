"""Does filter pruning make CIFAR VGG-16 faster in proportion to the MACs it removes?

Measures CPU latency (batch 64, 3x32x32, eval mode, ``torch.inference_mode``, warm-up, median
of ``--repeats`` runs, the models timed alternately so that machine load affects them alike)
of

* the unpruned CIFAR VGG-16,
* prunesafe's ``prune_model(model, "filter", 0.5, example_inputs=x)``,
* Torch-Pruning's ``MagnitudePruner(p=1, pruning_ratio=0.5)`` result, for reference,

counts MACs per sample with forward hooks on Conv/Linear layers, and prints the speed-up,
the MAC reduction factor and their ratio (target >= 0.8: the pruned model realises at least
80 % of the theoretical speed-up).

Usage::

    python benchmarks/bench_latency.py [--repeats 15] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from typing import Any

import torch
from torch import nn

from prunesafe.models import cifar_vgg

try:
    from prunesafe.pruning import prune_model

    def prunesafe_prune(model: nn.Module, x: torch.Tensor) -> nn.Module:
        return prune_model(model, "filter", 0.5, example_inputs=x)

except ImportError:  # prune_model not available yet: same work, written out
    from prunesafe.pruning.structured import FilterPruner

    def prunesafe_prune(model: nn.Module, x: torch.Tensor) -> nn.Module:
        return FilterPruner(0.5).prune(copy.deepcopy(model), example_inputs=x)


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates per sample of every Conv2d / Linear layer (forward hooks)."""
    total = 0

    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
        nonlocal total
        weight = module.weight
        if isinstance(module, nn.Linear):
            positions = output.numel() // module.out_features
        else:
            positions = output.numel() // output.shape[1]
        total += positions * weight.numel()

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total // x.shape[0]


def latencies(
    models: dict[str, nn.Module], x: torch.Tensor, repeats: int, warmup: int = 3
) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(warmup):
            for model in models.values():
                model(x)
        for _ in range(repeats):
            for name, model in models.items():  # alternate: load changes hit every model alike
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the timing")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = cifar_vgg(16).eval()
    example = torch.rand(1, 3, 32, 32)
    x = torch.rand(args.batch, 3, 32, 32)
    models: dict[str, nn.Module] = {
        "unpruned": model,
        "prunesafe filter 0.5": prunesafe_prune(model, example).eval(),
    }
    try:
        import torch_pruning as tp

        tp_model = copy.deepcopy(model)
        tp.pruner.MagnitudePruner(
            tp_model,
            example,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=0.5,
            ignored_layers=[tp_model.classifier],
        ).step()
        models["Torch-Pruning 0.5"] = tp_model.eval()
    except ImportError:
        print("torch-pruning not installed: reference row skipped")

    macs = {name: count_macs(m, x) for name, m in models.items()}
    lat = latencies(models, x, args.repeats)
    print(
        f"CIFAR VGG-16, CPU, batch {args.batch}, 32x32, {torch.get_num_threads()} threads, median of {args.repeats}\n"
    )
    print(
        "| model | MACs / sample (M) | latency (ms) | speed-up | MAC reduction | speed-up / MAC reduction |"
    )
    print("|---|---|---|---|---|---|")
    base_lat, base_macs = lat["unpruned"], macs["unpruned"]
    for name in models:
        speedup = base_lat / lat[name]
        reduction = base_macs / macs[name]
        print(
            f"| {name} | {macs[name] / 1e6:.1f} | {lat[name] * 1e3:.1f} | {speedup:.2f}x | {reduction:.2f}x | "
            f"{speedup / reduction:.2f} |"
        )


if __name__ == "__main__":
    main()
