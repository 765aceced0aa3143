"""Named study configurations: ``quick`` (minutes on a laptop CPU) and ``paper`` (the seed paper's setup).

``preset(name)`` returns a plain dict (edit it, then ``StudyConfig.from_dict``); ``prunesafe study --preset``
uses it as the base that ``--config`` and flags override.  What ``paper`` chooses where the paper is silent,
and which of the paper's cells it cannot yet run as the paper did, is in its ``notes`` (copied into
report.md) and in docs/study.md.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["PRESETS", "preset"]

_VGG16_PRUNED_A = [
    "features.0",
    "features.24",
    "features.27",
    "features.30",
    "features.34",
    "features.37",
    "features.40",
]
#: Li et al.'s ResNet-110-pruned-A: the first conv of every block of stage 1, the last block skipped.
_RESNET110_PRUNED_A = [f"layer1.{i}.conv1" for i in range(17)]

#: Liu et al.'s weight-level rule: one global L1 threshold over conv weights, keep |w| > sorted[floor(n*r)].
_UNSTRUCTURED: dict[str, Any] = {
    "name": "unstructured",
    "options": {"selection": "threshold"},
    "label": "unstructured",
}

_QUICK: dict[str, Any] = {
    "models": [{"name": "resnet20", "checkpoint": "resnet20"}],  # registry name: <data_dir>/models/
    "methods": ["unstructured", "filter", "channel"],
    "ratios": [0.0, 0.3, 0.6],
    "seeds": [0],
    "finetune_epochs": 1,
    "finetune_lr": 1e-3,
    "finetune_batch_size": 64,
    "n_train": 256,
    "n_holdout": 250,
    "n_test": 500,
    "n_corrupted": 20,
    "data_dir": "../shared/data",
    "corruptions_from": "auto",  # the CIFAR-C files when data_dir holds them, else the engine (fetch.py)
    "corruptions": ["benchmark"],
    "severities": [1, 2, 3, 4, 5],
    "n_bins": 10,
    "control": True,
    "temperature_scaling": True,
    "bootstrap_resamples": 1000,
    "device": "cpu",
    "out": "results",
    "notes": [
        "quick preset: 1 fine-tuning epoch on 256 training images (the study: 40 epochs on all of them); "
        "500 clean test images and the first 20 images of every CIFAR-10-C(-sample) cell, or with "
        "corruptions_from = engine the engine's corruptions of the first 20 clean test images (1500 "
        "corrupted images); temperature fitted on 250 held-out training images; one seed, so no ± over "
        "seeds.",
    ],
}

_PAPER: dict[str, Any] = {
    "models": [
        {
            "name": "vgg19",
            "train": "baseline",
            "baseline_batch_size": 64,
            "label": "vgg19",
            "methods": [_UNSTRUCTURED],
        },
        {
            "name": "preact-resnet110",
            "train": "baseline",
            "baseline_batch_size": 64,
            "methods": [_UNSTRUCTURED],
        },
        {
            "name": "vgg16",
            "train": "baseline",
            "baseline_batch_size": 64,
            "methods": [{"name": "filter", "options": {"layers": _VGG16_PRUNED_A}, "label": "filter"}],
        },
        {
            "name": "resnet110",
            "train": "baseline",
            "baseline_batch_size": 64,
            "methods": [{"name": "filter", "options": {"layers": _RESNET110_PRUNED_A}, "label": "filter"}],
        },
        {
            "name": "vgg19",
            "train": "baseline",
            "baseline_batch_size": 64,
            "sparsity": 1e-4,
            "label": "vgg19-slim",
            "methods": [{"name": "channel", "options": {"selection": "threshold"}, "label": "channel"}],
        },
        {
            "name": "resnet164",
            "train": "baseline",
            "baseline_batch_size": 64,
            "sparsity": 1e-5,
            "channel_selection": True,
            "label": "resnet164-slim",
            "methods": [{"name": "channel", "options": {"selection": "threshold"}, "label": "channel"}],
        },
    ],
    "methods": ["unstructured"],
    "ratios": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    "seeds": [0, 1, 2],
    "finetune_epochs": 40,
    "finetune_lr": 1e-3,
    "finetune_batch_size": 64,
    "n_holdout": 5000,
    "data_dir": "data",
    "corruptions_from": "files",  # the released CIFAR-10-C (--download: download_cifar_c, MD5, resumable)
    "corruptions": ["benchmark"],
    "severities": [1, 2, 3, 4, 5],
    "n_bins": 10,
    "control": True,
    "temperature_scaling": True,
    "bootstrap_resamples": 1000,
    "device": "cuda",
    "out": "results-paper",
    "notes": [
        "paper preset: baselines trained 160 epochs with prunesafe's BASELINE recipe at batch 64 as in "
        "Liu et al.'s scripts (SGD momentum 0.9, weight decay 1e-4, lr 0.1 / 10 at epochs 80 and 120, "
        "crop + flip);",
        "fine-tuning: 40 epochs, constant lr 1e-3, batch 64, momentum 0.9, weight decay 1e-4 (momentum "
        "and weight decay are not stated by the paper; these are Liu et al.'s script defaults); the last "
        "epoch's weights are evaluated (no best-checkpoint selection: that would select on test data); "
        "one-shot pruning per ratio;",
        "temperature scaling is fitted on the last 5000 training images, which are therefore held out of "
        "baseline training and fine-tuning (45000 training images instead of 50000);",
        "channel pruning of ResNet-164 (pre-activation bottleneck): Liu et al.'s channel selection after the "
        "first BN of each block (channel_selection = true: the branch's channels are pruned, the residual "
        "stream stays whole), sparsity training with λ = 1e-5, one global threshold over all BN γ;",
        "threshold rule: unstructured and channel pruning use Liu et al.'s rule (selection = threshold: "
        "keep values strictly greater than the value at sorted index floor(total*ratio), ties pruned, so "
        "the achieved ratio is >= the asked one); filter pruning removes the round(ratio*n) smallest-L1 "
        "filters of every selected layer (Li et al.);",
        "channel pruning on VGG-19: network slimming on BN γ with one global threshold over all BN "
        "channels (threshold_scope = all), after sparsity training with λ = 1e-4;",
        "corruptions: the released CIFAR-10-C files (Hendrycks & Dietterich 2019, Zenodo record 2535967; "
        "--download fetches the 2.9 GB archive with download_cifar_c, MD5-verified and resumable), not "
        "the engine.",
    ],
}

#: Preset name -> plain config dict.
PRESETS: dict[str, dict[str, Any]] = {"quick": _QUICK, "paper": _PAPER}


def preset(name: str) -> dict[str, Any]:
    """A copy of the named preset's config dict.

    Examples
    --------
    >>> preset("quick")["ratios"]
    [0.0, 0.3, 0.6]
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
