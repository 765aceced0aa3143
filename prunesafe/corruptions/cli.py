"""``prunesafe make-c``: write a CIFAR-C folder from clean ``.npy`` images with the native engine.

The main CLI (:mod:`prunesafe.cli`) registers the subcommand with :func:`add_arguments` and calls
:func:`run`; both work on their own too::

    prunesafe make-c --images test_images.npy --labels test_labels.npy --out CIFAR-10-C \\
        [--corruptions benchmark] [--severities 1 2 3] [--seed 0] [--frost-dir frost/]

Examples
--------
>>> import argparse
>>> p = argparse.ArgumentParser(prog="make-c")
>>> add_arguments(p)
>>> a = p.parse_args(["--images", "x.npy", "--labels", "y.npy", "--out", "d", "--corruptions", "noise"])
>>> a.corruptions, a.severities, a.seed
(['noise'], None, 0)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from prunesafe.corruptions._random import DEFAULT_SEED
from prunesafe.corruptions.writer import write_cifar_c
from prunesafe.data.cifar_c import resolve_corruptions, resolve_severities

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``make-c`` options to ``parser``."""
    parser.add_argument("--images", required=True, type=Path, help="clean uint8 NHWC images (.npy)")
    parser.add_argument("--labels", required=True, type=Path, help="integer labels (.npy), one per image")
    parser.add_argument("--out", required=True, type=Path, help="output folder (CIFAR-10-C layout)")
    parser.add_argument(
        "--corruptions",
        nargs="+",
        default=None,
        metavar="NAME",
        help="corruption names or shortcuts (all, benchmark, extra, noise, blur, weather, digital); "
        "default: all 19",
    )
    parser.add_argument(
        "--severities", nargs="+", type=int, default=None, metavar="S", help="severities 1..5; default: all"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed (default {DEFAULT_SEED})")
    parser.add_argument("--frost-dir", type=Path, default=None, help="folder of the frost textures")
    parser.add_argument("--device", default=None, help="torch device to compute on, e.g. cuda")
    parser.add_argument("--chunk-size", type=int, default=1000, help="images per batch (default 1000)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing corruption files")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _error(message: str) -> int:
    print(f"prunesafe make-c: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run ``make-c`` with parsed ``args``; returns the exit status (0 ok, 2 bad input)."""
    try:
        corruptions = resolve_corruptions(args.corruptions if args.corruptions else "all")
        severities = resolve_severities(args.severities if args.severities else "all")
    except (TypeError, ValueError) as exc:
        return _error(str(exc))
    for what, path in (("--images", args.images), ("--labels", args.labels)):
        if not Path(path).is_file():
            return _error(f"{what} file {path} not found")
    try:
        images = np.load(args.images, mmap_mode="r", allow_pickle=False)
        labels = np.load(args.labels, allow_pickle=False)
    except (ValueError, OSError) as exc:
        return _error(f"cannot read the input .npy files: {exc}")
    try:
        out = write_cifar_c(
            args.out,
            images,
            labels,
            corruptions,
            severities,
            seed=args.seed,
            frost_dir=args.frost_dir,
            overwrite=args.overwrite,
            device=args.device,
            chunk_size=args.chunk_size,
            progress=not args.no_progress,
        )
    except (TypeError, ValueError, FileExistsError, FileNotFoundError) as exc:
        return _error(str(exc))
    print(f"wrote {len(corruptions)} corruption(s) x severities {list(severities)} to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m prunesafe.corruptions.cli``)."""
    parser = argparse.ArgumentParser(prog="prunesafe make-c", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
