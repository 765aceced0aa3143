"""``prunesafe study``: the command-line front end of :func:`prunesafe.study.run_study`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_arguments", "config_from_args", "run"]


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.replace(",", " ").split()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the study's flags to ``parser`` (flags override ``--config`` and ``--preset``)."""
    parser.add_argument("--config", metavar="FILE", help="a .toml or .json study config")
    parser.add_argument("--preset", choices=["quick", "paper"], help="start from a named preset")
    g = parser.add_argument_group("overrides (win over --config and --preset)")
    g.add_argument(
        "--model", help="zoo name for every model (resnet20..110, resnet164, preact-resnet110, vgg11..19)"
    )
    g.add_argument(
        "--checkpoint",
        help="weights for every model (replaces train = 'baseline'): a file, or a registry name such as "
        "resnet20 (looked for in DATA_DIR/models/, fetched there by --download)",
    )
    g.add_argument(
        "--methods", nargs="+", metavar="METHOD", help="pruning methods, e.g. unstructured filter channel"
    )
    g.add_argument("--ratios", nargs="+", type=float, metavar="R", help="pruning ratios in [0, 1)")
    g.add_argument("--seeds", nargs="+", type=int, metavar="S")
    g.add_argument("--finetune-epochs", type=int, metavar="E")
    g.add_argument("--finetune-lr", type=float, metavar="LR")
    g.add_argument("--n-bins", type=int, metavar="M", help="ECE bins (equal-width and equal-mass)")
    g.add_argument(
        "--corruptions", nargs="+", metavar="NAME", help="names or shortcuts (benchmark, all, noise, ...)"
    )
    g.add_argument("--severities", nargs="+", type=int, metavar="S")
    g.add_argument("--data-dir", help="folder holding cifar10/ (or cifar100/) and CIFAR-10-C(-sample)/")
    g.add_argument("--corruptions-dir", help="the CIFAR-C folder, if not inside --data-dir")
    g.add_argument(  # issue 11: prunesafe/study/fetch.py
        "--corruptions-from",
        choices=["auto", "engine", "files"],
        help="engine: generate the corruptions on the fly; files: read CIFAR-C files; auto: files when "
        "--data-dir holds them, else engine",
    )
    g.add_argument(
        "--download",
        action="store_true",
        help="fetch what is missing into --data-dir first (CIFAR-10, registry checkpoints, frost textures, "
        "CIFAR-10-C for --corruptions-from files), verified",
    )
    g.add_argument("--n-test", type=int, help="use the first N clean test images")
    g.add_argument("--n-corrupted", type=int, help="use the first N images of every corruption cell")
    g.add_argument("--n-train", type=int, help="fine-tune on the first N training images")
    g.add_argument("--n-holdout", type=int, help="held-out training images for temperature scaling")
    g.add_argument("--out", help="run folder (resumed when it holds the same config)")
    g.add_argument("--device", help="cpu, cuda, cuda:1, ...")
    g.add_argument("--no-control", action="store_true", help="skip the equal-training control")
    g.add_argument("--no-temperature-scaling", action="store_true")
    g.add_argument("--bootstrap-resamples", type=int, metavar="B")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~prunesafe.study.StudyConfig` of parsed arguments."""
    from prunesafe.study.config import StudyConfig
    from prunesafe.study.presets import preset

    data: dict[str, Any] = preset(args.preset) if args.preset else {}
    if args.config:
        data.update(StudyConfig.from_file(args.config).to_dict())
    if not data:
        data = preset("quick")
    cfg = StudyConfig.from_dict(data)
    return cfg.with_overrides(
        model=args.model,
        checkpoint=args.checkpoint,
        methods=args.methods,
        ratios=args.ratios,
        seeds=args.seeds,
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        n_bins=args.n_bins,
        corruptions=args.corruptions,
        severities=args.severities,
        data_dir=args.data_dir,
        corruptions_dir=args.corruptions_dir,
        corruptions_from=args.corruptions_from,
        download=True if args.download else None,
        n_test=args.n_test,
        n_corrupted=args.n_corrupted,
        n_train=args.n_train,
        n_holdout=args.n_holdout,
        out=args.out,
        device=args.device,
        control=False if args.no_control else None,
        temperature_scaling=False if args.no_temperature_scaling else None,
        bootstrap_resamples=args.bootstrap_resamples,
        progress=False if args.no_progress else None,
    )


def run(args: argparse.Namespace) -> int:
    """Run the study of parsed arguments; 0 on success, 2 for a bad config (message on stderr)."""
    import logging

    from prunesafe.study.runner import run_study

    handler = logging.StreamHandler(sys.stderr)  # one line per finished job, also with --no-progress
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("prunesafe.study")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        cfg = config_from_args(args)
        if args.print_config:
            print(json.dumps(cfg.to_dict(), indent=1))
            return 0
        result = run_study(cfg)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"prunesafe study: error: {exc}", file=sys.stderr)
        return 2
    if result.files:
        print(f"report -> {result.files['report.md']}")
    return 0
