r"""Functional calibration metrics: ECE/MCE/RMSCE, classwise ECE, Brier, NLL, debiased L2, bootstrap CIs.

Conventions (see ``docs/calibration.md`` for the formulas, citations and a comparison with torchmetrics,
netcal and Guo et al.'s code):

* **Inputs.** ``logits`` of shape ``(N, C)`` by default; probabilities only when declared with
  ``inputs="probs"`` (nothing is guessed from the value range).  Tensors (any device) or NumPy arrays.
* **Top-label confidence** ``c_i = max_j p_ij`` and prediction ``argmax_j`` (first index on ties).
* **Equal-width bins are right-closed**: with ``M = n_bins`` bin ``m`` (0-based) is ``(m/M, (m+1)/M]``;
  a sample goes to bin ``ceil(c * M) - 1``, computed in the confidence's floating dtype.  A confidence
  of exactly ``0`` (possible only for classwise probabilities) goes to the first bin ``[0, 1/M]``, a
  confidence of exactly ``1`` to the last bin ``((M-1)/M, 1]``.
* **Equal-mass ("quantile", adaptive) bins**: the ``N`` samples sorted by confidence are split by rank,
  rank ``r`` (0-based) going to bin ``floor(r * M / N)``, except that samples of equal confidence always
  share one bin -- the bin of the tie group's first rank.  Without ties bin sizes differ by at most one;
  ties can make bins larger, and bins left empty are skipped.
* **Exact accumulation**: per-bin counts are int64 and per-bin sums of confidences are accumulated in
  int64 fixed point with 40 fractional bits (every float32 value ``>= 2**-17`` is represented exactly).
  Integer addition is associative, so results do not depend on sample order, batch splitting or the
  number of processes, and :class:`~prunesafe.metrics.CalibrationAccumulator` reproduces these functions
  bit for bit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from prunesafe.metrics._checks import (
    InputKind,
    check_choice,
    check_labels,
    check_n_bins,
    check_scores,
)

__all__ = [
    "Binning",
    "BootstrapResult",
    "Norm",
    "UndefinedMetricWarning",
    "accuracy",
    "bootstrap_ci",
    "brier_score",
    "classwise_calibration_error",
    "debiased_l2_calibration_error",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
]

Norm = Literal["l1", "l2", "max"]
Binning = Literal["uniform", "quantile"]

_NORMS = ("l1", "l2", "max")
_BINNINGS = ("uniform", "quantile")


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the given samples and NaN is returned (e.g. debiased L2 with no bin >= 2)."""


# ---------------------------------------------------------------------------------------------------------
# Exact fixed-point accumulation
# ---------------------------------------------------------------------------------------------------------
FRAC_BITS = 40
_SCALE = float(2**FRAC_BITS)
_FRAC_MASK = 2**FRAC_BITS - 1
# At most this many values are added into one int64 slot in a single index_add_ (each < 2**40 after the
# whole/fraction split), so a partial sum stays below 2**62.
_MAX_ADD = 2**22
# Rows of logits handled per step of the top-label kernel (keeps the exp buffer in cache).
_CHUNK_ELEMS = 2**22
# Scores per block of the classwise kernel (its int64 bin/key temporaries are 8-16 bytes per score).
_CLASSWISE_ELEMS = 2**20
# |row max| above which exp(logits) is not used directly (over/underflow); those rows use exp(l - max).
_SAFE_EXP = {torch.float32: 60.0, torch.float64: 600.0}


def _carry(whole: Tensor, frac: Tensor) -> None:
    """Normalise a fixed-point pair in place so that ``0 <= frac < 2**40``."""
    whole.add_(frac >> FRAC_BITS)
    frac.bitwise_and_(_FRAC_MASK)


