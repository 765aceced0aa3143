"""Peak memory (and time) of every calibration metric on large logits, prunesafe vs an earlier revision.

Target (issue 7): extra peak memory <= 1x the input size for every metric, with speed no worse than before.

Each measurement runs in a fresh child process that builds ``N x C`` float32 logits and int64 labels, resets the
kernel's peak-RSS counter (``/proc/self/clear_refs``, Linux), runs the metric once, and reports the peak RSS
(``VmHWM``) minus the RSS before the call: the metric's extra peak resident memory.  The same child code runs against the
working tree and against ``--reference-rev`` (default: the revision before the blockwise kernels), exported with
``git archive`` into a temporary folder, so both sides are measured in the same run on the same machine.

Usage: ``python benchmarks/bench_metrics_memory.py [--n 10000000] [--classes 10] [--reference-rev REV]
[--quick] [--only NAME ...] [--repeats K]``.  Time is the median of ``K`` calls in the child (default 1).  Prints one line per metric and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = "4bb2c93"  # main before issue 7 (N x C float64 temporaries)

CHILD = r"""
import json, resource, sys, time, warnings
import torch
torch.set_num_threads(1)
n, c, name, repeats = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
import prunesafe.metrics as M
g = torch.Generator().manual_seed(0)
logits = torch.randn(n, c, generator=g).mul_(3)      # filled and scaled in place: no temporary
labels = torch.randint(0, c, (n,), generator=g)


def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # KiB
    raise KeyError(key)


calls = {
    "expected_calibration_error": lambda: M.expected_calibration_error(logits, labels),
    "expected_calibration_error (quantile)": lambda: M.expected_calibration_error(logits, labels, binning="quantile"),
    "classwise_calibration_error": lambda: M.classwise_calibration_error(logits, labels),
    "debiased_l2_calibration_error": lambda: M.debiased_l2_calibration_error(logits, labels),
    "brier_score": lambda: M.brier_score(logits, labels),
    "negative_log_likelihood": lambda: M.negative_log_likelihood(logits, labels),
    "fit_temperature": lambda: M.fit_temperature(logits, labels),
    "CalibrationAccumulator.update": lambda: M.CalibrationAccumulator().update(logits, labels),
    "reliability_diagram": lambda: M.reliability_diagram(logits, labels),
}
fn = calls[name]
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM) to the current RSS
    fh.write("5")
before = status("VmRSS")
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    value = fn()
seconds = time.perf_counter() - t0
after = status("VmHWM")
times = [seconds]
for _ in range(repeats - 1):  # more calls for a steadier time (the memory figure is from the first)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn()
    times.append(time.perf_counter() - t0)
seconds = sorted(times)[len(times) // 2]
input_bytes = logits.numel() * logits.element_size() + labels.numel() * labels.element_size()
print(json.dumps({"extra_mib": (after - before) / 1024, "input_mib": input_bytes / 2**20, "seconds": seconds}))
"""

METRICS = [
    "expected_calibration_error",
    "expected_calibration_error (quantile)",
    "classwise_calibration_error",
    "debiased_l2_calibration_error",
    "brier_score",
    "negative_log_likelihood",
    "fit_temperature",
    "CalibrationAccumulator.update",
    "reliability_diagram",
]


def export_revision(rev: str, into: Path) -> Path:
    """``git archive`` of ``prunesafe/`` at ``rev`` unpacked under ``into``; returns the folder to import from."""
    archive = into / "ref.tar"
    with open(archive, "wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", rev, "prunesafe"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def measure(tree: Path, n: int, c: int, name: str, repeats: int = 1) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(c), name, str(repeats)],
        env=env,
        cwd=tempfile.gettempdir(),  # never import the working tree by accident
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{name} on {tree} failed:\n{out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--reference-rev", default=DEFAULT_REFERENCE)
    parser.add_argument("--quick", action="store_true", help="n = 1,000,000 (smoke test)")
    parser.add_argument("--only", nargs="*", default=None, help="metric names (default: all)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per child (median reported)")
    args = parser.parse_args()
    n = 1_000_000 if args.quick else args.n
    names = args.only or METRICS
    print(f"# N = {n:,} x {args.classes} float32 logits + int64 labels; load average {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref_tree = export_revision(args.reference_rev, Path(tmp))
        for name in names:
            ours = measure(REPO, n, args.classes, name, args.repeats)
            ref = measure(ref_tree, n, args.classes, name, args.repeats)
            ratio = ours["extra_mib"] / ours["input_mib"]
            speed = ours["seconds"] / ref["seconds"]
            rows.append((name, ours, ref, ratio, speed))
            print(
                f"{name}: extra {ours['extra_mib']:.0f} MiB = {ratio:.2f}x input (reference "
                f"{ref['extra_mib']:.0f} MiB); time {ours['seconds']:.2f} s vs {ref['seconds']:.2f} s "
                f"(ratio {speed:.2f})",
                flush=True,
            )
    print(f"\n# load average after: {os.getloadavg()}\n")
    print(
        f"| metric ({n:,} × {args.classes}) | extra peak RSS (MiB) | × input | reference {args.reference_rev} "
        "(MiB) | time (s) | reference (s) | time ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, ours, ref, ratio, speed in rows:
        print(
            f"| `{name}` | {ours['extra_mib']:.0f} | **{ratio:.2f}** | {ref['extra_mib']:.0f} | "
            f"{ours['seconds']:.2f} | {ref['seconds']:.2f} | {speed:.2f} |"
        )


if __name__ == "__main__":
    main()
