"""Benchmark prunesafe's ECE against torchmetrics and against a memory-bandwidth "floor", in one run.

Targets (from the issue):
* equal-width ECE on 1,000,000 x 10 float32 logits <= 0.4x torchmetrics' ``multiclass_calibration_error``
  and <= 2.5x the floor ``torch.exp(logits)`` + ``logits.amax(1)``;
* equal-mass ECE on 1,000,000 samples <= 1.3x one ``torch.sort`` of the confidences.

Usage: ``python benchmarks/bench_ece.py [--repeats 9] [--threads N] [--quick]``.
Prints the machine description (CPU, torch, threads, load average), a ratio line per target and a markdown
table.  Both sides always run with the same thread count.  On a machine whose load average exceeds its core
count, multi-threaded timings of many small torch ops are dominated by scheduling stalls (each parallel region
waits for a preempted worker); compare with ``--threads 1`` there.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from prunesafe.metrics import expected_calibration_error
from prunesafe.metrics.calibration import _top_label


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time in milliseconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from torchmetrics.functional.classification import multiclass_calibration_error

    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores visible)")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, python {platform.python_version()}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = os.cpu_count() or 1
    print(f"load average (1 min): {load:.2f}" + (" -- BUSY MACHINE, timings are noisy" if load > cores else ""))
    scale = 10 if args.quick else 1
    rows: list[tuple[str, float, str, float, float]] = []
    g = torch.Generator().manual_seed(0)

    for n, c in ((1_000_000 // scale, 10), (100_000 // scale, 1000)):
        logits = torch.randn(n, c, generator=g) * 3
        labels = torch.randint(0, c, (n,), generator=g)
        ours = timeit(lambda: expected_calibration_error(logits, labels, n_bins=15), args.repeats)  # noqa: B023
        tm = timeit(
            lambda: multiclass_calibration_error(logits, labels, num_classes=c, n_bins=15),  # noqa: B023
            max(3, args.repeats // 3),
        )

        def floor_fn() -> None:
            torch.exp(logits)  # noqa: B023
            logits.amax(1)  # noqa: B023

        floor = timeit(floor_fn, args.repeats)
        shape = f"{n:,} x {c}"
        rows.append((f"ECE uniform {shape}", ours, "torchmetrics", tm, ours / tm))
        rows.append((f"ECE uniform {shape}", ours, "floor exp+amax", floor, ours / floor))

    n = 1_000_000 // scale
    logits = torch.randn(n, 10, generator=g) * 3
    labels = torch.randint(0, 10, (n,), generator=g)
    conf, _ = _top_label(logits, labels, "logits")
    ours_q = timeit(lambda: expected_calibration_error(logits, labels, binning="quantile"), args.repeats)
    sort_t = timeit(lambda: torch.sort(conf), args.repeats)
    rows.append((f"ECE quantile {n:,} x 10", ours_q, "torch.sort(conf)", sort_t, ours_q / sort_t))

    targets = {
        ("ECE uniform 1,000,000 x 10", "torchmetrics"): 0.4,
        ("ECE uniform 1,000,000 x 10", "floor exp+amax"): 2.5,
        ("ECE quantile 1,000,000 x 10", "torch.sort(conf)"): 1.3,
    }
    print()
    for what, t_ours, ref, t_ref, ratio in rows:
        target = targets.get((what, ref))
        verdict = "" if target is None else (f"  target <= {target}: " + ("OK" if ratio <= target else "MISSED"))
        print(f"{what}: prunesafe {t_ours:.2f} ms, {ref} {t_ref:.2f} ms, ratio {ratio:.3f}{verdict}")
    print()
    print("| workload | prunesafe (ms) | reference | reference (ms) | ratio | target |")
    print("|---|---:|---|---:|---:|---:|")
    for what, t_ours, ref, t_ref, ratio in rows:
        target = targets.get((what, ref))
        print(
            f"| {what} | {t_ours:.2f} | {ref} | {t_ref:.2f} | {ratio:.3f} | "
            f"{'' if target is None else f'<= {target}'} |"
        )


if __name__ == "__main__":
    main()