def _fixed_add(
    whole: Tensor, frac: Tensor, values: Tensor, index: Tensor | None, *, at_most_one: bool = False
) -> None:
    """Add non-negative finite ``values`` (bucketed by ``index``; all into slot 0 when None) exactly.

    ``values`` are rounded to the 2**-40 grid (exact for float32 values >= 2**-17, and for float64
    values that are multiples of 2**-40); values must be below 2**22.  With ``at_most_one=True`` the
    caller guarantees ``values <= 1`` and the quantised values are added in one pass.
    """
    if values.numel() == 0:
        return
    for start in range(0, values.shape[0], _MAX_ADD):
        v = values[start : start + _MAX_ADD]
        idx = (
            torch.zeros(v.shape[0], dtype=torch.int64, device=v.device)  # one slot: O(block), not O(N)
            if index is None
            else index[start : start + _MAX_ADD]
        )
        q = torch.round(v * _SCALE).to(torch.int64)
        if at_most_one:  # q <= 2**40, at most 2**22 of them: the partial sum stays below 2**63 - 2**40
            frac.index_add_(0, idx, q)
        else:
            whole.index_add_(0, idx, q >> FRAC_BITS)
            frac.index_add_(0, idx, q & _FRAC_MASK)
        _carry(whole, frac)


def _fixed_to_float(whole: Tensor, frac: Tensor) -> np.ndarray:
    """Fixed-point pair -> float64 NumPy array (one rounding, deterministic)."""
    w = whole.detach().cpu().numpy().astype(np.float64)
    f = frac.detach().cpu().numpy().astype(np.float64)
    out: np.ndarray = w + f / _SCALE
    return out


