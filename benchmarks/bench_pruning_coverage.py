"""Coverage of structured pruning on 20 torchvision CNNs: prunesafe vs Torch-Pruning, in one run.

For every model of issue 9's list and for ``"filter"`` (L1 filter norms, each layer / group at
the ratio) and ``"channel"`` (BatchNorm ``|gamma|``, one global threshold) at ratio 0.5, both
libraries prune a copy of the same model (``weights=None``, seeded, BN ``gamma`` drawn uniform in
[0.05, 1] so that ``|gamma|`` ranks channels -- a fresh model's gammas are all 1):

* prunesafe: ``prune_model(model, method, 0.5, example_inputs=x, coupling="together")``; the
  time compared is that of ``verify=False, inplace=True`` on a deep copy made outside the timer
  (the same work Torch-Pruning's timer sees: no verification, no copy); the default call (deep
  copy + masked-model verification where it is on by default) is timed too and decides coverage;
* Torch-Pruning: ``MetaPruner(model, x, MagnitudeImportance(p=1), pruning_ratio=0.5)`` for
  "filter" and ``BNScalePruner(model, x, BNScaleImportance(), pruning_ratio=0.5,
  global_pruning=True)`` for "channel", with the classifiers (every Linear or conv with 1000
  outputs, auxiliary heads included) in ``ignored_layers``; construction + ``step()`` timed,
  the deep copy made outside the timer.

A model is *covered* when pruning returns, an eval forward (with the original output shapes)
and a train forward + backward run (batch 2; GoogLeNet and Inception-v3 with their auxiliary heads, which only run in train mode)
and at least 25 % of the parameters are gone.  The script prints one row per (model, method)
with both columns (covered, parameters kept %, prune seconds) and the time ratio prunesafe / TP,
then the totals; ``--csv`` writes the rows for pandas.

Usage::

    python benchmarks/bench_pruning_coverage.py [--models resnet18,googlenet] [--threads 1] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import copy
import csv
import importlib.metadata
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch_pruning as tp
import torchvision
from torch import nn
from tqdm import tqdm

from prunesafe.pruning import prune_model

MODELS = [
    "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "vgg16_bn", "densenet121",
    "googlenet", "inception_v3", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "efficientnet_b0", "efficientnet_v2_s", "mnasnet0_5", "regnet_x_400mf", "regnet_y_400mf",
    "shufflenet_v2_x0_5", "squeezenet1_1", "convnext_tiny", "alexnet",
]  # fmt: skip
RATIO = 0.5
MIN_DROP = 0.25


@dataclass
class Row:
    model: str
    method: str
    library: str
    covered: bool
    params_kept_pct: float
    prune_s: float
    default_s: float
    note: str


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    kwargs: dict[str, Any] = (
        {"aux_logits": True, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    )
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
                m.weight.copy_(torch.rand(m.num_features, generator=gen) * 0.95 + 0.05)
    size = 299 if name == "inception_v3" else 224
    return model.eval(), torch.rand(1, 3, size, size)


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shapes(out: Any) -> list[tuple[int, ...]]:
    outs = out if isinstance(out, tuple) else (out,)
    return [tuple(o.shape) for o in outs]


def runs(model: nn.Module, x: torch.Tensor, shapes: list[tuple[int, ...]]) -> str:
    """'' when an eval forward (same output shapes) and a train forward + backward run, else the error."""
    batch = x.expand(2, *x.shape[1:]).contiguous()
    try:
        model.eval()
        with torch.no_grad():
            got = _shapes(model(batch))
        if got != shapes:
            return f"output shapes changed from {shapes} to {got}"
        model.train()
        out = model(batch)
        outs = out if isinstance(out, tuple) else (out,)
        sum(o.sum() for o in outs).backward()
    except Exception as err:  # any failure means not covered
        return f"forward fails: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
    finally:
        model.eval()
    return ""


def prunesafe_run(model: nn.Module, x: torch.Tensor, method: str) -> tuple[nn.Module, float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        pruned = prune_model(model, method, RATIO, example_inputs=x, coupling="together")
        default = time.perf_counter() - start
        target = copy.deepcopy(model)  # in place on a copy made outside the timer, as for Torch-Pruning
        start = time.perf_counter()
        prune_model(target, method, RATIO, example_inputs=x, coupling="together", verify=False, inplace=True)
        bare = time.perf_counter() - start
    return pruned, bare, default


def tp_run(model: nn.Module, x: torch.Tensor, method: str) -> tuple[nn.Module, float, float]:
    target = copy.deepcopy(model)  # Torch-Pruning prunes in place: the copy is not timed
    ignored = [
        m
        for m in target.modules()
        if (isinstance(m, nn.Linear) and m.out_features == 1000)
        or (isinstance(m, nn.Conv2d) and m.out_channels == 1000)
    ]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "filter":
            pruner: Any = tp.pruner.MetaPruner(
                target, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=RATIO,
                ignored_layers=ignored,
            )  # fmt: skip
        else:
            pruner = tp.pruner.BNScalePruner(
                target, x, importance=tp.importance.BNScaleImportance(), pruning_ratio=RATIO,
                global_pruning=True, ignored_layers=ignored,
            )  # fmt: skip
        pruner.step()
    seconds = time.perf_counter() - start
    return target, seconds, seconds


def measure(name: str, method: str, library: str, run: Callable[..., tuple[nn.Module, float, float]]) -> Row:
    model, x = build(name)
    before = params(model)
    with torch.no_grad():
        shapes = _shapes(model(x.expand(2, *x.shape[1:]).contiguous()))
    try:
        pruned, seconds, default = run(model, x, method)
    except Exception as err:  # a refusal or a crash: not covered
        nan = float("nan")
        return Row(name, method, library, False, 100.0, nan, nan, f"{type(err).__name__}: {str(err)[:120]}")
    kept = params(pruned) / before
    problem = runs(pruned, x, shapes)
    if not problem and kept > 1 - MIN_DROP:
        problem = f"only {100 * (1 - kept):.1f}% of the parameters removed"
    return Row(
        name,
        method,
        library,
        not problem,
        round(100 * kept, 1),
        round(seconds, 3),
        round(default, 3),
        problem,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", default="filter,channel")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    methods = args.methods.split(",")
    rows: list[Row] = []
    for name in tqdm(names, desc="models"):
        for method in methods:
            rows.append(measure(name, method, "prunesafe", prunesafe_run))
            rows.append(measure(name, method, "torch-pruning", tp_run))
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, torch-pruning "
        f"{importlib.metadata.version('torch-pruning')}, threads {args.threads}, load {os.getloadavg()}"
    )
    print(
        f"ratio {RATIO}, coupling='together' (prunesafe); covered = runs in eval and train and >= 25% params gone\n"
    )
    print(
        "| model | method | prunesafe covered | kept % | s (verify off) | s (default) | TP covered | kept % | s "
        "| time ratio ps/TP |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    by_key = {(r.model, r.method, r.library): r for r in rows}
    for name in names:
        for method in methods:
            ps, ref = by_key[(name, method, "prunesafe")], by_key[(name, method, "torch-pruning")]
            ratio = (
                ps.prune_s / ref.prune_s if ref.prune_s == ref.prune_s and ref.prune_s > 0 else float("nan")
            )
            print(
                f"| {name} | {method} | {'yes' if ps.covered else 'no'} | {ps.params_kept_pct} | {ps.prune_s} | "
                f"{ps.default_s} | "
                f"{'yes' if ref.covered else 'no'} | {ref.params_kept_pct} | {ref.prune_s} | {ratio:.2f} |"
            )
    for method in methods:
        for lib in ("prunesafe", "torch-pruning"):
            n = sum(by_key[(m, method, lib)].covered for m in names)
            print(f"{method:8s} {lib:14s} covered {n} of {len(names)}")
    print("\nnot covered:")
    for r in rows:
        if not r.covered:
            print(f"  {r.library:14s} {r.model:20s} {r.method:8s} {r.note}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)


if __name__ == "__main__":
    main()
