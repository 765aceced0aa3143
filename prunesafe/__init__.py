"""prunesafe: prune CNNs and show they are still safe.

Calibration metrics, corruption robustness and dependency-aware structural pruning for PyTorch.
The most used names are re-exported here; every subpackage (:mod:`prunesafe.metrics`,
:mod:`prunesafe.pruning`, :mod:`prunesafe.models`, :mod:`prunesafe.data`,
:mod:`prunesafe.plotting`, :mod:`prunesafe.study`) has the full API.

Examples
--------
>>> import torch
>>> import prunesafe
>>> logits, labels = torch.randn(100, 10), torch.randint(0, 10, (100,))
>>> 0.0 <= prunesafe.expected_calibration_error(logits, labels) <= 1.0
True
"""

from prunesafe.data import CIFAR10C, CIFAR100C, ArrayDataset
from prunesafe.metrics import (
    BootstrapResult,
    CalibrationAccumulator,
    CalibrationResult,
    PairedBootstrapResult,
    ReliabilityDiagram,
    RobustnessAccumulator,
    RobustnessResult,
    TemperatureScaledModel,
    accuracy,
    bootstrap_ci,
    brier_score,
    classwise_calibration_error,
    debiased_l2_calibration_error,
    evaluate_corruptions,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    mean_corruption_error,
    mean_performance_under_corruption,
    negative_log_likelihood,
    paired_bootstrap_ci,
    relative_performance_under_corruption,
    reliability_diagram,
)
from prunesafe.models import cifar_resnet, cifar_vgg, fit, load_weights
from prunesafe.plotting import plot_reliability_diagram
from prunesafe.pruning import (
    PruningReport,
    finalize,
    load_pruned,
    prune_model,
    pruning_report,
    register_pruner,
    save_pruned,
)
from prunesafe.study import StudyConfig, run_study

__version__ = "0.1.0.dev0"

__all__ = [
    "CIFAR10C",
    "CIFAR100C",
    "ArrayDataset",
    "BootstrapResult",
    "CalibrationAccumulator",
    "CalibrationResult",
    "PairedBootstrapResult",
    "PruningReport",
    "ReliabilityDiagram",
    "RobustnessAccumulator",
    "RobustnessResult",
    "StudyConfig",
    "TemperatureScaledModel",
    "__version__",
    "accuracy",
    "bootstrap_ci",
    "brier_score",
    "cifar_resnet",
    "cifar_vgg",
    "classwise_calibration_error",
    "debiased_l2_calibration_error",
    "evaluate_corruptions",
    "expected_calibration_error",
    "finalize",
    "fit",
    "fit_temperature",
    "load_pruned",
    "load_weights",
    "maximum_calibration_error",
    "mean_corruption_error",
    "mean_performance_under_corruption",
    "negative_log_likelihood",
    "paired_bootstrap_ci",
    "plot_reliability_diagram",
    "prune_model",
    "pruning_report",
    "register_pruner",
    "relative_performance_under_corruption",
    "reliability_diagram",
    "run_study",
    "save_pruned",
]
