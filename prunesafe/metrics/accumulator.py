"""Streaming calibration metrics with O(n_bins x num_classes) memory and an exact distributed ``sync``.

The accumulator keeps only integer state: int64 counts and int64 fixed-point sums (40 fractional bits)
per bin, plus fixed-point sums of the per-sample Brier and NLL terms.  Integer addition is associative,
so ``update`` over any batching, ``merge`` of partial accumulators and ``sync`` over any number of
processes all give **exactly** the result of the one-shot functions in
:mod:`prunesafe.metrics.calibration` (which run the same binning code).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prunesafe.metrics._checks import InputKind, check_choice, check_n_bins
from prunesafe.metrics.calibration import (
    FRAC_BITS,
    Binning,
    _BinStats,
    _brier_per_sample,
    _calibration_error_from_counts,
    _carry,
    _classwise_from_counts,
    _classwise_stats_add,
    _debiased_l2_from_counts,
    _fixed_sum_add,
    _nll_per_sample,
    _prepare,
    _top_label_uniform_stats,
)
from prunesafe.metrics.reliability import ReliabilityDiagram, _diagram_from_stats

__all__ = ["CalibrationAccumulator", "CalibrationResult"]


@dataclass(frozen=True)
class CalibrationResult:
    """All streaming calibration metrics of one :class:`CalibrationAccumulator`.

    Attributes
    ----------
    ece, mce, rmsce : float
        Top-label equal-width calibration error with norm l1, max and l2.
    debiased_l2 : float
        Kumar et al. (2019) debiased L2 calibration error (equal-width bins).
    classwise_ece : float
        Classwise (marginal) ECE averaged over classes.
    brier : float
        Multiclass Brier score (sum over classes).
    nll : float
        Mean negative log-likelihood (``inf`` if a declared probability of a true class is 0).
    accuracy : float
        Top-1 accuracy.
    n_samples, n_bins, num_classes : int

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import CalibrationAccumulator
    >>> acc = CalibrationAccumulator(n_bins=1)
    >>> acc.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    >>> r = acc.compute()
    >>> r.accuracy, r.n_samples, sorted(r.to_dict())[:3]
    (0.5, 2, ['accuracy', 'brier', 'classwise_ece'])
    """

    ece: float
    mce: float
    rmsce: float
    debiased_l2: float
    classwise_ece: float
    brier: float
    nll: float
    accuracy: float
    n_samples: int
    n_bins: int
    num_classes: int

    def to_dict(self) -> dict[str, float | int]:
        """The fields as a plain dict (``pandas.DataFrame([r.to_dict()])`` gives one row)."""
        return asdict(self)


class CalibrationAccumulator:
    """Streaming top-label / classwise calibration metrics, Brier score and NLL.

    Parameters
    ----------
    n_bins : int, default 15
        Number of equal-width, right-closed bins (as in
        :func:`~prunesafe.metrics.expected_calibration_error`).
    num_classes : int, optional
        Number of classes; inferred from the first batch when None.
    inputs : {"logits", "probs"}, default "logits"
        What ``update`` receives.  Keyword-only (passing it as the third positional argument still works
        but raises a DeprecationWarning).
    binning : {"uniform", "quantile"}, default "uniform"
        Only equal-width bins can stream: equal-mass ("quantile") bin edges depend on the whole sample,
        which needs O(N) memory; passing ``"quantile"`` raises a ValueError that says what to do.
    device : torch.device or str, optional
        Where the state lives; defaults to the device of the first batch (use ``"cuda"`` with NCCL).

    Raises
    ------
    ValueError
        ``merge(self)`` (it would double every count).
    RuntimeError
        ``update``/``merge``/``sync`` after :meth:`sync` (the ranks would diverge); :meth:`reset` first.

    Notes
    -----
    Memory is ``O(n_bins * num_classes)`` int64 values regardless of the number of samples.  The result
    equals the one-shot functions on the concatenated data exactly, for any batching and any number of
    processes.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import CalibrationAccumulator, expected_calibration_error
    >>> g = torch.Generator().manual_seed(0)
    >>> logits, labels = torch.randn(1000, 10, generator=g), torch.randint(0, 10, (1000,), generator=g)
    >>> acc = CalibrationAccumulator(n_bins=15)
    >>> for i in range(0, 1000, 128):
    ...     acc.update(logits[i : i + 128], labels[i : i + 128])
    >>> acc.compute().ece == expected_calibration_error(logits, labels, n_bins=15)
    True
    """

    def __init__(
        self,
        n_bins: int = 15,
        num_classes: int | None = None,
        *args: Any,
        inputs: InputKind = "logits",
        binning: Binning = "uniform",
        device: torch.device | str | None = None,
    ) -> None:
        if args:  # the old third positional parameter
            if len(args) > 1:
                raise TypeError(
                    f"CalibrationAccumulator takes at most 2 positional arguments, got {2 + len(args)}"
                )
            warnings.warn(
                "passing `inputs` positionally is deprecated; use CalibrationAccumulator(..., inputs=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            inputs = args[0]
        self.n_bins = check_n_bins(n_bins)
        self.inputs: InputKind = check_choice(inputs, "inputs", ("logits", "probs"))
        if binning == "quantile":
            raise ValueError(
                "`binning='quantile'` cannot be streamed in O(n_bins) memory: equal-mass bin edges are "
                "quantiles of the whole sample. Use binning='uniform' here, or collect the logits "
                "(O(N) memory) and call expected_calibration_error(..., binning='quantile') once."
            )
        check_choice(binning, "binning", ("uniform",))
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
        ):
            raise ValueError(f"`num_classes` must be an integer >= 2 or None (infer), got {num_classes!r}.")
        self.num_classes = num_classes
        self._device = torch.device(device) if device is not None else None
        self._synced = False
        self._allocated = False
        if num_classes is not None and self._device is not None:
            self._allocate(num_classes, self._device)

    # -- state ---------------------------------------------------------------------------------------
    def _allocate(self, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self._device = device
        self._top = _BinStats.zeros(self.n_bins, device)
        self._cls = _BinStats.zeros(num_classes * self.n_bins, device)
        # scalars: n_samples, brier (whole, frac), nll (whole, frac), nll_inf
        self._scalars = torch.zeros(6, dtype=torch.int64, device=device)
        self._allocated = True

    def _state_tensors(self) -> list[Tensor]:
        return [
            self._top.count,
            self._top.positive,
            self._top.score_whole,
            self._top.score_frac,
            self._cls.count,
            self._cls.positive,
            self._cls.score_whole,
            self._cls.score_frac,
            self._scalars,
        ]

    def _renormalise(self) -> None:
        for stats in (self._top, self._cls):
            _carry(stats.score_whole, stats.score_frac)
        s = self._scalars
        _carry(s[1:2], s[2:3])
        _carry(s[3:4], s[4:5])

    def _check_open(self, what: str) -> None:
        if self._synced:
            raise RuntimeError(
                f"{what} after sync(): this accumulator already holds every rank's totals; adding more on "
                "one rank would make the ranks disagree. Call reset() to start a new evaluation."
            )

    @property
    def n_samples(self) -> int:
        """Number of samples accumulated so far."""
        return int(self._scalars[0]) if self._allocated else 0

    def reset(self) -> None:
        """Forget all samples (keeps ``n_bins``, ``num_classes`` and the device)."""
        if self._allocated and self.num_classes is not None and self._device is not None:
            self._allocate(self.num_classes, self._device)
        self._synced = False

    # -- API -------------------------------------------------------------------------------------------
    def update(self, logits: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> None:
        """Add a batch of ``(N, C)`` logits/probabilities and ``(N,)`` integer labels.

        Examples
        --------
        >>> import torch
        >>> from prunesafe.metrics import CalibrationAccumulator
        >>> acc = CalibrationAccumulator(n_bins=10)
        >>> acc.update(torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
        >>> acc.n_samples
        8
        """
        self._check_open("update()")
        scores, y = _prepare(logits, labels, self.inputs)
        c = scores.shape[1]
        if self.num_classes is not None and c != self.num_classes:
            raise ValueError(
                f"`logits` has {c} columns but this accumulator has num_classes={self.num_classes}; "
                f"pass batches from the same model (or create a new accumulator)."
            )
        if not self._allocated:
            self._allocate(c, self._device if self._device is not None else scores.device)
        if scores.device != self._device:
            scores, y = scores.to(self._device), y.to(self._device)
        m = self.n_bins
        self._top.add_(_top_label_uniform_stats(scores, y, m, self.inputs))
        _classwise_stats_add(self._cls, scores, y, m, self.inputs)
        s = self._scalars
        _fixed_sum_add(s[1:2], s[2:3], _brier_per_sample(scores, y, self.inputs), "Brier term")
        s[5] += _fixed_sum_add(s[3:4], s[4:5], _nll_per_sample(scores, y, self.inputs), "NLL")
        s[0] += scores.shape[0]

    def merge(self, other: CalibrationAccumulator) -> CalibrationAccumulator:
        """Add the state of ``other`` (same ``n_bins`` / ``num_classes`` / ``inputs``) into ``self``.

        Examples
        --------
        >>> import torch
        >>> from prunesafe.metrics import CalibrationAccumulator
        >>> a, b = CalibrationAccumulator(), CalibrationAccumulator()
        >>> a.update(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]))
        >>> b.update(torch.randn(4, 3), torch.tensor([2, 2, 1, 0]))
        >>> a.merge(b).n_samples
        9
        """
        if not isinstance(other, CalibrationAccumulator):
            raise TypeError(f"`other` must be a CalibrationAccumulator, got {type(other).__name__}.")
        if other is self:
            raise ValueError("cannot merge an accumulator into itself: that would count every sample twice.")
        self._check_open("merge()")
        if other.n_bins != self.n_bins or other.inputs != self.inputs:
            raise ValueError(
                f"cannot merge accumulators with different settings: n_bins {self.n_bins} vs {other.n_bins}, "
                f"inputs {self.inputs!r} vs {other.inputs!r}."
            )
        both_set = self.num_classes is not None and other.num_classes is not None
        if both_set and other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge accumulators with num_classes {self.num_classes} and {other.num_classes}."
            )
        if not other._allocated:
            return self
        if self._allocated and other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge accumulators with num_classes {self.num_classes} and {other.num_classes}."
            )
        if not self._allocated:
            assert other.num_classes is not None
            assert other._device is not None
            self._allocate(other.num_classes, self._device if self._device is not None else other._device)
        for mine, theirs in zip(self._state_tensors(), other._state_tensors(), strict=True):
            mine += theirs.to(mine.device)
        self._renormalise()
        return self

    def sync(self, group: Any = None) -> CalibrationAccumulator:
        """All-reduce the state over ``torch.distributed`` so that every rank holds the global result.

        Call it once, after the last ``update`` on every rank (it is a collective: all ranks must call
        it).  Counts and fixed-point sums are int64, so the all-reduce is exact and the result equals the
        one-shot metrics on the union of all ranks' data.  A no-op when ``torch.distributed`` is not
        initialised.  Works with any backend that supports int64 SUM/MAX (gloo, NCCL).

        Examples
        --------
        >>> from prunesafe.metrics import CalibrationAccumulator
        >>> acc = CalibrationAccumulator()
        >>> acc.sync() is acc   # not distributed: nothing to do
        True
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        if self._synced:
            raise RuntimeError(
                "this accumulator was already synced; a second sync would double count. "
                "Call reset() before accumulating a new evaluation."
            )
        device = self._device if self._device is not None else torch.device("cpu")
        if dist.get_backend(group) == "nccl" and device.type != "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        big = 2**62
        k = self.num_classes or 0
        meta = torch.tensor(
            [self.n_bins, -self.n_bins, k, -(k if k else big)], dtype=torch.int64, device=device
        )
        dist.all_reduce(meta, op=dist.ReduceOp.MAX, group=group)
        n_max, n_min, k_max, k_min = int(meta[0]), -int(meta[1]), int(meta[2]), -int(meta[3])
        if n_max != n_min:
            raise ValueError(f"ranks use different n_bins ({n_min}..{n_max}); use one value on every rank.")
        if k_max == 0:
            return self  # nobody saw data
        if k_min != k_max:
            raise ValueError(f"ranks saw different numbers of classes ({k_min}..{k_max}); set num_classes.")
        if not self._allocated:
            self._allocate(k_max, device)
        local = self._state_tensors()
        flat = torch.cat([t.to(device) for t in local])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        offset = 0
        for t in local:
            t.copy_(flat[offset : offset + t.numel()].to(t.device))
            offset += t.numel()
        self._renormalise()
        self._synced = True
        return self

    def compute(self) -> CalibrationResult:
        """Compute every metric from the accumulated state.

        Examples
        --------
        >>> import torch
        >>> from prunesafe.metrics import CalibrationAccumulator
        >>> acc = CalibrationAccumulator(n_bins=10, inputs="probs")
        >>> acc.update(torch.tensor([[0.75, 0.25], [0.75, 0.25]]), torch.tensor([0, 1]))
        >>> r = acc.compute()
        >>> r.ece, r.accuracy
        (0.25, 0.5)
        """
        if not self._allocated or self.n_samples == 0:
            raise ValueError("no samples accumulated; call update(logits, labels) before compute().")
        assert self.num_classes is not None
        n = self.n_samples
        count, positive, score_sum = self._top.as_numpy()
        s = self._scalars.detach().cpu()
        brier = (float(s[1]) + float(s[2]) / 2.0**FRAC_BITS) / n
        nll = float("inf") if int(s[5]) else (float(s[3]) + float(s[4]) / 2.0**FRAC_BITS) / n
        return CalibrationResult(
            ece=_calibration_error_from_counts(count, positive, score_sum, "l1"),
            mce=_calibration_error_from_counts(count, positive, score_sum, "max"),
            rmsce=_calibration_error_from_counts(count, positive, score_sum, "l2"),
            debiased_l2=_debiased_l2_from_counts(count, positive, score_sum, squared=False),
            classwise_ece=_classwise_from_counts(
                *self._cls.as_numpy(), n_classes=self.num_classes, n_bins=self.n_bins, norm="l1"
            ),
            brier=brier,
            nll=nll,
            accuracy=float(positive.sum()) / n,
            n_samples=n,
            n_bins=self.n_bins,
            num_classes=self.num_classes,
        )

    def reliability_diagram(self) -> ReliabilityDiagram:
        """The reliability-diagram data of the accumulated samples (equal-width bins).

        Examples
        --------
        >>> import torch
        >>> from prunesafe.metrics import CalibrationAccumulator
        >>> acc = CalibrationAccumulator(n_bins=4)
        >>> acc.update(torch.randn(16, 3), torch.randint(0, 3, (16,)))
        >>> int(acc.reliability_diagram().count.sum())
        16
        """
        if not self._allocated or self.n_samples == 0:
            raise ValueError("no samples accumulated; call update(logits, labels) first.")
        return _diagram_from_stats(self._top, self.n_bins, "uniform", None, None)