@dataclass
class _BinStats:
    """Per-bin integer statistics (private; shared by the functional API and the accumulator).

    ``count``/``positive`` are int64 sample counts (``positive`` = correct predictions for top-label
    bins, label == class for classwise bins); ``score_whole``/``score_frac`` hold the per-bin sum of
    confidences in 40-bit fixed point.
    """

    count: Tensor
    positive: Tensor
    score_whole: Tensor
    score_frac: Tensor

    @classmethod
    def zeros(cls, size: int, device: torch.device | str | None = None) -> _BinStats:
        def z() -> Tensor:
            return torch.zeros(size, dtype=torch.int64, device=device)

        return cls(z(), z(), z(), z())

    def add_(self, other: _BinStats) -> None:
        self.count += other.count.to(self.count.device)
        self.positive += other.positive.to(self.count.device)
        self.score_whole += other.score_whole.to(self.count.device)
        self.score_frac += other.score_frac.to(self.count.device)
        _carry(self.score_whole, self.score_frac)

    def accumulate_(self, bins: Tensor, scores: Tensor, positive: Tensor) -> None:
        """Add samples with bin indices ``bins``, scores in [0, 1] and boolean ``positive``."""
        size = self.count.shape[0]
        key = bins * 2 + positive.to(torch.int64)
        both = torch.bincount(key, minlength=2 * size).view(size, 2)
        self.count += both.sum(1)
        self.positive += both[:, 1]
        _fixed_add(self.score_whole, self.score_frac, scores, bins, at_most_one=True)

    def as_numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(count, positive, score_sum)`` as int64, int64, float64 arrays."""
        return (
            self.count.detach().cpu().numpy().astype(np.int64),
            self.positive.detach().cpu().numpy().astype(np.int64),
            _fixed_to_float(self.score_whole, self.score_frac),
        )


# ---------------------------------------------------------------------------------------------------------
# Top-label confidences
# ---------------------------------------------------------------------------------------------------------
def _top_label_chunk(
    x: Tensor,
    y: Tensor,
    inputs: str,
    buf: Tensor | None,
    out: tuple[Tensor, Tensor] | None = None,
    check_range: bool = True,
) -> tuple[Tensor, Tensor]:
    """Confidence (max probability) and correctness (argmax == label) for one block of rows.

    For logits the confidence is ``exp(max) / sum_j exp(l_j)`` -- one exp pass into a reused buffer and
    no softmax matrix -- falling back to ``1 / sum_j exp(l_j - max)`` for rows whose max is large enough
    to over/underflow (only looked for when ``check_range``).  The prediction is ``torch.max``'s index
    (the first maximal index on ties).  Every row is computed independently, so the result does not
    depend on how rows are batched.
    """
    if out is None:
        m, pred = torch.max(x, 1)
    else:
        m, pred = torch.max(x, 1, out=(out[0], torch.empty_like(y)))
    if inputs == "logits":
        e = torch.exp(x, out=buf[: x.shape[0]]) if buf is not None else torch.exp(x)
        s = e.sum(1)
        rows = None
        if check_range:
            limit = _SAFE_EXP[x.dtype]
            unsafe = m.abs() > limit
            if bool(unsafe.any()):
                rows = unsafe.nonzero().squeeze(1)
                shifted = torch.exp(x.index_select(0, rows) - m.index_select(0, rows).unsqueeze(1))
                fallback = shifted.sum(1).reciprocal()
        conf = torch.exp(m, out=m).div_(s)
        if rows is not None:
            conf[rows] = fallback
    else:
        conf = m
    correct = torch.eq(pred, y, out=out[1]) if out is not None else pred == y
    return conf, correct


def _chunk_rows(n_cols: int) -> int:
    return max(1, _CHUNK_ELEMS // max(1, n_cols))


def _top_label(scores: Tensor, labels: Tensor, inputs: str) -> tuple[Tensor, Tensor]:
    """Top-label confidences and correctness of validated ``scores``/``labels`` (all rows).

    Works block by block (``2**22`` scores per block) so the exp buffer is reused and stays in cache.
    """
    n, c = scores.shape
    check_range = True
    if inputs == "logits":
        lo, hi = torch.aminmax(scores)
        limit = _SAFE_EXP[scores.dtype]
        check_range = not (-limit <= float(lo) and float(hi) <= limit)
    step = _chunk_rows(c)
    if n <= step:
        return _top_label_chunk(scores, labels, inputs, None, None, check_range)
    buf = torch.empty((step, c), dtype=scores.dtype, device=scores.device)
    conf = torch.empty(n, dtype=scores.dtype, device=scores.device)
    correct = torch.empty(n, dtype=torch.bool, device=scores.device)
    for start in range(0, n, step):
        sl = slice(start, start + step)
        _top_label_chunk(scores[sl], labels[sl], inputs, buf, (conf[sl], correct[sl]), check_range)
    return conf, correct


def _uniform_bin_index(values: Tensor, n_bins: int) -> Tensor:
    """Right-closed equal-width bin index ``clamp(ceil(v * M) - 1, 0, M - 1)`` as int64."""
    return torch.ceil(values * n_bins).sub_(1).clamp_(0, n_bins - 1).to(torch.int64)


def _top_label_uniform_stats(scores: Tensor, labels: Tensor, n_bins: int, inputs: str) -> _BinStats:
    """Equal-width top-label bin statistics (state O(bins); temporaries O(min(N, 2**22)) per block)."""
    stats = _BinStats.zeros(n_bins, scores.device)
    for start in range(0, scores.shape[0], _MAX_ADD):
        sl = slice(start, start + _MAX_ADD)
        conf, correct = _top_label(scores[sl], labels[sl], inputs)
        stats.accumulate_(_uniform_bin_index(conf, n_bins), conf, correct)
    return stats


def _sort_by_confidence(conf: Tensor, correct: Tensor) -> tuple[Tensor, Tensor]:
    """Sort (confidence, correctness) pairs by confidence, ties broken by correctness.

    Positive IEEE floats order like their bit patterns, so one integer sort of ``bits << 1 | correct``
    sorts both at once (integer radix sort is much faster than a float sort with indices), and the order
    depends only on the multiset of pairs, never on the input order.
    """
    if conf.dtype == torch.float32:
        key = (conf.view(torch.int32) << 1) | correct.to(torch.int32)
        skey = torch.sort(key).values
        return (skey >> 1).view(torch.float32), (skey & 1).bool()
    key64 = (conf.to(torch.float64).view(torch.int64) << 1) | correct.to(torch.int64)
    skey = torch.sort(key64).values
    return (skey >> 1).view(torch.float64), (skey & 1).bool()


def _quantile_bin_index(n_samples: int, n_bins: int, device: torch.device) -> Tensor:
    """Equal-mass bin of each rank ``r`` of ``n_samples`` sorted samples: ``floor(r * M / N)``."""
    return (
        torch.arange(n_samples, device=device, dtype=torch.int64)
        .mul_(n_bins)
        .div_(n_samples, rounding_mode="floor")
    )


def _quantile_bins_of_sorted(sorted_conf: Tensor, n_bins: int) -> Tensor:
    """Equal-mass bin of each sorted confidence, keeping ties of equal confidence in one bin.

    Rank ``r`` goes to bin ``floor(r * M / N)``, except that every sample of a group of equal
    confidences goes to the bin of the group's first rank (so a bin may end up empty).  Linear time on
    the already sorted confidences: the bin is computed once per group (from the group's first rank)
    and spread to the group's members through the running group id, so the temporaries are one bool,
    one group id and the result per sample.
    """
    n = sorted_conf.shape[0]
    if n < 2:
        return _quantile_bin_index(n, n_bins, sorted_conf.device)
    new_group = torch.ones(n, dtype=torch.bool, device=sorted_conf.device)
    torch.ne(sorted_conf[1:], sorted_conf[:-1], out=new_group[1:])
    starts = torch.nonzero(new_group).squeeze(1)  # first rank of every group (G values)
    group_bins = starts.mul_(n_bins).div_(n, rounding_mode="floor")
    group_id = torch.cumsum(new_group, 0).sub_(1)
    del new_group
    return group_bins[group_id]


def _top_label_quantile_stats(
    scores: Tensor, labels: Tensor, n_bins: int, inputs: str
) -> tuple[_BinStats, Tensor]:
    """Equal-mass top-label bin statistics and the sorted confidences (needs O(N) memory: one sort)."""
    conf, correct = _top_label(scores, labels, inputs)
    sconf, scorrect = _sort_by_confidence(conf, correct)
    stats = _BinStats.zeros(n_bins, scores.device)
    stats.accumulate_(_quantile_bins_of_sorted(sconf, n_bins), sconf, scorrect)
    return stats, sconf


def _prepare(
    logits: object, labels: object, inputs: str, name: str = "logits", *, warn_probs: bool = True
) -> tuple[Tensor, Tensor]:
    """Validate and convert ``(logits, labels)``; labels end up on the scores' device."""
    scores = check_scores(logits, inputs, name, warn_probs=warn_probs, stacklevel=4)
    y = check_labels(labels, scores.shape[0], scores.shape[1])
    return scores, y.to(scores.device)


def _top_label_stats(scores: Tensor, labels: Tensor, n_bins: int, binning: str, inputs: str) -> _BinStats:
    if binning == "uniform":
        return _top_label_uniform_stats(scores, labels, n_bins, inputs)
    return _top_label_quantile_stats(scores, labels, n_bins, inputs)[0]


# ---------------------------------------------------------------------------------------------------------
# Reductions of bin statistics to scalars
# ---------------------------------------------------------------------------------------------------------
def _calibration_error_from_counts(
    count: np.ndarray, positive: np.ndarray, score_sum: np.ndarray, norm: str, n_total: int | None = None
) -> float:
    """Binned calibration error from per-bin counts / positives / score sums (empty bins ignored)."""
    n = int(count.sum()) if n_total is None else n_total
    nonempty = count > 0
    if n == 0 or not nonempty.any():
        return 0.0
    cnt = count[nonempty].astype(np.float64)
    gap = np.abs(positive[nonempty] / cnt - score_sum[nonempty] / cnt)
    if norm == "l1":
        return float(np.sum(cnt * gap) / n)
    if norm == "l2":
        return float(math.sqrt(float(np.sum(cnt * gap * gap)) / n))
    return float(gap.max())


def _debiased_l2_from_counts(
    count: np.ndarray, positive: np.ndarray, score_sum: np.ndarray, *, squared: bool
) -> float:
    """Kumar et al. (2019) debiased estimate of the squared binned L2 calibration error."""
    n = int(count.sum())
    use = count >= 2
    if n == 0 or not use.any():
        warnings.warn(
            f"debiased L2 calibration error is undefined: no bin holds two or more samples ({n} sample(s)); "
            "returning NaN. Use fewer bins (n_bins) or more samples.",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return math.nan
    cnt = count[use].astype(np.float64)
    acc = positive[use] / cnt
    conf = score_sum[use] / cnt
    per_bin = (conf - acc) ** 2 - acc * (1.0 - acc) / (cnt - 1.0)
    sq = float(np.sum(cnt * per_bin) / n)
    if squared:
        return sq
    return math.sqrt(max(sq, 0.0))


# ---------------------------------------------------------------------------------------------------------
# Classwise statistics, Brier, NLL (per-row quantities; exact fixed-point sums)
# ---------------------------------------------------------------------------------------------------------
def _probabilities(x: Tensor, inputs: str) -> Tensor:
    """Softmax of logits in their dtype (or the probabilities as given)."""
    return torch.softmax(x, dim=1) if inputs == "logits" else x


def _classwise_stats_add(stats: _BinStats, x: Tensor, y: Tensor, n_bins: int, inputs: str) -> None:
    """Accumulate classwise bins (``num_classes * n_bins`` slots, class-major) for a block of rows."""
    n, c = x.shape
    step = max(1, _CLASSWISE_ELEMS // c)
    cols = torch.arange(c, device=x.device, dtype=torch.int64) * n_bins
    for start in range(0, n, step):
        p = _probabilities(x[start : start + step], inputs)
        yy = y[start : start + step]
        bins = (_uniform_bin_index(p, n_bins) + cols).reshape(-1)
        is_label = torch.zeros_like(p, dtype=torch.bool)
        is_label.scatter_(1, yy.unsqueeze(1), True)
        stats.accumulate_(bins, p.reshape(-1), is_label.reshape(-1))


# Rows per block of the per-sample Brier / NLL kernels: their float64 temporaries stay a few MiB
# (O(block * C)), so the extra peak memory of a metric is O(N) float64 values, not O(N * C).
_PER_SAMPLE_ELEMS = 2**18


def _blockwise(x: Tensor, y: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``fn`` applied to row blocks of ``(x, y)``; the per-row float64 results concatenated, shape (N,)."""
    n, c = x.shape
    step = max(1, _PER_SAMPLE_ELEMS // max(1, c))
    if n <= step:
        return fn(x, y)
    out = torch.empty(n, dtype=torch.float64, device=x.device)
    for start in range(0, n, step):
        out[start : start + step] = fn(x[start : start + step], y[start : start + step])
    return out


def _brier_block(x: Tensor, y: Tensor, inputs: str) -> Tensor:
    p = _probabilities(x, inputs).to(torch.float64, copy=True)  # never modify the caller's tensor
    p[torch.arange(p.shape[0], device=p.device), y] -= 1.0
    return (p * p).sum(1)


def _brier_per_sample(x: Tensor, y: Tensor, inputs: str) -> Tensor:
    """``sum_j (p_ij - 1[y_i = j])**2`` per row, in float64 (blocks of rows: O(N) extra memory)."""
    return _blockwise(x, y, lambda xb, yb: _brier_block(xb, yb, inputs))


def _nll_block(x: Tensor, y: Tensor, inputs: str) -> Tensor:
    xd = x.to(torch.float64)
    picked = xd.gather(1, y.unsqueeze(1)).squeeze(1)
    if inputs == "logits":
        return torch.logsumexp(xd, dim=1) - picked
    return -torch.log(picked)


def _nll_per_sample(x: Tensor, y: Tensor, inputs: str) -> Tensor:
    """``-log p_{i, y_i}`` per row, in float64 (``inf`` where a declared probability is 0); blockwise."""
    return _blockwise(x, y, lambda xb, yb: _nll_block(xb, yb, inputs))


_MAX_FIXED_VALUE = float(2**22)


def _fixed_sum_add(whole: Tensor, frac: Tensor, values: Tensor, what: str) -> int:
    """Add finite per-sample values exactly into a 1-slot fixed-point pair; return the number of +inf."""
    finite = torch.isfinite(values)
    n_inf = int((~finite).sum())
    if n_inf:
        values = values[finite]
    if values.numel() and float(values.max()) >= _MAX_FIXED_VALUE:
        raise ValueError(
            f"a per-sample {what} of {float(values.max()):.4g} exceeds {_MAX_FIXED_VALUE:.0f}: the logits "
            f"are extreme (|logit| differences of millions); rescale them before computing metrics."
        )
    _fixed_add(whole, frac, values, None)
    return n_inf


# ---------------------------------------------------------------------------------------------------------
# Public functional API
# ---------------------------------------------------------------------------------------------------------
def expected_calibration_error(
    logits: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    n_bins: int = 15,
    binning: Binning = "uniform",
    norm: Norm = "l1",
    inputs: InputKind = "logits",
) -> float:
    r"""Top-label expected calibration error (Guo et al., 2017).

    .. math:: \mathrm{ECE} = \sum_{m} \frac{|B_m|}{N} \left|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\right|

    with ``norm="l2"`` the root-mean-square version
    :math:`\sqrt{\sum_m \frac{|B_m|}{N} (\mathrm{acc}(B_m) - \mathrm{conf}(B_m))^2}` and with
    ``norm="max"`` the maximum gap over non-empty bins (MCE).

    Parameters
    ----------
    logits : Tensor or ndarray, shape (N, C)
        Logits (default) or probabilities (with ``inputs="probs"``), on any device.
    labels : Tensor or ndarray, shape (N,)
        Integer class indices in ``[0, C)``.
    n_bins : int, default 15
        Number of bins ``M``.
    binning : {"uniform", "quantile"}, default "uniform"
        ``"uniform"``: equal-width, right-closed bins ``(m/M, (m+1)/M]`` (first bin ``[0, 1/M]``).
        ``"quantile"``: equal-mass bins -- samples sorted by confidence are split by rank ``r`` into bin
        ``floor(r M / N)`` (adaptive ECE, Nixon et al. 2019); samples of equal confidence always share
        the bin of their first rank (empty bins are skipped).
    norm : {"l1", "l2", "max"}, default "l1"
        How per-bin gaps are combined (see above).
    inputs : {"logits", "probs"}, default "logits"
        What ``logits`` holds.  Probabilities must lie in [0, 1] with rows summing to 1 (within 1e-4).

    Returns
    -------
    float
        The calibration error in ``[0, 1]``.

    Notes
    -----
    Confidence ``c = max_j p_j`` goes to bin ``ceil(c M) - 1`` (computed in the confidence's dtype); a
    confidence of exactly 1 lands in the last bin, exactly 0 in the first.  Ties in the maximum are
    resolved like ``argmax`` (first index).  Per-bin sums are exact (int64 fixed point), so the value is
    independent of sample order and identical to :class:`~prunesafe.metrics.CalibrationAccumulator`.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import expected_calibration_error
    >>> probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.45, 0.55]])
    >>> labels = torch.tensor([0, 1, 1, 1])
    >>> round(expected_calibration_error(probs, labels, n_bins=5, inputs="probs"), 4)
    0.4
    """
    m = check_n_bins(n_bins)
    check_choice(binning, "binning", _BINNINGS)
    check_choice(norm, "norm", _NORMS)
    scores, y = _prepare(logits, labels, inputs)
    stats = _top_label_stats(scores, y, m, binning, inputs)
    return _calibration_error_from_counts(*stats.as_numpy(), norm=norm)


def maximum_calibration_error(
    logits: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    n_bins: int = 15,
    binning: Binning = "uniform",
    inputs: InputKind = "logits",
) -> float:
    r"""Maximum calibration error :math:`\max_m |\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|` (non-empty bins).

    Same binning conventions as :func:`expected_calibration_error` (it is that function with
    ``norm="max"``).  Note MCE is dominated by sparsely populated bins; report bin counts with it.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import maximum_calibration_error
    >>> probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.45, 0.55]])
    >>> round(maximum_calibration_error(probs, torch.tensor([0, 1, 1, 1]), n_bins=5, inputs="probs"), 4)
    0.45
    """
    return expected_calibration_error(
        logits, labels, n_bins=n_bins, binning=binning, norm="max", inputs=inputs
    )


def classwise_calibration_error(
    logits: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    n_bins: int = 15,
    binning: Binning = "uniform",
    norm: Norm = "l1",
    inputs: InputKind = "logits",
) -> float:
    r"""Classwise (marginal) calibration error, averaged over classes (Kull et al., 2019; Kumar et al., 2019).

    .. math::
        \mathrm{cwECE} = \frac{1}{C} \sum_{j=1}^{C} \sum_m \frac{|B_{jm}|}{N}
        \left| \frac{1}{|B_{jm}|}\sum_{i \in B_{jm}} (1[y_i = j] - p_{ij}) \right|

    where :math:`B_{jm}` holds the samples whose probability for class ``j`` falls in bin ``m`` of class
    ``j``'s binning (equal-width: right-closed, a probability of exactly 0 goes to the first bin;
    equal-mass: the ``N`` values ``p_ij`` of the class split by rank, ties kept together, as for the
    top-label ECE).  With per-class errors
    :math:`\mathrm{ce}_j = (\sum_m \frac{|B_{jm}|}{N} |\mathrm{gap}_{jm}|^p)^{1/p}` the result is Kumar et
    al.'s marginal calibration error :math:`(\frac{1}{C}\sum_j \mathrm{ce}_j^p)^{1/p}`: ``norm="l1"``
    (p = 1) is the mean of the per-class ECEs, ``norm="l2"`` (p = 2) is
    :math:`\sqrt{\frac1C \sum_j \mathrm{ce}_j^2}` (not the mean of per-class RMS errors), and ``norm="max"``
    (p -> inf) is the largest gap over all classes and non-empty bins.  Memory is O(C * n_bins) for
    equal-width bins; equal-mass bins sort each class's N probabilities (O(N) extra).

    Parameters
    ----------
    logits, labels, n_bins, binning, norm, inputs
        As in :func:`expected_calibration_error`.

    Returns
    -------
    float

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import classwise_calibration_error
    >>> probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.45, 0.55]])
    >>> round(classwise_calibration_error(probs, torch.tensor([0, 1, 1, 1]), n_bins=5, inputs="probs"), 4)
    0.4
    """
    m = check_n_bins(n_bins)
    check_choice(binning, "binning", _BINNINGS)
    check_choice(norm, "norm", _NORMS)
    scores, y = _prepare(logits, labels, inputs)
    c = scores.shape[1]
    stats = _BinStats.zeros(c * m, scores.device)
    if binning == "uniform":
        _classwise_stats_add(stats, scores, y, m, inputs)
    else:
        _classwise_quantile_stats_add(stats, scores, y, m, inputs)
    return _classwise_from_counts(*stats.as_numpy(), n_classes=c, n_bins=m, norm=norm)


def _classwise_quantile_stats_add(stats: _BinStats, x: Tensor, y: Tensor, n_bins: int, inputs: str) -> None:
    """Equal-mass classwise bins: class ``j``'s N probabilities are sorted and split by rank."""
    c = x.shape[1]
    probs = _probabilities(x, inputs)
    for j in range(c):
        is_label = y == j
        sp, spos = _sort_by_confidence(probs[:, j].contiguous(), is_label)
        bins = _quantile_bins_of_sorted(sp, n_bins) + j * n_bins
        stats.accumulate_(bins, sp, spos)


