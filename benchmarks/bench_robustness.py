"""Benchmark: prunesafe.metrics.robustness.evaluate_corruptions vs a bare forward pass, and its peak RSS.

Targets (issue 4):

* speed -- evaluating ResNet-20 over the CIFAR-10-C sample (19 corruptions x 5 severities x 200
  images) costs <= 1.10x a bare loop of ``model(x)`` over the same images preloaded as float
  batches of the same sizes, both under ``torch.inference_mode``.  The difference is what the
  evaluation adds: uint8 -> float conversion from the memory maps, logits bookkeeping, accuracy,
  ECE and NLL per cell.
* memory -- peak RSS < 1.5 GB when a CIFAR10C dataset selecting all 19 released-size files
  (50000 x 32 x 32 x 3 uint8 each, 2.9 GB together, built here as sparse dummy files with random
  rows) is evaluated in full with a small model; measured as the peak RSS (``VmHWM``) of
  a fresh subprocess.

Usage::

    python benchmarks/bench_robustness.py                       # both parts, full sample
    python benchmarks/bench_robustness.py --corruptions fog snow --repeats 1   # quick check
    python benchmarks/bench_robustness.py --skip-rss
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PRUNESAFE_SHARED", REPO.parent / "shared"))


def load_resnet20() -> nn.Module:
    from prunesafe.models import cifar_resnet, load_weights

    model = cifar_resnet(20)
    ckpt = SHARED / "models" / "resnet20-12fca82f.th"
    if ckpt.is_file():  # timings do not depend on the weights; load them when available
        load_weights(model, ckpt)
    return model.eval()


def bench_speed(args: argparse.Namespace) -> dict[str, float]:
    from prunesafe.data import CIFAR10C
    from prunesafe.metrics.robustness import evaluate_corruptions

    model = load_resnet20()
    ds = CIFAR10C(args.sample_dir, args.corruptions, "all")
    n_images = len(ds)
    # reference input: the same images, already float NCHW in [0, 1], split exactly like the evaluation
    batches = []
    for cell in ds.cells:
        x = torch.from_numpy(np.array(cell.images)).permute(0, 3, 1, 2).contiguous().float().div_(255)
        batches.extend(x.split(args.batch_size))

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for x in batches:
                model(x)
        return time.perf_counter() - t0

    def evaluate() -> float:
        t0 = time.perf_counter()
        evaluate_corruptions(model, ds, batch_size=args.batch_size, progress=False)
        return time.perf_counter() - t0

    bare()  # warm-up (allocator, oneDNN primitives)
    t_bare, t_eval = [], []
    for _ in range(args.repeats):  # interleaved so that machine noise hits both alike
        t_bare.append(bare())
        t_eval.append(evaluate())
    return {
        "images": n_images,
        "cells": len(ds.cells),
        "bare_s": min(t_bare),
        "evaluate_s": min(t_eval),
        "ratio": min(t_eval) / min(t_bare),
        "threads": torch.get_num_threads(),
    }


def build_released_size(folder: Path, n: int) -> None:
    from numpy.lib.format import open_memmap

    from prunesafe.data import ALL_CORRUPTIONS

    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, (min(n, 1000), 32, 32, 3), dtype=np.uint8)
    for name in ALL_CORRUPTIONS:
        arr = open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.uint8, shape=(5 * n, 32, 32, 3))
        for s in range(5):  # random rows at the start of every severity, the rest stays sparse zeros
            arr[s * n : s * n + len(block)] = block
        arr.flush()
        del arr
    np.save(folder / "labels.npy", np.tile(rng.integers(0, 10, n), 5).astype(np.uint8))


def _peak_rss_kib() -> int:
    """Peak RSS of this process in KiB.

    ``VmHWM`` belongs to the current address space, so it starts afresh at ``exec``;
    ``ru_maxrss`` is inherited from the parent across fork + exec and would include the
    parent's peak (the timing part of this script), so it is only the fallback.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def rss_child(folder: str, batch_size: int) -> None:
    from prunesafe.data import CIFAR10C
    from prunesafe.metrics.robustness import evaluate_corruptions

    base = _peak_rss_kib()
    ds = CIFAR10C(folder, "all", "all")
    model = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 10)).eval()
    t0 = time.perf_counter()
    res = evaluate_corruptions(model, ds, batch_size=batch_size, progress=False)
    elapsed = time.perf_counter() - t0
    peak = _peak_rss_kib()
    print(
        json.dumps(
            {
                "files": len(ds.corruptions),
                "images": len(ds),
                "cells": len(res.records),
                "peak_rss_mb": peak / 1024,
                "rss_before_dataset_mb": base / 1024,
                "seconds": elapsed,
            }
        )
    )


def bench_rss(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="prunesafe-bench-c10c-") as tmp:
        build_released_size(Path(tmp), args.rss_n)
        out = subprocess.run(
            [sys.executable, __file__, "--_rss-child", tmp, "--batch-size", str(args.batch_size)],
            check=True,
            capture_output=True,
            text=True,
        )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample-dir", default=str(SHARED / "data" / "CIFAR-10-C-sample"))
    parser.add_argument("--corruptions", nargs="+", default=["all"])
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-n", type=int, default=10000, help="images per severity of the dummy files")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--_rss-child", dest="rss_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child is not None:
        rss_child(args.rss_child, args.batch_size)
        return

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = []
    if not args.skip_speed:
        s = bench_speed(args)
        print(f"speed: {json.dumps(s)}")
        rows.append(
            (
                f"evaluate_corruptions, ResNet-20, {s['cells']} cells / {s['images']} images "
                f"(batch {args.batch_size}, {s['threads']} threads)",
                f"{s['evaluate_s']:.2f} s",
                f"bare forward {s['bare_s']:.2f} s",
                f"{s['ratio']:.3f}x (target <= 1.10x)",
            )
        )
    if not args.skip_rss:
        r = bench_rss(args)
        print(f"rss: {json.dumps(r)}")
        rows.append(
            (
                f"peak RSS, {r['files']} files x 5 x {args.rss_n} images selected and evaluated "
                f"({r['images']} images, tiny model)",
                f"{r['peak_rss_mb']:.0f} MB",
                f"after imports {r['rss_before_dataset_mb']:.0f} MB",
                "target < 1500 MB",
            )
        )
    print("\n| benchmark | prunesafe | reference | ratio / target |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
