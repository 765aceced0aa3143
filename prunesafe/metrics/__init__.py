"""prunesafe.metrics: calibration metrics, reliability diagrams, temperature scaling."""

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
from prunesafe.metrics.temperature import TemperatureScaledModel, fit_temperature

__all__ = [
    "BootstrapResult",
    "CalibrationAccumulator",
    "CalibrationResult",
    "ReliabilityDiagram",
    "TemperatureScaledModel",
    "bootstrap_ci",
    "brier_score",
    "classwise_calibration_error",
    "debiased_l2_calibration_error",
    "expected_calibration_error",
    "fit_temperature",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "reliability_diagram",
]
