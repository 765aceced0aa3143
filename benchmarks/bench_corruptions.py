"""Benchmark: the native corruption engine vs the reference CIFAR-10-C generator, and on-the-fly evaluation.

Targets (issue 10):

* all 19 corruptions x 5 severities for 10,000 images in < 60 s (this 2-core CPU);
* >= 20x the per-image throughput of the reference, measured in the same run.  The reference is
  ``reference_cifar_c.py`` -- a per-image transcription of make_cifar_c.py on the reference's own
  libraries (numpy, scipy, scikit-image, OpenCV, Pillow, Wand/ImageMagick), timed on ``--ref-n`` images
  per cell and scaled to ``--n`` (it is a per-image loop: its time is linear in the number of images);
* evaluating ResNet-20 over the 15 benchmark corruptions x 5 severities on the fly costs <= 1.5x
  evaluating the same images read from ``.npy`` files (the same evaluation loop, ``--eval-n`` images
  per cell; the files are written by :func:`prunesafe.corruptions.write_cifar_c` beforehand, untimed).

Usage::

    python benchmarks/bench_corruptions.py                    # everything (several minutes)
    python benchmarks/bench_corruptions.py --n 1000 --ref-n 20 --eval-n 200   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PRUNESAFE_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def bench_engine(images: np.ndarray, names: list[str], frost_dir: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Wall-clock and process CPU seconds per corruption (5 severities)."""
    from prunesafe.corruptions import corrupt

    wall, cpu = {}, {}
    for name in names:
        corrupt(images[:8], name, 1, seed=0, frost_dir=frost_dir)  # warm-up: imports, textures, tables
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(1, 6):
            corrupt(images, name, s, seed=0, frost_dir=frost_dir)
        wall[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
        print(f"  engine {name:18s} {wall[name]:7.2f} s wall, {cpu[name]:7.2f} s CPU (5 severities, {len(images)} images)", flush=True)
    return wall, cpu


def bench_reference(images: np.ndarray, names: list[str], frost_dir: Path) -> dict[str, float]:
    """Seconds per image (summed over the 5 severities) of the reference transcription."""
    from reference_cifar_c import reference_corrupt

    np.random.seed(12345)  # noqa: NPY002 -- the reference uses the global numpy RNG
    out = {}
    for name in names:
        t0 = time.perf_counter()
        for s in range(1, 6):
            reference_corrupt(images, name, s, frost_dir=frost_dir)
        out[name] = (time.perf_counter() - t0) / len(images)
        print(f"  reference {name:18s} {out[name] * 1e3:7.2f} ms/image (5 severities)", flush=True)
    return out


def _evaluate(model: torch.nn.Module, cells, batch: int = 500) -> tuple[float, int]:
    correct = total = 0
    with torch.inference_mode():
        for cell in cells:
            images = cell.images
            labels = torch.as_tensor(np.asarray(cell.labels))
            for lo in range(0, len(labels), batch):
                x = torch.from_numpy(np.array(images[lo : lo + batch])).permute(0, 3, 1, 2).float().div_(255)
                pred = model(x).argmax(1)  # the model normalises [0, 1] inputs itself
                correct += int((pred == labels[lo : lo + batch]).sum())
                total += len(pred)
    return correct / total, total


def bench_eval(images: np.ndarray, labels: np.ndarray, repeats: int, frost_dir: Path) -> dict[str, float]:
    from prunesafe.corruptions import OnTheFlyCIFARC, write_cifar_c
    from prunesafe.data import CIFAR10C
    from prunesafe.models import cifar_resnet, load_weights

    model = cifar_resnet(20)
    load_weights(model, SHARED / "models" / "resnet20-jpeg.th")
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar_c(tmp, images, labels, "benchmark", seed=0, frost_dir=frost_dir, progress=False)
        files, fly = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            acc_files, n = _evaluate(model, CIFAR10C(tmp, "benchmark").cells)
            files.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ds = OnTheFlyCIFARC(images, labels, "benchmark", seed=0, frost_dir=frost_dir)
            acc_fly, _ = _evaluate(model, ds.cells)
            fly.append(time.perf_counter() - t0)
    res = {
        "eval_images": n,
        "eval_files_s": float(np.median(files)),
        "eval_on_the_fly_s": float(np.median(fly)),
        "accuracy_files": acc_files,
        "accuracy_on_the_fly": acc_fly,
    }
    res["eval_ratio"] = res["eval_on_the_fly_s"] / res["eval_files_s"]
    return res


def main() -> None:
    from prunesafe.corruptions import ALL_CORRUPTIONS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="images for the engine timing")
    p.add_argument("--ref-n", type=int, default=100, help="images per cell for the reference timing")
    p.add_argument("--eval-n", type=int, default=500, help="images per cell for the evaluation timing")
    p.add_argument("--repeats", type=int, default=1, help="repeats of the evaluation timing (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--corruptions", nargs="+", default=list(ALL_CORRUPTIONS))
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--skip-eval", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    frost_dir = SHARED / "data" / "frost"
    test = np.load(SHARED / "data" / "cifar10" / "test_images.npy")
    labels = np.load(SHARED / "data" / "cifar10" / "test_labels.npy")
    reps = -(-args.n // len(test))
    images = np.ascontiguousarray(np.concatenate([test] * reps)[: args.n])
    print(f"threads={args.threads} load={os.getloadavg()}", flush=True)
    engine, engine_cpu = bench_engine(images, args.corruptions, frost_dir)
    total = sum(engine.values())
    results: dict[str, object] = {
        "n": args.n,
        "threads": args.threads,
        "engine_s": engine,
        "engine_cpu_s": engine_cpu,
        "engine_total_s": total,
        "engine_total_cpu_s": sum(engine_cpu.values()),
    }
    if not args.skip_reference:
        ref = bench_reference(images[: args.ref_n], args.corruptions, frost_dir)
        results["reference_s_per_image"] = ref
        ref_total = sum(ref.values()) * args.n
        results["reference_total_s_extrapolated"] = ref_total
        results["throughput_ratio"] = ref_total / total
    if not args.skip_eval:
        results.update(bench_eval(test[: args.eval_n], labels[: args.eval_n], args.repeats, frost_dir))
    results["load_after"] = os.getloadavg()

    print("\n| corruption | engine, 5 severities (s) | engine (µs/image/severity) | reference (µs/image/severity) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name in args.corruptions:
        e_us = engine[name] / (5 * args.n) * 1e6
        if "reference_s_per_image" in results:
            r_us = results["reference_s_per_image"][name] / 5 * 1e6  # type: ignore[index]
            print(f"| {name} | {engine[name]:.2f} | {e_us:.1f} | {r_us:.0f} | {r_us / e_us:.1f}x |")
        else:
            print(f"| {name} | {engine[name]:.2f} | {e_us:.1f} | – | – |")
    print(
        f"\nengine total, {len(args.corruptions)} corruptions x 5 severities x {args.n} images: {total:.1f} s wall, "
        f"{results['engine_total_cpu_s']:.1f} s CPU (target < 60 s)"
    )
    if "throughput_ratio" in results:
        print(
            f"reference total (extrapolated from {args.ref_n} images/cell): {results['reference_total_s_extrapolated']:.0f} s"
            f" -> throughput ratio {results['throughput_ratio']:.1f}x (target >= 20x)"
        )
    if "eval_ratio" in results:
        print(
            f"evaluation, 15 x 5 cells x {args.eval_n} images: files {results['eval_files_s']:.1f} s, on the fly "
            f"{results['eval_on_the_fly_s']:.1f} s -> ratio {results['eval_ratio']:.2f} (target <= 1.5); "
            f"accuracy files {results['accuracy_files']:.4f} / on the fly {results['accuracy_on_the_fly']:.4f}"
        )
    print(f"load average before/after: see above / {results['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
