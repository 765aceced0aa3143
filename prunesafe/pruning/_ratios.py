"""The one ratio convention of every pruner: counting, rounding, thresholds and per-layer ratio maps.

* **Rounding.** ``selection="topk"`` removes ``round(ratio * n)`` units -- Python's ``round``
  (half to even) of the float product, exactly what :mod:`torch.nn.utils.prune` does -- for every
  method: weights (``"unstructured"``), filters (``"filter"``) and BN channels (``"channel"``).
* **Threshold rule** (``selection="threshold"``) of the code of Liu et al. (network slimming and
  "Rethinking the Value of Network Pruning"): sort the ``n`` scores ascending, take the value at
  index ``floor(n * ratio)`` as the threshold and keep only the units *strictly greater* than it.
  Ties at the threshold are pruned, so at least ``floor(n * ratio) + 1`` units go: the achieved
  ratio is >= the asked one.
* **Ratio maps.** ``ratio`` may be a mapping from qualified layer names or :func:`fnmatch`
  glob patterns to ratios; for every layer the *last* matching key wins (like ``.gitignore``:
  general patterns first, exceptions after), layers no key matches are skipped, and a ratio of
  ``0`` skips a layer explicitly.

Examples
--------
>>> count_to_remove(0.5, 5), count_to_remove(0.5, 7), count_to_remove(0.3, 64)
(2, 4, 19)
>>> threshold_index(0.5, 16)
8
>>> resolve_ratio_map({"layer1.*.conv1": 0.5, "layer1.2.conv1": 0.0},
...                   ["conv1", "layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1"])
{'layer1.0.conv1': 0.5, 'layer1.1.conv1': 0.5}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any, Literal

import numpy as np

__all__ = [
    "RatioMap",
    "Selection",
    "count_to_remove",
    "is_pattern",
    "resolve_ratio_map",
    "threshold_index",
    "threshold_remove_mask",
    "validate_ratio",
    "validate_selection",
]

#: How the units to remove are chosen: exactly ``round(ratio * n)`` lowest scores ("topk",
#: ties broken by position) or Liu et al.'s rule "keep scores > sorted[floor(n * ratio)]" ("threshold").
Selection = Literal["topk", "threshold"]
RatioMap = Mapping[str, float]


def _check_fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{what} must be a float in [0, 1), got {type(value).__name__}")
    out = float(value)
    if not 0.0 <= out < 1.0 or math.isnan(out):
        raise ValueError(f"{what} must be in [0, 1) (the fraction to remove), got {out}")
    return out


def validate_ratio(ratio: Any) -> float | dict[str, float]:
    """A float in ``[0, 1)`` or a non-empty ``{name or glob pattern: float in [0, 1)}`` mapping.

    Examples
    --------
    >>> validate_ratio({"features.0": 0.5})
    {'features.0': 0.5}
    >>> validate_ratio(1.5)
    Traceback (most recent call last):
    ...
    ValueError: ratio must be in [0, 1) (the fraction to remove), got 1.5
    """
    if isinstance(ratio, Mapping):
        if not ratio:
            raise ValueError("ratio mapping is empty: give {layer name or glob pattern: ratio}")
        out: dict[str, float] = {}
        for key, value in ratio.items():
            if not isinstance(key, str) or not key:
                raise TypeError(
                    f"ratio mapping keys must be non-empty layer names or glob patterns, got {key!r}"
                )
            out[key] = _check_fraction(value, f"ratio[{key!r}]")
        return out
    return _check_fraction(ratio, "ratio")


def validate_selection(selection: Any) -> Selection:
    """``"topk"`` or ``"threshold"`` (``ValueError`` otherwise)."""
    if selection not in ("topk", "threshold"):
        raise ValueError(
            f'selection must be "topk" (exactly round(ratio * n) units) or "threshold" (Liu et al.: keep '
            f"scores > sorted[floor(n * ratio)]), got {selection!r}"
        )
    out: Selection = selection
    return out


def count_to_remove(ratio: float, n: int | float) -> int:
    """Number of units ``selection="topk"`` removes out of ``n``: ``round(ratio * n)`` (half to even).

    The same rounding as :mod:`torch.nn.utils.prune` (``round(amount * tensor_size)``).

    Examples
    --------
    >>> count_to_remove(0.25, 10), count_to_remove(0.35, 10)  # 2.5 -> 2, 3.5 -> 4 (half to even)
    (2, 4)
    """
    return round(ratio * n)


def threshold_index(ratio: float, n: int) -> int:
    """Index ``floor(n * ratio)`` of the threshold in the ascending sorted scores.

    Liu et al.'s ``int(total * percent)``; at most ``n - 1``.

    Examples
    --------
    >>> threshold_index(0.7, 10), threshold_index(0.5, 3)
    (7, 1)
    """
    return min(int(n * ratio), max(n - 1, 0))


def threshold_remove_mask(scores: np.ndarray[Any, Any], ratio: float, *, reference: Any = None) -> Any:
    """Boolean mask of the scores at or below Liu et al.'s threshold ``sorted(reference)[floor(n * ratio)]``.

    ``reference`` (default: ``scores``) is the population the threshold is taken over -- e.g. ALL
    BatchNorm channels of a model while only the eligible ones are removed.  ``ratio == 0`` removes
    nothing (an unpruned baseline).

    Examples
    --------
    >>> import numpy as np
    >>> threshold_remove_mask(np.array([0.3, 0.1, 0.2, 0.2]), 0.25).tolist()  # threshold 0.2: ties pruned
    [False, True, True, True]
    """
    values = np.asarray(scores, dtype=np.float64)
    ref = values if reference is None else np.asarray(reference, dtype=np.float64)
    if ratio <= 0 or ref.size == 0:
        return np.zeros(values.shape, dtype=bool)
    threshold = np.sort(ref, kind="stable")[threshold_index(ratio, int(ref.size))]
    return values <= threshold


def is_pattern(key: str) -> bool:
    """Whether a ratio-map key is a glob pattern (contains ``*``, ``?`` or ``[``)."""
    return any(c in key for c in "*?[")


def resolve_ratio_map(mapping: Mapping[str, float], names: Iterable[str]) -> dict[str, float]:
    """Per-layer ratios of a ``{name or glob: ratio}`` map: the last matching key wins; 0 and unmatched skip.

    Parameters
    ----------
    mapping : mapping of str to float
        Keys are qualified module names or :func:`fnmatch.fnmatchcase` patterns (``*`` also
        matches dots: ``"layer1.*"`` covers ``"layer1.0.conv1"``).
    names : iterable of str
        The candidate layers (e.g. every conv of the model).

    Returns
    -------
    dict of str to float
        Only the layers with a ratio > 0, in ``names`` order.

    Raises
    ------
    ValueError
        A key matches none of ``names`` (a typo would otherwise silently prune nothing).
    """
    candidates = list(names)
    unmatched = [k for k in mapping if not any(fnmatchcase(n, k) for n in candidates)]
    if unmatched:
        raise ValueError(
            f"ratio mapping: key(s) {unmatched} match no prunable layer of the model; layer names look like "
            f"{candidates[:4]} (glob patterns such as 'layer1.*.conv1' are allowed)"
        )
    out: dict[str, float] = {}
    for name in candidates:
        value: float | None = None
        for key, r in mapping.items():
            if fnmatchcase(name, key):
                value = r
        if value is not None and value > 0:
            out[name] = value
    return out
