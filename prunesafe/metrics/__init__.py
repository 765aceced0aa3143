"""prunesafe.metrics: calibration, reliability diagrams, temperature scaling, corruption robustness."""

from prunesafe.metrics._checks import ProbabilitiesAsLogitsWarning
from prunesafe.metrics.accumulator import CalibrationAccumulator, CalibrationResult
from prunesafe.metrics.bootstrap import (
    BootstrapMethod,
    BootstrapResult,
    PairedBootstrapResult,
    bootstrap_ci,
    paired_bootstrap_ci,
)
from prunesafe.metrics.calibration import (
    Binning,
    Norm,
    UndefinedMetricWarning,
    accuracy,
    brier_score,
    classwise_calibration_error,
    debiased_l2_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)
from prunesafe.metrics.reliability import ReliabilityDiagram, reliability_diagram
from prunesafe.metrics.robustness import (
    RobustnessAccumulator,
    RobustnessResult,
    evaluate_corruptions,
    mean_corruption_error,
    mean_ece_by_severity,
    mean_performance_under_corruption,
    pooled_ece_by_severity,
    relative_performance_under_corruption,
)
from prunesafe.metrics.temperature import TemperatureScaledModel, fit_temperature

__all__ = [
    "Binning",
    "BootstrapMethod",
    "BootstrapResult",
    "CalibrationAccumulator",
    "CalibrationResult",
    "Norm",
    "PairedBootstrapResult",
    "ProbabilitiesAsLogitsWarning",
    "ReliabilityDiagram",
    "RobustnessAccumulator",
    "RobustnessResult",
    "TemperatureScaledModel",
    "UndefinedMetricWarning",
    "accuracy",
    "bootstrap_ci",
    "brier_score",
    "classwise_calibration_error",
    "debiased_l2_calibration_error",
    "evaluate_corruptions",
    "expected_calibration_error",
    "fit_temperature",
    "maximum_calibration_error",
    "mean_corruption_error",
    "mean_ece_by_severity",
    "mean_performance_under_corruption",
    "negative_log_likelihood",
    "paired_bootstrap_ci",
    "pooled_ece_by_severity",
    "relative_performance_under_corruption",
    "reliability_diagram",
]
