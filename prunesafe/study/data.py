"""The study's data step: clean test split, fine-tuning split, held-out split, corruption source.

Where the files are looked for (``data_dir`` of the config; ``<ds>`` is ``cifar10`` or ``cifar100``):

* clean images: ``clean_dir`` if given, else ``<data_dir>/<ds>/`` or ``<data_dir>/`` holding
  ``test_images.npy`` / ``test_labels.npy`` / ``train_images.npy`` / ``train_labels.npy`` (the layout of
  ``../shared/data/cifar10``), or a torchvision root holding ``cifar-10-batches-py/`` (``cifar-100-python/``)
  in one of those two folders;
* corrupted images: ``corruptions_dir`` if given, else the first of ``<data_dir>/CIFAR-10-C``,
  ``<data_dir>/CIFAR-10-C-sample`` (``CIFAR-100-C``, ``CIFAR-100-C-sample``) in the standard CIFAR-C layout.

The corrupted images come from a *corruption source*: an object with a ``name`` (recorded in the
``corruptions_from`` column) and ``open(config) -> dataset`` returning what
:func:`~prunesafe.metrics.evaluate_corruptions` accepts (an object with ``.cells``).  :class:`FileCorruptions`
reads CIFAR-C files; an on-the-fly engine plugs in the same way (``run_study(..., corruption_source=)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from prunesafe.study.config import StudyConfig

__all__ = ["CorruptionSource", "FileCorruptions", "StudyData", "check_data", "load_data"]

Arrays = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]


class CorruptionSource(Protocol):
    """Where corrupted images come from (one pluggable piece of the study)."""

    #: Value of the ``corruptions_from`` column.
    name: str

    def open(self, config: StudyConfig) -> Any:
        """A dataset with ``.cells`` (items with ``corruption``, ``severity``, ``images``, ``labels``)."""
        ...


def _c_folder_names(dataset: str) -> tuple[str, ...]:
    base = "CIFAR-100-C" if dataset == "cifar100" else "CIFAR-10-C"
    return (base, f"{base}-sample")


def corruptions_folder(config: StudyConfig) -> Path:
    """The CIFAR-C folder the config points at (``FileNotFoundError`` naming the key otherwise)."""
    if config.corruptions_dir is not None:
        folder = Path(config.corruptions_dir)
        if not (folder / "labels.npy").is_file():
            raise FileNotFoundError(
                f"corruptions_dir: {folder} holds no labels.npy; point it at a CIFAR-C folder "
                "(<corruption>.npy + labels.npy)"
            )
        return folder
    root = Path(config.data_dir)
    tried = [root / name for name in _c_folder_names(config.dataset)]
    for folder in tried:
        if (folder / "labels.npy").is_file():
            return folder
    raise FileNotFoundError(
        f"data_dir: no CIFAR-C folder found (looked for {', '.join(str(t) for t in tried)}); put the CIFAR-C "
        "files there or pass corruptions_dir (--corruptions-dir)"
    )


@dataclass
class FileCorruptions:
    """CIFAR-10-C / CIFAR-100-C files in the standard layout (optionally the first ``n_corrupted`` per cell).

    Examples
    --------
    >>> FileCorruptions().name
    'files'
    """

    name: str = "files"

    def open(self, config: StudyConfig) -> Any:
        from prunesafe.data import CIFAR10C, CIFAR100C

        base = CIFAR100C if config.dataset == "cifar100" else CIFAR10C
        folder = corruptions_folder(config)
        names, severities = config.resolved_corruptions(), tuple(config.severities)
        if config.n_corrupted is None:
            return base(folder, names, severities)
        return _first_n(base, config.n_corrupted)(folder, names, severities)


def _first_n(base: type[Any], n: int) -> type[Any]:
    """A subclass of the CIFAR-C dataset that keeps the first ``n`` images of every cell."""
    from prunesafe.data import CorruptionCell

    def _open_cells(self: Any) -> list[Any]:
        cells = base._open_cells(self)
        return [CorruptionCell(c.corruption, c.severity, c.images[:n], np.array(c.labels[:n])) for c in cells]

    return type(f"{base.__name__}FirstN", (base,), {"_open_cells": _open_cells})


def _clean_candidates(config: StudyConfig) -> list[Path]:
    if config.clean_dir is not None:
        return [Path(config.clean_dir)]
    root = Path(config.data_dir)
    return [root / config.dataset, root]


def _load_split(config: StudyConfig, split: str) -> Arrays:
    from prunesafe.data import cifar_arrays, load_cifar10, load_cifar10_arrays, load_cifar100

    tv_folder = "cifar-100-python" if config.dataset == "cifar100" else "cifar-10-batches-py"
    for folder in _clean_candidates(config):
        if (folder / f"{split}_images.npy").is_file():
            if config.dataset == "cifar100":  # same .npy layout
                images = np.load(folder / f"{split}_images.npy", mmap_mode="r", allow_pickle=False)
                labels = np.load(folder / f"{split}_labels.npy", allow_pickle=False).astype(np.int64)
                return images, labels
            return load_cifar10_arrays(folder, "train" if split == "train" else "test")
        if (folder / tv_folder).is_dir():
            loader = load_cifar100 if config.dataset == "cifar100" else load_cifar10
            return cifar_arrays(loader(folder, train=split == "train"))
    raise FileNotFoundError(
        f"{'clean_dir' if config.clean_dir else 'data_dir'}: no {config.dataset} {split} split found in "
        f"{', '.join(str(p) for p in _clean_candidates(config))} (looked for {split}_images.npy + "
        f"{split}_labels.npy or a torchvision {tv_folder}/ folder)"
    )


def check_data(config: StudyConfig) -> None:
    """Check that every file the config needs exists (no pixels are read)."""
    if not Path(config.data_dir).is_dir() and config.clean_dir is None:
        raise FileNotFoundError(
            f"data_dir: folder {config.data_dir} does not exist; pass --data-dir <folder>"
        )
    test = _load_split(config, "test")
    if config.n_test is not None and config.n_test > len(test[1]):
        raise ValueError(f"n_test = {config.n_test} but the test split has only {len(test[1])} images")
    needs_train = (
        config.finetune_epochs > 0
        or config.temperature_scaling
        or any(m.train is not None for m in config.models)
    )
    if needs_train:
        train = _load_split(config, "train")
        holdout = config.n_holdout if config.temperature_scaling else 0
        if holdout >= len(train[1]):
            raise ValueError(
                f"n_holdout = {holdout} leaves no training images (the train split has {len(train[1])})"
            )
    if config.corruptions_from == "engine":  # generated on the fly (study/engine_source.py): no files
        return
    folder = corruptions_folder(config)
    for name in config.resolved_corruptions():
        if not (folder / f"{name}.npy").is_file():
            raise FileNotFoundError(
                f"corruptions: {name!r} has no file {folder / (name + '.npy')}; remove it from corruptions "
                "or add the file"
            )


@dataclass
class StudyData:
    """Everything the study reads, opened once."""

    clean: Arrays
    finetune: Arrays | None
    holdout: Arrays | None
    corrupted: Any
    corruptions_from: str


def load_data(config: StudyConfig, source: CorruptionSource | None = None) -> StudyData:
    """Open the data of ``config`` (memory-mapped where possible).

    The held-out split for temperature scaling is the *last* ``n_holdout`` images of the training split;
    fine-tuning (and baseline training) uses the images before it (the first ``n_train`` of them when set).
    Test images are never used for fitting anything.
    """
    if source is None:  # the config's corruptions_from (files, engine; auto resolved): study/fetch.py
        from prunesafe.study.fetch import corruption_source_for

        source = corruption_source_for(config)
    images, labels = _load_split(config, "test")
    n = len(labels) if config.n_test is None else config.n_test
    clean = (images[:n], labels[:n])
    finetune = holdout = None
    needs_train = (
        config.finetune_epochs > 0
        or config.temperature_scaling
        or any(m.train is not None for m in config.models)
    )
    if needs_train:
        timg, tlab = _load_split(config, "train")
        k = config.n_holdout if config.temperature_scaling else 0
        rest = len(tlab) - k
        if k:
            holdout = (timg[rest:], tlab[rest:])
        m = rest if config.n_train is None else min(config.n_train, rest)
        finetune = (np.ascontiguousarray(timg[:m]), np.ascontiguousarray(tlab[:m]))
    return StudyData(clean, finetune, holdout, source.open(config), source.name)
