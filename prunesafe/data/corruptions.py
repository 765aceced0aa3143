"""Deprecated location of the CIFAR-10-C / CIFAR-100-C loader; use :mod:`prunesafe.data.cifar_c`.

Kept so that ``from prunesafe.data.corruptions import CIFAR10C`` (and every other public name) keeps
working.  Corruption *generation* lives in :mod:`prunesafe.corruptions`.

Examples
--------
>>> from prunesafe.data import corruptions, cifar_c
>>> corruptions.CIFAR10C is cifar_c.CIFAR10C
True
"""

from __future__ import annotations

from prunesafe.data.cifar_c import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    CIFAR10C,
    CIFAR100C,
    CORRUPTION_GROUPS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    CorruptedCIFAR,
    CorruptionCell,
    resolve_corruptions,
    resolve_severities,
)

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "CIFAR10C",
    "CIFAR100C",
    "CORRUPTION_GROUPS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "CorruptedCIFAR",
    "CorruptionCell",
    "resolve_corruptions",
    "resolve_severities",
]
