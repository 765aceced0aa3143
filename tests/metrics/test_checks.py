"""Every public entry point rejects bad input with an error that names the argument and the fix."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from prunesafe.metrics import (
    CalibrationAccumulator,
    ProbabilitiesAsLogitsWarning,
    brier_score,
    classwise_calibration_error,
    debiased_l2_calibration_error,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_diagram,
)
from prunesafe.metrics._checks import PROB_SUM_ATOL


def _accumulate(logits: Any, labels: Any, **kw: Any) -> None:
    CalibrationAccumulator(**kw).update(logits, labels)


FUNCS: list[Callable[..., Any]] = [
    expected_calibration_error,
    maximum_calibration_error,
    classwise_calibration_error,
    brier_score,
    negative_log_likelihood,
    debiased_l2_calibration_error,
    reliability_diagram,
    fit_temperature,
    _accumulate,
]
BINNED: list[Callable[..., Any]] = [
    expected_calibration_error,
    maximum_calibration_error,
    classwise_calibration_error,
    debiased_l2_calibration_error,
    reliability_diagram,
    _accumulate,
]

pytestmark = pytest.mark.filterwarnings("ignore:NLL is minimised")

LOGITS = torch.randn(6, 3)
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])


@pytest.fixture(params=FUNCS, ids=lambda f: f.__name__)
def fn(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits(fn: Callable[..., Any], bad: float) -> None:
    x = LOGITS.clone()
    x[2, 1] = bad
    with pytest.raises(ValueError, match=r"`logits` contains 1 NaN or infinite"):
        fn(x, LABELS)


@pytest.mark.parametrize("bad_label", [-1, 3, -100])
def test_labels_out_of_range(fn: Callable[..., Any], bad_label: int) -> None:
    y = LABELS.clone()
    y[0] = bad_label
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 2\].*ignore-index"):
        fn(LOGITS, y)


def test_non_integer_labels(fn: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match=r"`labels` must hold integer class indices.*labels.long\(\)"):
        fn(LOGITS, LABELS.float())


def test_one_hot_labels(fn: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"`labels` must have shape \(N,\).*argmax"):
        fn(LOGITS, torch.nn.functional.one_hot(LABELS, 3))


def test_shape_mismatch(fn: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"`labels` has 5 entries but the scores have 6 rows"):
        fn(LOGITS, LABELS[:5])


def test_logits_wrong_rank(fn: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"`logits` must have shape \(N, num_classes\).*reshape"):
        fn(LOGITS.reshape(2, 3, 3), LABELS)


def test_single_column(fn: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"at least 2 columns.*torch.stack"):
        fn(torch.rand(6, 1), LABELS)


def test_empty_input(fn: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"`logits` is empty"):
        fn(torch.empty(0, 3), torch.empty(0, dtype=torch.int64))


def test_integer_logits(fn: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match=r"`logits` must be a floating-point array.*\.float\(\)"):
        fn(torch.ones(6, 3, dtype=torch.int64), LABELS)


def test_not_an_array(fn: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match=r"`logits` must be a torch.Tensor or a numpy.ndarray"):
        fn("logits", LABELS)


def test_probs_outside_unit_interval(fn: Callable[..., Any]) -> None:
    p = torch.softmax(LOGITS, 1)
    p[0] = torch.tensor([1.2, -0.1, -0.1])
    with pytest.raises(ValueError, match=r"declared as probabilities.*outside \[0, 1\].*inputs='logits'"):
        fn(p, LABELS, inputs="probs")


def test_probs_rows_not_summing_to_one(fn: Callable[..., Any]) -> None:
    p = torch.softmax(LOGITS.double(), 1)
    p[3] *= 0.9
    with pytest.raises(ValueError, match=r"row sums to 1.*renormalise"):
        fn(p, LABELS, inputs="probs")


def test_probs_within_tolerance_are_accepted(fn: Callable[..., Any]) -> None:
    p = torch.softmax(LOGITS.double(), 1)
    p[3, 0] += PROB_SUM_ATOL / 2
    fn(p, LABELS, inputs="probs")


def test_logits_are_never_guessed_as_probs() -> None:
    # values inside [0, 1] are still treated as logits unless declared -- but with a warning naming `inputs`
    p = torch.softmax(LOGITS, 1)
    with pytest.warns(ProbabilitiesAsLogitsWarning, match="inputs='probs'"):
        as_logits = expected_calibration_error(p, LABELS)
    as_probs = expected_calibration_error(p, LABELS, inputs="probs")
    assert as_logits != as_probs
    assert as_probs == pytest.approx(expected_calibration_error(torch.log(p), LABELS), abs=1e-6)


@pytest.mark.parametrize(
    "metric",
    [expected_calibration_error, brier_score, negative_log_likelihood, classwise_calibration_error],
    ids=lambda f: f.__name__,
)
def test_probabilities_passed_as_logits_warn(metric: Callable[..., Any]) -> None:
    p = torch.softmax(LOGITS.double() * 3, 1)
    with pytest.warns(ProbabilitiesAsLogitsWarning, match="`logits` looks like probabilities"):
        metric(p, LABELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbabilitiesAsLogitsWarning)
        metric(p, LABELS, inputs="probs")  # declared: silent
        metric(LOGITS, LABELS)  # real logits: silent
        metric(p * 0.5, LABELS)  # in [0, 1] but rows do not sum to 1: plausible logits, silent


def test_probabilities_passed_as_logits_warn_in_fit_temperature_and_accumulator() -> None:
    p = torch.softmax(LOGITS.double(), 1)
    with pytest.warns(ProbabilitiesAsLogitsWarning):
        fit_temperature(p, LABELS)
    acc = CalibrationAccumulator()
    with pytest.warns(ProbabilitiesAsLogitsWarning):
        acc.update(p, LABELS)


def test_bad_inputs_keyword(fn: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"`inputs` must be one of 'logits', 'probs'"):
        fn(LOGITS, LABELS, inputs="softmax")


@pytest.mark.parametrize("f", BINNED, ids=lambda f: f.__name__)
@pytest.mark.parametrize("n_bins", [0, -3])
def test_n_bins_below_one(f: Callable[..., Any], n_bins: int) -> None:
    with pytest.raises(ValueError, match=r"`n_bins` must be >= 1.*n_bins=15"):
        f(LOGITS, LABELS, n_bins=n_bins)


@pytest.mark.parametrize("f", BINNED, ids=lambda f: f.__name__)
@pytest.mark.parametrize("n_bins", [2.5, True, "15"])
def test_n_bins_not_integer(f: Callable[..., Any], n_bins: Any) -> None:
    with pytest.raises(TypeError, match=r"`n_bins` must be a positive integer"):
        f(LOGITS, LABELS, n_bins=n_bins)


def test_bad_norm_and_binning() -> None:
    with pytest.raises(ValueError, match=r"`norm` must be one of 'l1', 'l2', 'max'"):
        expected_calibration_error(LOGITS, LABELS, norm="l3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`binning` must be one of 'uniform', 'quantile'"):
        expected_calibration_error(LOGITS, LABELS, binning="adaptive")  # type: ignore[arg-type]


def test_numpy_object_array() -> None:
    with pytest.raises(TypeError, match="dtype object"):
        expected_calibration_error(np.array([[1, "a"], [2, 3]], dtype=object), LABELS[:2])


@pytest.mark.parametrize("f", FUNCS[:-1], ids=lambda f: f.__name__)
def test_inputs_keyword_is_uniform(f: Callable[..., Any]) -> None:
    import inspect

    param = inspect.signature(f).parameters["inputs"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY
    assert param.default == "logits"
    assert "Literal['logits', 'probs']" in str(param.annotation) or param.annotation == "InputKind"
