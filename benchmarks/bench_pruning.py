"""Speed of L1 filter pruning at ratio 0.5: prunesafe vs Torch-Pruning, in the same run.

For each model (CIFAR VGG-16, CIFAR ResNet-56 with option-A shortcuts, torchvision ResNet-50)
the script times

* prunesafe: ``prune_model(model, "filter", 0.5, example_inputs=x, verify=False)`` -- this
  includes the deep copy ``prune_model`` makes of the model (``inplace=False``), so the timer
  covers copy + trace + prune; ``verify=False`` because Torch-Pruning checks nothing.  A second
  column times the default ``verify=None`` (on for these models: one more deep copy and two
  forwards comparing the pruned model with the masked original);
* Torch-Pruning: ``tp.pruner.MagnitudePruner(model, x, importance=MagnitudeImportance(p=1),
  pruning_ratio=0.5, ignored_layers=[final linear])`` construction + ``step()``.  Each repeat
  prunes a fresh deep copy made *outside* the timer (Torch-Pruning modifies the model in
  place), which favours Torch-Pruning by the cost of one deepcopy.

It prints the median of ``--repeats`` runs (after one warm-up), the ratio prunesafe / TP (< 1
means prunesafe is faster) and a markdown table.  It also shows what each library does with
the option-A ResNet-56: Torch-Pruning returns a model whose forward fails, prunesafe's runs.

Usage::

    python benchmarks/bench_pruning.py [--repeats 7] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn

from prunesafe.models import cifar_resnet, cifar_vgg

try:
    from prunesafe.pruning import prune_model

    def prunesafe_prune(model: nn.Module, x: torch.Tensor, coupling: str, verify: bool = False) -> nn.Module:
        return prune_model(model, "filter", 0.5, example_inputs=x, coupling=coupling, verify=verify)

    PRUNESAFE_CALL = 'prune_model(model, "filter", 0.5, example_inputs=x, verify=False)  (deepcopy included)'
except ImportError:  # prune_model not available yet: same work, written out
    from prunesafe.pruning.structured import FilterPruner

    def prunesafe_prune(model: nn.Module, x: torch.Tensor, coupling: str, verify: bool = False) -> nn.Module:
        return FilterPruner(0.5, coupling=coupling).prune(copy.deepcopy(model), example_inputs=x)  # type: ignore[arg-type]

    PRUNESAFE_CALL = "FilterPruner(0.5).prune(copy.deepcopy(model), example_inputs=x)"

import torch_pruning as tp

MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], str]] = {
    "cifar_vgg16": (lambda: cifar_vgg(16), (1, 3, 32, 32), "classifier"),
    "cifar_resnet56": (lambda: cifar_resnet(56), (1, 3, 32, 32), "linear"),
    "resnet50": (lambda: torchvision.models.resnet50(weights=None), (1, 3, 224, 224), "fc"),
}


def _median_time(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None) -> float:
    times = []
    for i in range(repeats + 1):
        arg = setup() if setup is not None else None
        start = time.perf_counter()
        fn() if setup is None else fn(arg)  # type: ignore[call-arg]
        elapsed = time.perf_counter() - start
        if i:  # the first run is a warm-up (lazy imports, allocator)
            times.append(elapsed)
    return statistics.median(times)


def _tp_prune(model: nn.Module, x: torch.Tensor, last: str) -> nn.Module:
    pruner = tp.pruner.MagnitudePruner(
        model,
        x,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=[model.get_submodule(last)],
    )
    pruner.step()
    return model


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name, (builder, shape, last) in MODELS.items():
        torch.manual_seed(0)
        model = builder().eval()
        x = torch.rand(shape)
        base = _params(model)
        ps = _median_time(lambda m=model, x=x: prunesafe_prune(m, x, "exclude"), repeats)
        ps_together = _median_time(lambda m=model, x=x: prunesafe_prune(m, x, "together"), repeats)
        ps_verified = _median_time(lambda m=model, x=x: prunesafe_prune(m, x, "exclude", True), repeats)
        tp_time = _median_time(
            lambda m, x=x, last=last: _tp_prune(m, x, last), repeats, setup=lambda m=model: copy.deepcopy(m)
        )
        ps_model = prunesafe_prune(model, x, "exclude")
        ps_together_model = prunesafe_prune(model, x, "together")
        tp_model = _tp_prune(copy.deepcopy(model), x, last)
        rows.append(
            {
                "model": name,
                "prunesafe_s": ps,
                "prunesafe_together_s": ps_together,
                "prunesafe_verified_s": ps_verified,
                "torch_pruning_s": tp_time,
                "ratio": ps / tp_time,
                "ratio_together": ps_together / tp_time,
                "params": base,
                "params_prunesafe": _params(ps_model),
                "params_prunesafe_together": _params(ps_together_model),
                "params_torch_pruning": _params(tp_model),
            }
        )
        print(
            f"{name:15s} prunesafe {ps * 1e3:8.1f} ms (together {ps_together * 1e3:7.1f} ms)   "
            f"Torch-Pruning {tp_time * 1e3:8.1f} ms   ratio prunesafe/TP {ps / tp_time:5.2f} "
            f"(together {ps_together / tp_time:5.2f}; verify=True {ps_verified * 1e3:7.1f} ms)",
            flush=True,
        )
    return rows


def option_a_demo() -> dict[str, str]:
    """Prune the option-A CIFAR ResNet-56 with both libraries and run the results."""
    torch.manual_seed(0)
    model = cifar_resnet(56).eval()
    x = torch.rand(2, 3, 32, 32)
    out: dict[str, str] = {}
    tp_model = _tp_prune(copy.deepcopy(model), x[:1], "linear")
    try:
        with torch.no_grad():
            tp_model(x)
        out["torch_pruning"] = "forward ran (no failure reproduced)"
    except Exception as err:
        out["torch_pruning"] = f"forward FAILS: {type(err).__name__}: {str(err).splitlines()[0][:150]}"
    for coupling in ("exclude", "together"):
        pruned = prunesafe_prune(model, x[:1], coupling)
        with torch.no_grad():
            y = pruned(x)
        out[f"prunesafe_{coupling}"] = (
            f"forward OK, output {tuple(y.shape)}, params {_params(model)} -> {_params(pruned)}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement (median; >= 5)")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads for both libraries (1 avoids OpenMP contention on a busy machine)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, torch-pruning {importlib.metadata.version('torch-pruning')}, threads {torch.get_num_threads()}"
    )
    print(f"prunesafe call: {PRUNESAFE_CALL}")
    print("Torch-Pruning: MagnitudePruner(...) + step() on a fresh deepcopy made outside the timer\n")
    rows = run(max(args.repeats, 5))
    demo = option_a_demo()
    print(
        "\n| model | prunesafe (s) | prunesafe together (s) | prunesafe verify=True (s) | Torch-Pruning (s) "
        "| prunesafe / TP | params kept prunesafe / together / TP |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['prunesafe_s']:.4f} | {r['prunesafe_together_s']:.4f} | "
            f"{r['prunesafe_verified_s']:.4f} | {r['torch_pruning_s']:.4f} | "
            f"{r['ratio']:.2f} | {r['params_prunesafe'] / r['params']:.2f} / "
            f"{r['params_prunesafe_together'] / r['params']:.2f} / {r['params_torch_pruning'] / r['params']:.2f} |"
        )
    print("\nOption-A CIFAR ResNet-56 (parameter-free zero-padding shortcuts):")
    for k, v in demo.items():
        print(f"  {k:20s} {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"timings": rows, "option_a": demo}, fh, indent=2)


if __name__ == "__main__":
    main()
