"""prunesafe.metrics: calibration, reliability diagrams, temperature scaling, corruption robustness."""

from prunesafe.metrics.accumulator import CalibrationAccumulator, CalibrationResult
from prunesafe.metrics.calibration import (
    BootstrapResult,
    bootstrap_ci,
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
    "BootstrapResult",
    "CalibrationAccumulator",
    "CalibrationResult",
    "ReliabilityDiagram",
    "RobustnessAccumulator",
    "RobustnessResult",
    "TemperatureScaledModel",
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
    "pooled_ece_by_severity",
    "relative_performance_under_corruption",
    "reliability_diagram",
]
