"""The study: prune -> fine-tune -> evaluate calibration and corruption robustness, end to end.

``run_study(StudyConfig)`` runs models x methods x ratios x seeds (plus the unpruned model and the
equal-training control), resumably, optionally under ``torchrun``, and writes results.jsonl / .csv,
summary.csv, verdict.csv, report.md, figures and pruned checkpoints.  ``prunesafe study`` is its CLI.
See docs/study.md.

Examples
--------
>>> from prunesafe.study import StudyConfig, preset
>>> cfg = StudyConfig.from_dict(preset("quick"))
>>> [m.name for m in cfg.methods], cfg.ratios
(['unstructured', 'filter', 'channel'], (0.0, 0.3, 0.6))
"""

from prunesafe.study.config import ZOO, MethodSpec, ModelSpec, StudyConfig, build_model, config_diff
from prunesafe.study.data import CorruptionSource, FileCorruptions, StudyData, load_data
from prunesafe.study.engine_source import EngineCorruptions
from prunesafe.study.fetch import MissingDataError, plan_data, prepare_data
from prunesafe.study.presets import PRESETS, preset
from prunesafe.study.runner import CONTRACT_COLUMNS, Job, StudyResult, evaluate_model, plan_jobs, run_study

__all__ = [
    "CONTRACT_COLUMNS",
    "PRESETS",
    "ZOO",
    "CorruptionSource",
    "EngineCorruptions",
    "FileCorruptions",
    "Job",
    "MethodSpec",
    "MissingDataError",
    "ModelSpec",
    "StudyConfig",
    "StudyData",
    "StudyResult",
    "build_model",
    "config_diff",
    "evaluate_model",
    "load_data",
    "plan_data",
    "plan_jobs",
    "prepare_data",
    "preset",
    "run_study",
]