def _classwise_from_counts(
    count: np.ndarray, positive: np.ndarray, score_sum: np.ndarray, *, n_classes: int, n_bins: int, norm: str
) -> float:
    """Kumar et al.'s marginal calibration error ``(mean_j ce_j^p)^(1/p)`` from class-major bin counts."""
    cnt = count.reshape(n_classes, n_bins)
    pos = positive.reshape(n_classes, n_bins)
    ssum = score_sum.reshape(n_classes, n_bins)
    per_class = np.array(
        [_calibration_error_from_counts(cnt[j], pos[j], ssum[j], norm) for j in range(n_classes)]
    )
    if norm == "l1":
        return float(np.mean(per_class))
    if norm == "l2":
        return float(math.sqrt(float(np.mean(per_class**2))))
    return float(np.max(per_class))


def accuracy(
    logits: Tensor | np.ndarray, labels: Tensor | np.ndarray, *, inputs: InputKind = "logits"
) -> float:
    r"""Top-1 accuracy :math:`\frac{1}{N}\sum_i 1[\operatorname{argmax}_j p_{ij} = y_i]`.

    The prediction is the first maximal index (like ``torch.argmax``); softmax does not change it, so
    ``inputs`` only selects the validation (probabilities must lie in [0, 1] and sum to 1).  The count of
    correct predictions is an exact integer.  Usable as ``metric_fn`` of :func:`bootstrap_ci` and
    :func:`~prunesafe.metrics.paired_bootstrap_ci`.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import accuracy
    >>> accuracy(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 0, 0]))
    0.6666666666666666
    """
    scores, y = _prepare(logits, labels, inputs, warn_probs=False)
    correct = 0
    step = _chunk_rows(scores.shape[1])
    for start in range(0, scores.shape[0], step):
        sl = slice(start, start + step)
        correct += int((scores[sl].argmax(1) == y[sl]).sum())
    return correct / scores.shape[0]


