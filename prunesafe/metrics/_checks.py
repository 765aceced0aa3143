"""Private validation and conversion helpers shared by the calibration metrics.

Every public metric funnels its inputs through :func:`check_scores` and :func:`check_labels`, so a bad
input fails in one place with one message that names the argument and says how to fix it.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, TypeVar

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "PROB_SUM_ATOL",
    "InputKind",
    "ProbabilitiesAsLogitsWarning",
    "check_choice",
    "check_labels",
    "check_n_bins",
    "check_scores",
    "to_tensor",
]

InputKind = Literal["logits", "probs"]

#: Absolute tolerance on ``|sum_j p_ij - 1|`` for rows declared as probabilities (``inputs="probs"``).
#: float32 softmax rows over up to ~10^5 classes sum to 1 well within it; rows computed in half precision
#: may not -- upcast and renormalise them first (``p = p.float(); p = p / p.sum(1, keepdim=True)``).
PROB_SUM_ATOL = 1e-4

_T = TypeVar("_T", bound=str)


class ProbabilitiesAsLogitsWarning(UserWarning):
    """Scores passed with ``inputs="logits"`` look like probabilities (pass ``inputs="probs"``)."""


def to_tensor(value: object, name: str) -> Tensor:
    """Return ``value`` as a CPU-or-device :class:`torch.Tensor` without copying when possible.

    Accepts tensors, NumPy arrays, and (for convenience) nested Python lists/tuples of numbers.
    """
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        if value.dtype == np.object_:
            raise TypeError(f"`{name}` is a NumPy array of dtype object; pass a numeric array instead.")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, list | tuple):
        try:
            return torch.from_numpy(np.asarray(value))
        except (TypeError, ValueError) as exc:  # ragged lists etc.
            raise TypeError(f"`{name}` could not be converted to a numeric array: {exc}") from exc
    raise TypeError(
        f"`{name}` must be a torch.Tensor or a numpy.ndarray, got {type(value).__name__}; "
        f"convert it with torch.as_tensor(...) first."
    )


def check_choice(value: _T, name: str, allowed: tuple[str, ...]) -> _T:
    """Raise a ValueError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"`{name}` must be one of {options}; got {value!r}.")
    return value


def check_n_bins(n_bins: object) -> int:
    """Validate ``n_bins`` (a positive Python/NumPy integer, not a bool) and return it as ``int``."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer):
        raise TypeError(f"`n_bins` must be a positive integer, got {n_bins!r} ({type(n_bins).__name__}).")
    if int(n_bins) < 1:
        raise ValueError(f"`n_bins` must be >= 1, got {n_bins}; use e.g. n_bins=15 (the common default).")
    return int(n_bins)


def check_scores(
    scores: object, inputs: str, name: str = "logits", *, warn_probs: bool = True, stacklevel: int = 2
) -> Tensor:
    """Validate a ``(N, C)`` score matrix and return it as a contiguous float32/float64 tensor.

    ``inputs="logits"``: any finite real numbers.  ``inputs="probs"``: every entry in ``[0, 1]`` and every
    row summing to 1 within :data:`PROB_SUM_ATOL`.  Half-precision inputs are upcast to float32.  Nothing
    is inferred from the value range: the caller declares what the scores are -- but scores declared as
    logits that look exactly like probabilities (every entry in [0, 1], every row summing to 1) raise a
    :class:`ProbabilitiesAsLogitsWarning` naming ``inputs`` (when ``warn_probs``); they are still treated
    as logits.
    """
    check_choice(inputs, "inputs", ("logits", "probs"))
    t = to_tensor(scores, name)
    if t.dtype == torch.bool or not (t.is_floating_point()):
        raise TypeError(
            f"`{name}` must be a floating-point array of {inputs} with shape (N, num_classes), got dtype "
            f"{t.dtype}; convert with .float() (and check you did not pass labels in its place)."
        )
    if t.ndim != 2:
        raise ValueError(
            f"`{name}` must have shape (N, num_classes), got shape {tuple(t.shape)}; "
            f"flatten extra dimensions into N (e.g. x.reshape(-1, num_classes))."
        )
    if t.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (N = 0); the metrics need at least one sample.")
    if t.shape[1] < 2:
        raise ValueError(
            f"`{name}` must have at least 2 columns (classes), got {t.shape[1]}; for a binary problem pass "
            f"both columns, e.g. torch.stack([1 - p, p], dim=1)."
        )
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    t = t.contiguous()
    lo_t, hi_t = torch.aminmax(t)  # one pass; NaN propagates, +-inf shows up in min/max
    lo, hi = float(lo_t), float(hi_t)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        n_bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"`{name}` contains {n_bad} NaN or infinite value(s); fix the model output (or drop those rows) "
            f"before computing calibration metrics."
        )
    if inputs == "logits" and warn_probs and lo >= 0.0 and hi <= 1.0:
        dev_l = float((t.sum(dim=1, dtype=torch.float64) - 1.0).abs().max())
        if dev_l <= PROB_SUM_ATOL:
            warnings.warn(
                f"`{name}` looks like probabilities (every entry in [0, 1], every row sums to 1) but is "
                f"treated as logits because inputs='logits' (the default); softmax is applied again and the "
                f"metric is wrong. Pass inputs='probs' if these are probabilities.",
                ProbabilitiesAsLogitsWarning,
                stacklevel=stacklevel,
            )
    if inputs == "probs":
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"`{name}` was declared as probabilities (inputs='probs') but has values in "
                f"[{lo:.6g}, {hi:.6g}], outside [0, 1]; pass inputs='logits' if these are logits."
            )
        dev = float((t.sum(dim=1, dtype=torch.float64) - 1.0).abs().max())
        if dev > PROB_SUM_ATOL:
            raise ValueError(
                f"`{name}` was declared as probabilities (inputs='probs') but a row sums to 1 +- {dev:.3g} "
                f"(tolerance {PROB_SUM_ATOL:g}); renormalise with p / p.sum(1, keepdim=True), or pass "
                f"inputs='logits' if these are logits."
            )
    return t


def check_labels(labels: object, n_samples: int, num_classes: int, name: str = "labels") -> Tensor:
    """Validate integer class labels of shape ``(N,)`` in ``[0, num_classes)``; return an int64 tensor."""
    t = to_tensor(labels, name)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(
            f"`{name}` must hold integer class indices, got dtype {t.dtype}; convert with labels.long() "
            f"(one-hot targets: labels = onehot.argmax(1))."
        )
    if t.ndim != 1:
        raise ValueError(
            f"`{name}` must have shape (N,), got shape {tuple(t.shape)}; pass class indices, not one-hot "
            f"rows (use onehot.argmax(1)) and flatten extra dimensions."
        )
    if t.shape[0] != n_samples:
        raise ValueError(
            f"`{name}` has {t.shape[0]} entries but the scores have {n_samples} rows; "
            f"pass one label per row of the logits/probabilities."
        )
    t = t.to(torch.int64)
    if n_samples:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"`{name}` must lie in [0, {num_classes - 1}] (num_classes = {num_classes} columns in the "
                f"scores), got values in [{lo}, {hi}]; remove ignore-index entries (e.g. -100) or check the "
                f"class order."
            )
    return t.contiguous()
