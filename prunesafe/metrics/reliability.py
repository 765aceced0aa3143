"""Reliability-diagram data: per-bin edges, counts, mean confidence, accuracy and gap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prunesafe.metrics._checks import InputKind, check_choice, check_n_bins
from prunesafe.metrics.calibration import (
    Binning,
    _BinStats,
    _calibration_error_from_counts,
    _prepare,
    _quantile_bins_of_sorted,
    _top_label_quantile_stats,
    _top_label_uniform_stats,
)

__all__ = ["ReliabilityDiagram", "reliability_diagram"]


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per-bin data of a top-label reliability diagram (read-only NumPy arrays of length ``n_bins``).

    Attributes
    ----------
    bin_lower, bin_upper : ndarray of float64
        Bin edges.  Equal-width bins are right-closed ``(lower, upper]`` (the first also contains 0).
        For equal-mass bins they are the smallest and largest confidence in the bin (NaN if empty).
    count : ndarray of int64
        Samples per bin.
    mean_confidence, accuracy : ndarray of float64
        Mean top-label confidence and fraction of correct predictions per bin (NaN for empty bins).
    gap : ndarray of float64
        ``mean_confidence - accuracy`` (positive = over-confident; NaN for empty bins).
    n_samples : int
    binning : str
    ece, mce : float
        The l1 / max calibration errors of these bins.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import reliability_diagram
    >>> d = reliability_diagram(torch.randn(100, 10), torch.randint(0, 10, (100,)), n_bins=5)
    >>> sorted(d.to_dict())[:3]
    ['accuracy', 'bin_lower', 'bin_upper']
    >>> len(d.to_records())
    5
    """

    bin_lower: np.ndarray
    bin_upper: np.ndarray
    count: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray
    gap: np.ndarray
    n_samples: int
    binning: str
    ece: float
    mce: float

    _ARRAYS = ("bin_lower", "bin_upper", "count", "mean_confidence", "accuracy", "gap")

    def __post_init__(self) -> None:
        for name in self._ARRAYS:
            arr = np.array(getattr(self, name), copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def n_bins(self) -> int:
        """Number of bins."""
        return int(self.count.shape[0])

    def to_dict(self) -> dict[str, list[Any]]:
        """Column-oriented dict of the per-bin arrays (``pandas.DataFrame(d.to_dict())``)."""
        return {name: getattr(self, name).tolist() for name in self._ARRAYS}

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per bin (``pandas.DataFrame.from_records(d.to_records())``)."""
        cols = self.to_dict()
        return [{name: cols[name][i] for name in self._ARRAYS} for i in range(self.n_bins)]


def _diagram_from_stats(
    stats: _BinStats, n_bins: int, binning: str, lower: np.ndarray | None, upper: np.ndarray | None
) -> ReliabilityDiagram:
    count, positive, score_sum = stats.as_numpy()
    if lower is None or upper is None:
        edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
        lower, upper = edges[:-1], edges[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(count > 0, count, 1).astype(np.float64)
        conf = np.where(count > 0, score_sum / safe, np.nan)
        acc = np.where(count > 0, positive / safe, np.nan)
    return ReliabilityDiagram(
        bin_lower=lower,
        bin_upper=upper,
        count=count,
        mean_confidence=conf,
        accuracy=acc,
        gap=conf - acc,
        n_samples=int(count.sum()),
        binning=binning,
        ece=_calibration_error_from_counts(count, positive, score_sum, "l1"),
        mce=_calibration_error_from_counts(count, positive, score_sum, "max"),
    )


def _quantile_edges(sorted_conf: Tensor, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    bins = _quantile_bins_of_sorted(sorted_conf, n_bins)
    lower = torch.full((n_bins,), float("nan"), dtype=torch.float64, device=sorted_conf.device)
    upper = lower.clone()
    vals = sorted_conf.to(torch.float64)
    lower.scatter_reduce_(0, bins, vals, reduce="amin", include_self=False)
    upper.scatter_reduce_(0, bins, vals, reduce="amax", include_self=False)
    return lower.cpu().numpy(), upper.cpu().numpy()


def reliability_diagram(
    logits: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    n_bins: int = 15,
    binning: Binning = "uniform",
    inputs: InputKind = "logits",
) -> ReliabilityDiagram:
    """Compute the data of a top-label reliability diagram (DeGroot & Fienberg, 1983; Guo et al., 2017).

    Uses exactly the bins of :func:`~prunesafe.metrics.expected_calibration_error`, so ``d.ece``
    equals that function's value for the same arguments.

    Parameters
    ----------
    logits : Tensor or ndarray, shape (N, C)
        Logits (default) or probabilities (``inputs="probs"``).
    labels : Tensor or ndarray, shape (N,)
        Integer class indices.
    n_bins : int, default 15
    binning : {"uniform", "quantile"}, default "uniform"
    inputs : {"logits", "probs"}, default "logits"

    Returns
    -------
    ReliabilityDiagram
        Draw it with :func:`prunesafe.plotting.plot_reliability_diagram`.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import reliability_diagram
    >>> probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.45, 0.55]])
    >>> d = reliability_diagram(probs, torch.tensor([0, 1, 1, 1]), n_bins=5, inputs="probs")
    >>> d.count.tolist()
    [0, 0, 1, 1, 2]
    """
    m = check_n_bins(n_bins)
    check_choice(binning, "binning", ("uniform", "quantile"))
    scores, y = _prepare(logits, labels, inputs)
    if binning == "uniform":
        return _diagram_from_stats(_top_label_uniform_stats(scores, y, m, inputs), m, "uniform", None, None)
    stats, sorted_conf = _top_label_quantile_stats(scores, y, m, inputs)
    lower, upper = _quantile_edges(sorted_conf, m)
    return _diagram_from_stats(stats, m, "quantile", lower, upper)