def brier_score(
    logits: Tensor | np.ndarray, labels: Tensor | np.ndarray, *, inputs: InputKind = "logits"
) -> float:
    r"""Multiclass Brier score (Brier, 1950): :math:`\frac{1}{N}\sum_i \sum_j (p_{ij} - 1[y_i = j])^2`.

    Summed over classes (range ``[0, 2]``), not averaged over them.  Per-sample terms are computed in
    float64 and summed exactly.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import brier_score
    >>> probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    >>> brier_score(probs, torch.tensor([0, 1]), inputs="probs")
    0.25
    """
    scores, y = _prepare(logits, labels, inputs)
    whole = torch.zeros(1, dtype=torch.int64, device=scores.device)
    frac = torch.zeros_like(whole)
    _fixed_sum_add(whole, frac, _brier_per_sample(scores, y, inputs), "Brier term")
    return float(_fixed_to_float(whole, frac)[0] / scores.shape[0])


def negative_log_likelihood(
    logits: Tensor | np.ndarray, labels: Tensor | np.ndarray, *, inputs: InputKind = "logits"
) -> float:
    r"""Mean negative log-likelihood :math:`-\frac{1}{N}\sum_i \log p_{i, y_i}` (natural log).

    Computed in float64 with a stable log-sum-exp.  With ``inputs="probs"`` a zero probability on the
    true class gives ``inf`` (no silent clipping).

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import negative_log_likelihood
    >>> round(negative_log_likelihood(torch.zeros(3, 4), torch.tensor([0, 1, 2])), 6)  # log(4)
    1.386294
    """
    scores, y = _prepare(logits, labels, inputs)
    whole = torch.zeros(1, dtype=torch.int64, device=scores.device)
    frac = torch.zeros_like(whole)
    n_inf = _fixed_sum_add(whole, frac, _nll_per_sample(scores, y, inputs), "NLL")
    if n_inf:
        return math.inf
    return float(_fixed_to_float(whole, frac)[0] / scores.shape[0])


