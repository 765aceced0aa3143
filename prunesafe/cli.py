"""The ``prunesafe`` command: ``prunesafe study ...`` and ``prunesafe make-c ...``.

Subcommands are imported lazily, so ``prunesafe study --help`` works even when another subcommand's
module cannot be imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: subcommand -> (module exposing add_arguments(parser) and run(args) -> int, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "study": ("prunesafe.study._cli", "prune, fine-tune and evaluate calibration + corruption robustness"),
    "make-c": ("prunesafe.corruptions.cli", "write a CIFAR-C style folder of corrupted images"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prunesafe`` console script (and ``python -m prunesafe``).

    Examples
    --------
    >>> main(["--version"])  # doctest: +ELLIPSIS
    prunesafe ...
    0
    """
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="prunesafe", description="Prune CNNs and show they are still safe.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in args if not a.startswith("-")), None)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # import only the subcommand that runs
            try:
                mod = importlib.import_module(module)
            except ImportError as exc:
                print(f"prunesafe {name}: unavailable ({exc})", file=sys.stderr)
                return 1
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    ns = parser.parse_args(args)
    if ns.version:
        from prunesafe import __version__

        print(f"prunesafe {__version__}")
        return 0
    if ns.command is None:
        parser.print_help()
        return 1
    code: int = ns._run(ns)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
