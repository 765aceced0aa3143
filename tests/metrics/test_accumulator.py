"""Streaming accumulator: exact equality with the one-shot functions, merge, memory, errors."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunesafe.metrics import (
    CalibrationAccumulator,
    UndefinedMetricWarning,
    brier_score,
    classwise_calibration_error,
    debiased_l2_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_diagram,
)


def _data(n: int, k: int, seed: int, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * scale, torch.randint(0, k, (n,), generator=g)


def _one_shot(logits: torch.Tensor, labels: torch.Tensor, n_bins: int, inputs: str = "logits") -> dict:
    kw = {"n_bins": n_bins, "inputs": inputs}
    return {
        "ece": expected_calibration_error(logits, labels, **kw),  # type: ignore[arg-type]
        "mce": maximum_calibration_error(logits, labels, **kw),  # type: ignore[arg-type]
        "rmsce": expected_calibration_error(logits, labels, norm="l2", **kw),  # type: ignore[arg-type]
        "debiased_l2": debiased_l2_calibration_error(logits, labels, **kw),  # type: ignore[arg-type]
        "classwise_ece": classwise_calibration_error(logits, labels, **kw),  # type: ignore[arg-type]
        "brier": brier_score(logits, labels, inputs=inputs),  # type: ignore[arg-type]
        "nll": negative_log_likelihood(logits, labels, inputs=inputs),  # type: ignore[arg-type]
    }


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 400),
    k=st.integers(2, 15),
    seed=st.integers(0, 10_000),
    n_bins=st.integers(1, 25),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_streaming_equals_one_shot_exactly(n: int, k: int, seed: int, n_bins: int, cuts: list[int]) -> None:
    logits, labels = _data(n, k, seed)
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    acc = CalibrationAccumulator(n_bins=n_bins)
    for lo, hi in itertools.pairwise(bounds):
        acc.update(logits[lo:hi], labels[lo:hi])
    with warnings.catch_warnings():  # debiased L2 is NaN (with a warning) when no bin holds 2 samples
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        res = acc.compute()
        ref = _one_shot(logits, labels, n_bins)
    for key, value in ref.items():
        got = getattr(res, key)
        assert got == value or (math.isnan(got) and math.isnan(value)), key  # exact, not approximate
    assert res.n_samples == n
    assert res.accuracy == float((logits.argmax(1) == labels).double().mean())


def test_batch_size_one_and_probs_inputs() -> None:
    logits, labels = _data(97, 5, seed=1)
    probs = torch.softmax(logits.double(), 1)
    acc = CalibrationAccumulator(n_bins=10, inputs="probs")
    for i in range(97):
        acc.update(probs[i : i + 1], labels[i : i + 1])
    ref = _one_shot(probs, labels, 10, inputs="probs")
    res = acc.compute().to_dict()
    for key, value in ref.items():
        assert res[key] == value, key


def test_merge_equals_single_accumulator() -> None:
    logits, labels = _data(500, 10, seed=2)
    whole = CalibrationAccumulator(n_bins=15)
    whole.update(logits, labels)
    parts = [CalibrationAccumulator(n_bins=15) for _ in range(3)]
    for i, part in enumerate(parts):
        part.update(logits[i::3], labels[i::3])  # interleaved shards: order changes, result must not
    merged = CalibrationAccumulator(n_bins=15)
    for part in parts:
        merged.merge(part)
    assert merged.compute() == whole.compute()
    assert merged.merge(CalibrationAccumulator(n_bins=15)).compute() == whole.compute()  # empty merge


def test_merge_rejects_a_different_declared_num_classes() -> None:
    # regression: merging a 3-class accumulator into an empty num_classes=10 one silently gave 3 classes
    three = CalibrationAccumulator()
    three.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="num_classes 10 and 3"):
        CalibrationAccumulator(num_classes=10).merge(three)
    with pytest.raises(ValueError, match="num_classes 3 and 10"):
        three.merge(CalibrationAccumulator(num_classes=10))  # empty but declared: still a mismatch
    with pytest.raises(ValueError, match="num_classes 5 and 4"):
        CalibrationAccumulator(num_classes=5).merge(CalibrationAccumulator(num_classes=4))
    declared = CalibrationAccumulator(num_classes=3).merge(three)
    assert declared.num_classes == 3
    assert declared.n_samples == 4
    assert CalibrationAccumulator().merge(three).num_classes == 3  # undeclared: inferred from other


def test_reliability_diagram_matches_functional() -> None:
    logits, labels = _data(300, 10, seed=3)
    acc = CalibrationAccumulator(n_bins=12)
    acc.update(logits[:100], labels[:100])
    acc.update(logits[100:], labels[100:])
    a, b = acc.reliability_diagram(), reliability_diagram(logits, labels, n_bins=12)
    for name in ("bin_lower", "bin_upper", "count", "mean_confidence", "accuracy", "gap"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))  # NaN == NaN here
    assert a.ece == b.ece


def test_memory_does_not_grow_with_samples() -> None:
    acc = CalibrationAccumulator(n_bins=15, num_classes=10, device="cpu")
    sizes = [t.numel() for t in acc._state_tensors()]
    for seed in range(3):
        acc.update(*_data(5000, 10, seed=seed))
    assert [t.numel() for t in acc._state_tensors()] == sizes
    assert sum(sizes) == 4 * 15 + 4 * 15 * 10 + 6


def test_quantile_binning_cannot_stream() -> None:
    with pytest.raises(ValueError, match=r"cannot be streamed in O\(n_bins\) memory.*'quantile'\) once"):
        CalibrationAccumulator(binning="quantile")


def test_errors() -> None:
    acc = CalibrationAccumulator(n_bins=5)
    with pytest.raises(ValueError, match=r"no samples accumulated"):
        acc.compute()
    acc.update(*_data(10, 4, seed=4))
    with pytest.raises(ValueError, match=r"has 3 columns but this accumulator has num_classes=4"):
        acc.update(*_data(10, 3, seed=5))
    other = CalibrationAccumulator(n_bins=6)
    other.update(*_data(10, 4, seed=6))
    with pytest.raises(ValueError, match="cannot merge"):
        acc.merge(other)
    with pytest.raises(TypeError, match="CalibrationAccumulator"):
        acc.merge("x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        CalibrationAccumulator(num_classes=1)


def test_reset() -> None:
    acc = CalibrationAccumulator(n_bins=5)
    acc.update(*_data(10, 4, seed=7))
    acc.reset()
    assert acc.n_samples == 0
    logits, labels = _data(20, 4, seed=8)
    acc.update(logits, labels)
    assert acc.compute().ece == expected_calibration_error(logits, labels, n_bins=5)