def debiased_l2_calibration_error(
    logits: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    n_bins: int = 15,
    binning: Binning = "uniform",
    inputs: InputKind = "logits",
    squared: bool = False,
) -> float:
    r"""Debiased top-label L2 calibration error (Kumar, Liang & Ma, 2019, "Verified uncertainty calibration").

    The plug-in estimate :math:`\sum_m \frac{|B_m|}{N}(\mathrm{conf}_m - \mathrm{acc}_m)^2` is biased
    upwards by the sampling noise of :math:`\mathrm{acc}_m`; the debiased estimator subtracts that noise,

    .. math::
        \widehat{\mathrm{CE}^2} = \sum_{m: |B_m| \ge 2} \frac{|B_m|}{N}
        \left[(\mathrm{conf}_m - \mathrm{acc}_m)^2
        - \frac{\mathrm{acc}_m (1 - \mathrm{acc}_m)}{|B_m| - 1}\right],

    (bins with fewer than two samples contribute 0) and returns
    :math:`\sqrt{\max(\widehat{\mathrm{CE}^2}, 0)}`.  When no bin holds two samples the estimator is
    undefined: the result is NaN, with an :class:`UndefinedMetricWarning` (not 0.0, which would read as
    "perfectly calibrated").

    Parameters
    ----------
    logits, labels, n_bins, binning, inputs
        As in :func:`expected_calibration_error`.  Kumar et al. recommend ``binning="quantile"``.
    squared : bool, default False
        Return the (possibly negative) unbiased estimate of the *squared* error instead.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import debiased_l2_calibration_error
    >>> g = torch.Generator().manual_seed(0)
    >>> p = torch.rand(20000, generator=g) * 0.5 + 0.5       # confidence of class 0
    >>> probs = torch.stack([p, 1 - p], 1)
    >>> labels = (torch.rand(20000, generator=g) > p).long()  # perfectly calibrated
    >>> debiased_l2_calibration_error(probs, labels, inputs="probs") < 0.01
    True
    """
    m = check_n_bins(n_bins)
    check_choice(binning, "binning", _BINNINGS)
    scores, y = _prepare(logits, labels, inputs)
    stats = _top_label_stats(scores, y, m, binning, inputs)
    return _debiased_l2_from_counts(*stats.as_numpy(), squared=squared)


# ---------------------------------------------------------------------------------------------------------
# Bootstrap confidence intervals live in prunesafe.metrics.bootstrap (which imports the metrics above);
# re-exported here so that ``from prunesafe.metrics.calibration import bootstrap_ci`` keeps working.
# ---------------------------------------------------------------------------------------------------------
from prunesafe.metrics.bootstrap import BootstrapResult, bootstrap_ci  # noqa: E402
