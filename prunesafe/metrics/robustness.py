r"""Corruption robustness: evaluate a model over CIFAR-C cells, then summarise the table.

:func:`evaluate_corruptions` runs a model over clean data and every selected
(corruption, severity) cell and returns a :class:`RobustnessResult` whose ``records`` form a tidy
table (one row per cell: ``model, corruption, severity, n, accuracy, ece, nll``; the clean row has
``corruption="clean", severity=0``).  The summary functions take that table -- the result object, a
list of records, or a pandas DataFrame read back from ``to_csv``/``to_json`` -- never a model, so
they compose:

* :func:`mean_performance_under_corruption` -- mPC (Michaelis et al., 2019), also per severity;
* :func:`relative_performance_under_corruption` -- rPC = mPC / clean accuracy;
* :func:`mean_corruption_error` -- mCE and relative mCE against a reference model
  (Hendrycks & Dietterich, 2019);
* :func:`pooled_ece_by_severity` / :func:`mean_ece_by_severity` -- calibration under shift per
  severity, pooled over corruptions or averaged over them.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, overload

import numpy as np
import torch
from torch import nn
from typing_extensions import NotRequired

from prunesafe._utils import module_device
from prunesafe.data.arrays import BatchBuffers, _as_int64_labels, _as_uint8_nhwc
from prunesafe.data.cifar_c import (
    CIFAR10C,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    resolve_corruptions,
    resolve_severities,
)
from prunesafe.metrics._checks import check_choice, check_n_bins
from prunesafe.metrics.calibration import (
    _BINNINGS,
    _NORMS,
    Binning,
    Norm,
    expected_calibration_error,
    negative_log_likelihood,
)

__all__ = [
    "CLEAN",
    "COLUMNS",
    "CONVENTION_COLUMNS",
    "NonFiniteCellWarning",
    "RobustnessAccumulator",
    "RobustnessRecord",
    "RobustnessResult",
    "evaluate_corruptions",
    "mean_corruption_error",
    "mean_ece_by_severity",
    "mean_performance_under_corruption",
    "pooled_ece_by_severity",
    "relative_performance_under_corruption",
]

#: ``corruption`` value of the clean-data row (its ``severity`` is 0).
CLEAN = "clean"
#: Columns holding the metric conventions of the ``ece`` column (kept in every row, CSV and JSON).
CONVENTION_COLUMNS: tuple[str, ...] = ("n_bins", "binning", "norm")
#: Column order of the table.
COLUMNS: tuple[str, ...] = (
    "model",
    "corruption",
    "severity",
    "n",
    "accuracy",
    "ece",
    "nll",
    *CONVENTION_COLUMNS,
)
_REQUIRED: tuple[str, ...] = COLUMNS[:7]


class NonFiniteCellWarning(RuntimeWarning):
    """A cell's logits hold NaN/inf: its metrics are recorded as NaN and the sweep goes on."""


class RobustnessRecord(TypedDict):
    """One row of the evaluation table.

    ``n_bins``/``binning``/``norm`` are the conventions of ``ece``; ``None`` when unknown (a table written
    by an old version or built by hand without them).
    """

    model: str
    corruption: str
    severity: int
    n: int
    accuracy: float
    ece: float
    nll: float
    n_bins: NotRequired[int | None]
    binning: NotRequired[str | None]
    norm: NotRequired[str | None]


Table = Any  # RobustnessResult | Sequence[Mapping[str, Any]] | pandas.DataFrame


@dataclass
class RobustnessResult:
    """Evaluation table plus (optionally) the logits it was computed from.

    Attributes
    ----------
    records : list of RobustnessRecord
        One row per cell, columns :data:`COLUMNS`.
    logits : dict
        ``(corruption, severity) -> float32 CPU tensor (n, C)`` when evaluated with
        ``keep_logits=True`` (needed by :func:`pooled_ece_by_severity`).
    labels : dict
        ``(corruption, severity) -> int64 CPU tensor (n,)``, alongside ``logits``.
    n_bins : int
        Bins used for the ``ece`` column (also recorded in every row).
    binning : {"uniform", "quantile"}
        Binning of the ``ece`` column (also recorded in every row).
    norm : {"l1", "l2", "max"}
        Norm of the ``ece`` column (also recorded in every row).

    Examples
    --------
    >>> r = RobustnessResult([{"model": "m", "corruption": "fog", "severity": 1, "n": 10,
    ...                        "accuracy": 0.5, "ece": 0.1, "nll": 1.2}])
    >>> r.cell("fog", 1)["accuracy"]
    0.5
    """

    records: list[RobustnessRecord]
    logits: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)
    labels: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)
    n_bins: int = 15
    binning: str = "uniform"
    norm: str = "l1"

    def cell(self, corruption: str, severity: int, model: str | None = None) -> RobustnessRecord:
        """The record of one cell (``("clean", 0)`` for clean data)."""
        hits = [
            r
            for r in self.records
            if r["corruption"] == corruption and r["severity"] == severity and model in (None, r["model"])
        ]
        if len(hits) != 1:
            raise KeyError(f"{len(hits)} records for corruption={corruption!r}, severity={severity}")
        return hits[0]

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the records as CSV (header :data:`COLUMNS`); ``pandas.read_csv`` reads it back."""
        out = Path(path)
        with open(out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
            writer.writeheader()
            for r in self.records:
                writer.writerow({k: _json_value(r.get(k)) for k in COLUMNS})
        return out

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the records as a JSON list of objects; ``pandas.read_json`` reads it back."""
        out = Path(path)
        rows = [{k: _json_value(r.get(k)) for k in COLUMNS} for r in self.records]
        out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        return out

    def to_pandas(self) -> Any:
        """The records as a ``pandas.DataFrame`` (pandas must be installed)."""
        import importlib

        pd: Any = importlib.import_module("pandas")
        return pd.DataFrame([{k: r.get(k) for k in COLUMNS} for r in self.records], columns=list(COLUMNS))

    @classmethod
    def _from_records(cls, records: list[RobustnessRecord]) -> RobustnessResult:
        conventions = {(r.get("n_bins"), r.get("binning"), r.get("norm")) for r in records}
        if len(conventions) == 1:
            n_bins, binning, norm = conventions.pop()
            return cls(records, n_bins=n_bins or 15, binning=binning or "uniform", norm=norm or "l1")
        return cls(records)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> RobustnessResult:
        """Read a table written by :meth:`to_csv` (no logits); conventions come back from the rows."""
        with open(path, newline="", encoding="utf-8") as fh:
            return cls._from_records(
                [_coerce(row, f"{path}:{i + 2}") for i, row in enumerate(csv.DictReader(fh))]
            )

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> RobustnessResult:
        """Read a table written by :meth:`to_json` (no logits); conventions come back from the rows."""
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValueError(f"{path} must hold a JSON list of records")
        return cls._from_records([_coerce(row, f"{path}[{i}]") for i, row in enumerate(rows)])


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v == "") or (isinstance(v, float) and math.isnan(v))


def _coerce(row: Mapping[str, Any], where: str) -> RobustnessRecord:
    missing = [c for c in _REQUIRED if c not in row]
    if missing:
        raise ValueError(f"record {where} lacks column(s) {missing}; a table needs columns {list(_REQUIRED)}")

    def num(key: str) -> float:
        v = row[key]
        return math.nan if _missing(v) else float(v)

    try:
        rec = RobustnessRecord(
            model=str(row["model"]),
            corruption=str(row["corruption"]),
            severity=int(row["severity"]),
            n=int(row["n"]),
            accuracy=num("accuracy"),
            ece=num("ece"),
            nll=num("nll"),
        )
        n_bins: Any = row.get("n_bins")
        rec["n_bins"] = None if _missing(n_bins) else int(n_bins)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"record {where} has a non-numeric value: {exc}") from exc
    for key, allowed in (("binning", _BINNINGS), ("norm", _NORMS)):
        v = row.get(key)
        if _missing(v):
            rec[key] = None  # type: ignore[literal-required]
        elif v not in allowed:
            raise ValueError(f"record {where} has {key}={v!r}; expected one of {list(allowed)}")
        else:
            rec[key] = str(v)  # type: ignore[literal-required]
    return rec


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
def _clean_arrays(clean: Any) -> tuple[Any, torch.Tensor]:
    """``clean`` -> (uint8 NHWC array/tensor, int64 labels)."""
    if isinstance(clean, tuple) and len(clean) == 2:
        images = _as_uint8_nhwc(clean[0], "clean[0] (images)")
        return images, _as_int64_labels(clean[1], int(images.shape[0]), "clean[1] (labels)")
    raw_images: Any = getattr(clean, "images", None)
    raw_labels: Any = getattr(clean, "labels", None)
    if raw_images is None or raw_labels is None:  # torchvision CIFAR10/100: .data / .targets
        raw_images, raw_labels = getattr(clean, "data", None), getattr(clean, "targets", None)
    if raw_images is None or raw_labels is None:
        raise TypeError(
            "clean must be an (images, labels) tuple of uint8 NHWC images and integer labels, an "
            "ArrayDataset, or a torchvision CIFAR dataset (with .data/.targets); got "
            f"{type(clean).__name__}"
        )
    images = _as_uint8_nhwc(raw_images, "clean images")
    return images, _as_int64_labels(raw_labels, int(images.shape[0]), "clean labels")


class _Source:
    """One cell to evaluate: images are read (``.images`` of a lazy cell) only when evaluated."""

    def __init__(
        self, corruption: str, severity: int, labels: torch.Tensor, cell: Any = None, images: Any = None
    ) -> None:
        self.corruption, self.severity, self.labels = corruption, severity, labels
        self._cell, self._images = cell, images

    def images(self) -> Any:
        if self._images is not None:
            return self._images
        where = f"cell ({self.corruption!r}, {self.severity}) .images"
        images = _as_uint8_nhwc(self._cell.images, where)
        if int(images.shape[0]) != self.labels.shape[0]:
            raise ValueError(
                f"{where} has {int(images.shape[0])} images but .labels has {self.labels.shape[0]} entries"
            )
        return images


def _select_names(requested: str | Sequence[str] | None, have: set[str], what: str) -> set[str] | None:
    if requested is None:
        return None
    items = [requested] if isinstance(requested, str) else list(requested)
    out: set[str] = set()
    for item in items:
        out.update((item,) if isinstance(item, str) and item in have else resolve_corruptions(item))
    return out


def _cells(
    data: Any, corruptions: str | Sequence[str] | None, severities: int | str | Sequence[int] | None
) -> list[_Source]:
    if data is None:
        if corruptions is not None or severities is not None:
            raise ValueError("corruptions/severities given but data is None; pass a CIFAR-C root or dataset")
        return []
    if isinstance(data, (str, os.PathLike)):
        data = CIFAR10C(
            data,
            "benchmark" if corruptions is None else corruptions,
            SEVERITIES if severities is None else severities,
        )
        corruptions = severities = None  # already selected
    if isinstance(data, (str, bytes)) or not hasattr(data, "cells"):
        raise TypeError(
            "data must be a CIFAR-C folder (str or path), a CIFAR10C/CIFAR100C dataset, any object with a "
            "`cells` attribute (items with .corruption, .severity, .images, .labels) or None, got "
            f"{type(data).__name__}"
        )
    cells = list(data.cells)
    keys: list[tuple[str, int]] = []
    for i, c in enumerate(cells):
        name, sev = getattr(c, "corruption", None), getattr(c, "severity", None)
        if not isinstance(name, str) or isinstance(sev, bool) or not isinstance(sev, (int, np.integer)):
            raise TypeError(
                f"data.cells[{i}] must have .corruption (str) and .severity (int), got {name!r} / {sev!r}"
            )
        keys.append((name, int(sev)))
    have = set(keys)
    if len(have) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"data.cells holds duplicate cells {dup[:5]}")
    want_c = _select_names(corruptions, {c for c, _ in have}, "corruptions")
    want_s = None if severities is None else set(resolve_severities(severities))
    if want_c is not None or want_s is not None:
        missing = sorted(
            (c, s)
            for c in (want_c or {c for c, _ in have})
            for s in (want_s or {s for _, s in have})
            if (c, s) not in have
        )
        if missing:
            more = "..." if len(missing) > 5 else ""
            raise ValueError(
                f"the dataset does not contain the requested cells {missing[:5]}{more}; "
                "build it with those corruptions/severities"
            )
    out: list[_Source] = []
    for c, (name, sev) in zip(cells, keys, strict=True):
        if (want_c is None or name in want_c) and (want_s is None or sev in want_s):
            raw = c.labels
            labels = _as_int64_labels(raw, len(raw), f"cell ({name!r}, {sev}) .labels")
            out.append(_Source(name, sev, labels, cell=c))
    return out


def _module_dtype(model: nn.Module) -> torch.dtype:
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def evaluate_corruptions(
    model: nn.Module,
    data: Any = None,
    *,
    corruptions: str | Sequence[str] | None = None,
    severities: int | str | Sequence[int] | None = None,
    clean: Any = None,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    n_bins: int = 15,
    binning: Binning = "uniform",
    norm: Norm = "l1",
    progress: bool = True,
    model_name: str | None = None,
    keep_logits: bool = True,
    strict: bool = False,
) -> RobustnessResult:
    """Accuracy, ECE and NLL of ``model`` on clean data and every (corruption, severity) cell.

    Runs under ``torch.inference_mode`` with ``model.eval()``; afterwards every submodule's own
    train/eval flag is restored (also after an error), so a frozen BatchNorm inside a model in train
    mode stays frozen.  Images are streamed through one preallocated uint8 staging buffer (pinned on
    CUDA) and one float buffer, so no file is loaded whole and the per-batch overhead over a bare
    ``model(x)`` is one copy and one division (plus one cast for a float16/bfloat16/float64 model:
    inputs are fed in the model's floating dtype).

    Parameters
    ----------
    model : nn.Module
        Takes float NCHW inputs in ``[0, 1]`` (prunesafe models normalise internally) and returns
        logits ``(B, C)``.
    data : path, CIFAR10C, CIFAR100C, object with ``cells``, or None
        A CIFAR-10-C folder (opened as :class:`~prunesafe.data.CIFAR10C`), a dataset object (use
        :class:`~prunesafe.data.CIFAR100C` for CIFAR-100-C), or **any object with a** ``cells``
        **attribute**: an iterable of items with ``.corruption`` (str), ``.severity`` (int),
        ``.images`` (uint8 NHWC NumPy array or tensor; read only when that cell is evaluated, so it
        may be produced lazily) and ``.labels`` (integer array), e.g. an on-the-fly corruption
        engine.  ``None`` evaluates ``clean`` only.  A dataset's ``transform`` is not applied (use
        :class:`RobustnessAccumulator` with your own loop for test-time transforms).
    corruptions : str or sequence of str, optional
        Names or shortcuts (``"benchmark"``, ``"all"``, ``"extra"``, ``"noise"``, ...).  Default:
        ``"benchmark"`` for a folder, the object's own cells otherwise (a given value then picks a
        subset of them; names of custom cells are accepted).
    severities : int, sequence of int or "all", optional
        Default: 1..5 for a folder, the object's cells otherwise.
    clean : tuple, ArrayDataset or torchvision CIFAR dataset, optional
        Clean test data: ``(uint8 NHWC images, labels)`` or an object with ``.images/.labels`` or
        ``.data/.targets``.  Adds the ``("clean", 0)`` row used by rPC and relative mCE.
    batch_size : int, default 500
    device : torch.device or str, optional
        Device the model is on (default: that of its first parameter).  The model is not moved.
    n_bins : int, default 15
        Bins of the per-cell ECE.
    binning : {"uniform", "quantile"}, default "uniform"
        Binning of the per-cell ECE (as in :func:`~prunesafe.metrics.expected_calibration_error`).
    norm : {"l1", "l2", "max"}, default "l1"
        Norm of the per-cell ECE.  ``n_bins``, ``binning`` and ``norm`` are recorded in every row.
    progress : bool, default True
        tqdm progress bar over images.
    model_name : str, optional
        Value of the ``model`` column (default: the model's class name).
    keep_logits : bool, default True
        Keep every cell's logits in the result (``n x C`` float32 per cell, ordinary tensors that
        support autograd; 38 MB for all 95 CIFAR-10-C cells) so that :func:`pooled_ece_by_severity`
        can pool them.
    strict : bool, default False
        What a cell whose logits hold NaN/inf does.  ``False``: its accuracy/ECE/NLL are recorded as
        NaN, a :class:`NonFiniteCellWarning` names the cell and the number of affected samples, its
        logits are not kept, and the sweep goes on.  ``True``: raise ValueError (naming the cell).

    Returns
    -------
    RobustnessResult

    Examples
    --------
    >>> import numpy as np, torch
    >>> from prunesafe.models import cifar_resnet
    >>> imgs = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    >>> res = evaluate_corruptions(cifar_resnet(20), clean=(imgs, np.arange(8)), progress=False)
    >>> [(r["corruption"], r["severity"], r["n"], r["n_bins"], r["binning"]) for r in res.records]
    [('clean', 0, 8, 15, 'uniform')]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    n_bins = check_n_bins(n_bins)
    check_choice(binning, "binning", _BINNINGS)
    check_choice(norm, "norm", _NORMS)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    model_dev = module_device(model)
    dev = torch.device(device) if device is not None else model_dev
    if dev.type != model_dev.type or (dev.index is not None and dev.index != model_dev.index):
        raise ValueError(f"model is on {model_dev} but device={dev}; call model.to({str(dev)!r}) first")
    name = model_name if model_name is not None else type(model).__name__
    dtype = _module_dtype(model)

    sources: list[_Source] = []
    if clean is not None:
        images, labels = _clean_arrays(clean)
        sources.append(_Source(CLEAN, 0, labels, images=images))
    sources.extend(_cells(data, corruptions, severities))
    if not sources:
        raise ValueError("nothing to evaluate: pass data (a CIFAR-C folder or dataset) and/or clean")

    result = RobustnessResult(records=[], n_bins=n_bins, binning=binning, norm=norm)
    buffers = BatchBuffers(batch_size, device=dev)
    total = sum(len(s.labels) for s in sources)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="img", desc=f"evaluating {name}", disable=not progress)
    modes = [(m, m.training) for m in model.modules()]  # restore every submodule's own flag
    model.eval()
    try:
        for src in sources:
            corruption, severity, labels = src.corruption, src.severity, src.labels
            n = len(labels)
            logits: torch.Tensor | None = None
            with torch.inference_mode():
                batches = buffers.batches(src.images(), labels, release_pages=True)
                for start, (x, _) in zip(range(0, n, batch_size), batches, strict=True):
                    out = model(x if dtype == torch.float32 else x.to(dtype))
                    if logits is None:
                        if not isinstance(out, torch.Tensor) or out.ndim != 2:
                            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                            raise ValueError(
                                f"model must return logits of shape (batch, classes), got {shape}"
                            )
                        with torch.inference_mode(False):  # an ordinary tensor (autograd works on it)
                            logits = torch.empty((n, out.shape[1]), dtype=torch.float32)
                    logits[start : start + out.shape[0]].copy_(out)
                    bar.update(out.shape[0])
            if logits is None:
                raise ValueError(f"cell ({corruption!r}, {severity}) has no images")
            if int(labels.max()) >= logits.shape[1]:
                raise ValueError(
                    f"labels of ({corruption!r}, {severity}) go up to {int(labels.max())} but the model "
                    f"outputs {logits.shape[1]} classes; wrong dataset (CIFAR-10-C vs CIFAR-100-C)?"
                )
            record = _cell_record(name, corruption, severity, logits, labels, n_bins, binning, norm, strict)
            result.records.append(record)
            if keep_logits and not math.isnan(record["accuracy"]):
                result.logits[(corruption, severity)] = logits
                result.labels[(corruption, severity)] = labels
    finally:
        bar.close()
        for m, was_training in modes:
            m.training = was_training
    return result


def _cell_record(
    model: str,
    corruption: str,
    severity: int,
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int,
    binning: str,
    norm: str,
    strict: bool,
) -> RobustnessRecord:
    n = int(labels.shape[0])
    bad_rows = int((~torch.isfinite(logits)).any(1).sum())
    record = RobustnessRecord(
        model=model,
        corruption=corruption,
        severity=severity,
        n=n,
        accuracy=math.nan,
        ece=math.nan,
        nll=math.nan,
        n_bins=n_bins,
        binning=binning,
        norm=norm,
    )
    if bad_rows:
        msg = (
            f"cell ({corruption!r}, {severity}): {bad_rows} of {n} samples have NaN/inf logits "
            "(model overflow? try float32 or check the inputs)"
        )
        if strict:
            raise ValueError(msg)
        warnings.warn(f"{msg}; its accuracy/ece/nll are recorded as NaN", NonFiniteCellWarning, stacklevel=3)
        return record
    record["accuracy"] = float((logits.argmax(1) == labels).double().mean())
    kw: dict[str, Any] = {"n_bins": n_bins, "binning": binning, "norm": norm}
    record["ece"] = expected_calibration_error(logits, labels, **kw)
    record["nll"] = negative_log_likelihood(logits, labels)
    return record


class RobustnessAccumulator:
    """Stateful counterpart of :func:`evaluate_corruptions` for your own evaluation loop.

    Feed it logits per (corruption, severity) cell -- in any order, in as many batches as you like --
    and :meth:`compute` returns the same :class:`RobustnessResult` table.  It keeps every cell's
    logits (float32, O(N x C) memory: 38 MB for all 95 CIFAR-10-C cells), because equal-mass bins and
    the pooled ECE need them.

    For distributed evaluation give every rank its own accumulator over its shard, then call
    :meth:`sync` once on every rank (it gathers the logits of all ranks with ``torch.distributed``);
    or combine accumulators of one process with :meth:`merge`.  Both give exactly the table of one
    accumulator fed all the data.

    Parameters
    ----------
    model_name : str, default "model"
        Value of the ``model`` column.
    n_bins : int, default 15
        Bins of the per-cell ECE.
    binning : {"uniform", "quantile"}, default "uniform"
    norm : {"l1", "l2", "max"}, default "l1"
        Binning and norm of the per-cell ECE (recorded in every row).

    Examples
    --------
    >>> import torch
    >>> acc = RobustnessAccumulator(model_name="m")
    >>> acc.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), "fog", 1)
    >>> acc.update(torch.tensor([[3.0, 0.0]]), torch.tensor([0]), "clean", 0)
    >>> [(r["corruption"], r["severity"], r["n"], r["accuracy"]) for r in acc.compute().records]
    [('fog', 1, 2, 0.5), ('clean', 0, 1, 1.0)]
    """

    def __init__(
        self, *, model_name: str = "model", n_bins: int = 15, binning: Binning = "uniform", norm: Norm = "l1"
    ) -> None:
        self.model_name = model_name
        self.n_bins = check_n_bins(n_bins)
        self.binning: Binning = check_choice(binning, "binning", _BINNINGS)
        self.norm: Norm = check_choice(norm, "norm", _NORMS)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far (also allows updates again after :meth:`sync`)."""
        self._logits: dict[tuple[str, int], list[torch.Tensor]] = {}
        self._labels: dict[tuple[str, int], list[torch.Tensor]] = {}
        self._num_classes: int | None = None
        self._synced = False

    def _check_open(self, what: str) -> None:
        if self._synced:
            raise RuntimeError(
                f"{what} after sync(): this accumulator already holds every rank's data, and adding more on "
                "one rank would make the ranks disagree. Call reset() to start a new evaluation."
            )

    def update(self, logits: Any, labels: Any, corruption: str, severity: int) -> None:
        """Add a batch of ``logits`` ``(B, C)`` and ``labels`` ``(B,)`` to cell (corruption, severity).

        Use ``corruption="clean", severity=0`` for clean data.
        """
        self._check_open("update()")
        if not isinstance(corruption, str) or not corruption:
            raise TypeError(f"corruption must be a non-empty str, got {corruption!r}")
        if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)):
            raise TypeError(f"severity must be an int, got {severity!r}")
        if (corruption == CLEAN) != (int(severity) == 0):
            raise ValueError(
                f"clean data is ({CLEAN!r}, 0) and corruptions have severities >= 1, got "
                f"({corruption!r}, {severity})"
            )
        if int(severity) < 0:
            raise ValueError(f"severity must be >= 0, got {severity}")
        x = logits.detach() if isinstance(logits, torch.Tensor) else torch.as_tensor(np.asarray(logits))
        if x.ndim != 2 or not x.dtype.is_floating_point:
            raise ValueError(f"logits must be a float (batch, classes) array, got {x.dtype} {tuple(x.shape)}")
        if self._num_classes is not None and x.shape[1] != self._num_classes:
            raise ValueError(f"logits have {x.shape[1]} classes but earlier batches had {self._num_classes}")
        y = _as_int64_labels(labels, int(x.shape[0]))
        if x.shape[0] and int(y.max()) >= x.shape[1]:
            raise ValueError(f"labels go up to {int(y.max())} but logits have {x.shape[1]} classes")
        self._num_classes = int(x.shape[1])
        key = (corruption, int(severity))
        self._logits.setdefault(key, []).append(x.to("cpu", torch.float32))
        self._labels.setdefault(key, []).append(y)

    def _settings(self) -> tuple[str, int, str, str]:
        return (self.model_name, self.n_bins, self.binning, self.norm)

    def merge(self, other: RobustnessAccumulator) -> RobustnessAccumulator:
        """Add the batches of ``other`` (same model name, bins, binning, norm) into ``self``.

        Examples
        --------
        >>> import torch
        >>> a, b = RobustnessAccumulator(), RobustnessAccumulator()
        >>> a.update(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), "fog", 1)
        >>> b.update(torch.tensor([[0.0, 2.0]]), torch.tensor([0]), "fog", 1)
        >>> a.merge(b).compute().cell("fog", 1)["n"]
        2
        """
        if not isinstance(other, RobustnessAccumulator):
            raise TypeError(f"other must be a RobustnessAccumulator, got {type(other).__name__}")
        if other is self:
            raise ValueError("cannot merge an accumulator into itself: that would count every sample twice")
        self._check_open("merge()")
        if other._settings() != self._settings():
            raise ValueError(
                "cannot merge accumulators with different settings (model_name, n_bins, binning, norm): "
                f"{self._settings()} vs {other._settings()}"
            )
        if (
            self._num_classes is not None
            and other._num_classes is not None
            and self._num_classes != other._num_classes
        ):
            raise ValueError(
                f"cannot merge accumulators with {self._num_classes} and {other._num_classes} classes"
            )
        for key, chunks in other._logits.items():
            self._logits.setdefault(key, []).extend(chunks)
            self._labels.setdefault(key, []).extend(other._labels[key])
        if other._num_classes is not None:
            self._num_classes = other._num_classes
        return self

    def sync(self, group: Any = None) -> RobustnessAccumulator:
        """Gather every rank's batches over ``torch.distributed`` so that every rank holds all the data.

        A collective: call it once on every rank after the last :meth:`update`.  The cells' logits are
        exchanged with ``all_gather_object`` (any backend; CPU tensors), so the memory of every rank
        grows to the whole table's logits.  Afterwards :meth:`update`/:meth:`merge`/:meth:`sync` raise
        until :meth:`reset`.  A no-op when ``torch.distributed`` is not initialised.

        Examples
        --------
        >>> RobustnessAccumulator().sync().compute  # doctest: +ELLIPSIS
        <bound method RobustnessAccumulator.compute of ...>
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        self._check_open("sync()")
        payload = (self._settings(), self._num_classes, self._logits, self._labels)
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, payload, group=group)
        settings = {g[0] for g in gathered}
        if len(settings) > 1:
            raise ValueError(
                f"ranks use different settings (model_name, n_bins, binning, norm): {sorted(settings)}"
            )
        classes = {g[1] for g in gathered if g[1] is not None}
        if len(classes) > 1:
            raise ValueError(f"ranks saw different numbers of classes: {sorted(classes)}")
        logits: dict[tuple[str, int], list[torch.Tensor]] = {}
        labels: dict[tuple[str, int], list[torch.Tensor]] = {}
        for _, _, rank_logits, rank_labels in gathered:  # rank order: the same on every rank
            for key, chunks in rank_logits.items():
                logits.setdefault(key, []).extend(chunks)
                labels.setdefault(key, []).extend(rank_labels[key])
        self._logits, self._labels = logits, labels
        self._num_classes = classes.pop() if classes else None
        self._synced = True
        return self

    def compute(self, *, keep_logits: bool = True, strict: bool = False) -> RobustnessResult:
        """The table, one record per cell in first-seen order (and the logits when ``keep_logits``).

        ``strict`` as in :func:`evaluate_corruptions`: a cell with NaN/inf logits gets NaN metrics and a
        :class:`NonFiniteCellWarning` (default), or raises.
        """
        if not self._logits:
            raise ValueError("nothing accumulated yet; call update() first")
        result = RobustnessResult(records=[], n_bins=self.n_bins, binning=self.binning, norm=self.norm)
        for key, chunks in self._logits.items():
            logits, labels = torch.cat(chunks), torch.cat(self._labels[key])
            if labels.numel() == 0:
                raise ValueError(f"cell {key} received only empty batches")
            record = _cell_record(
                self.model_name, *key, logits, labels, self.n_bins, self.binning, self.norm, strict
            )
            result.records.append(record)
            if keep_logits and not math.isnan(record["accuracy"]):
                result.logits[key], result.labels[key] = logits, labels
        return result


# ----------------------------------------------------------------------------------------------
# summaries over the table
# ----------------------------------------------------------------------------------------------
def _records(table: Table, name: str = "table") -> list[RobustnessRecord]:
    if isinstance(table, RobustnessResult):
        rows: Iterable[Any] = table.records
    elif hasattr(table, "to_dict") and hasattr(table, "columns"):  # pandas.DataFrame
        rows = table.to_dict("records")
    elif isinstance(table, Sequence) and not isinstance(table, (str, bytes)):
        rows = table
    else:
        raise TypeError(
            f"{name} must be a RobustnessResult, a list of records or a pandas DataFrame, "
            f"got {type(table).__name__}"
        )
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"{name}[{i}] must be a mapping (record), got {type(row).__name__}")
        out.append(_coerce(row, f"{name}[{i}]"))
    if not out:
        raise ValueError(f"{name} is empty")
    return out


def _select(records: list[RobustnessRecord], model: str | None, name: str) -> list[RobustnessRecord]:
    models = sorted({r["model"] for r in records})
    if model is None:
        if len(models) > 1:
            raise ValueError(f"{name} holds several models {models}; pick one with the model argument")
        return records
    picked = [r for r in records if r["model"] == model]
    if not picked:
        raise ValueError(f"{name} has no rows for model {model!r}; models present: {models}")
    return picked


def _wanted_corruptions(
    corruptions: str | Sequence[str] | None, available: Iterable[str], name: str
) -> set[str] | None:
    """The corruption names a summary averages over.

    ``None``: the table's corruptions except :data:`~prunesafe.data.EXTRA_CORRUPTIONS`; ``"table"``: all
    of the table's.
    Names and shortcuts are expanded with :func:`prunesafe.data.resolve_corruptions`; a name that is
    not a CIFAR-C corruption is accepted when the table has it (custom corruptions).  A requested
    corruption that the table lacks raises.
    """
    have = set(available)
    if corruptions is None:  # the literature's set: everything but the four "extra" CIFAR-C corruptions
        default = have - set(EXTRA_CORRUPTIONS)
        if have and not default:
            raise ValueError(
                f"{name} holds only the extra corruptions {sorted(have)}, which the summaries leave out by "
                "default (the benchmark is the other 15); pass corruptions='extra' or a list to use them"
            )
        return default
    if isinstance(corruptions, str) and corruptions == "table":
        return have
    items = [corruptions] if isinstance(corruptions, str) else corruptions
    if not isinstance(items, Sequence) or isinstance(items, (bytes, bytearray)):
        raise TypeError(
            f"corruptions must be a str, a sequence of str or None, got {type(corruptions).__name__}"
        )
    wanted: list[str] = []
    for item in items:
        if isinstance(item, str) and item in have:
            expanded: tuple[str, ...] = (item,)
        else:
            expanded = resolve_corruptions(item)
        wanted.extend(c for c in expanded if c not in wanted)
    missing = [c for c in wanted if c not in have]
    if missing:
        raise ValueError(
            f"{name} lacks corruption(s) {missing} requested by corruptions={corruptions!r} "
            f"({name} has {sorted(have)}); evaluate them too or request fewer"
        )
    return set(wanted)


def _conventions(records: Iterable[RobustnessRecord]) -> set[tuple[Any, Any, Any]]:
    """The distinct known ``(n_bins, binning, norm)`` of ``records`` (rows without them are skipped)."""
    out = set()
    for r in records:
        conv = (r.get("n_bins"), r.get("binning"), r.get("norm"))
        if any(v is not None for v in conv):
            out.add(conv)
    return out


def _describe(conventions: set[tuple[Any, Any, Any]]) -> str:
    return ", ".join(f"n_bins={b}, binning={m!r}, norm={o!r}" for b, m, o in sorted(conventions, key=str))


def _check_one_convention(records: list[RobustnessRecord], name: str) -> None:
    conv = _conventions(records)
    if len(conv) > 1:
        raise ValueError(
            f"{name} mixes rows computed with different ECE conventions ({_describe(conv)}); average only "
            "rows computed the same way (select one model, or re-evaluate)"
        )


def _check_comparable(
    table: list[RobustnessRecord], reference: list[RobustnessRecord], corruptions: set[str]
) -> None:
    """Refuse to combine two tables whose conventions or per-cell sample counts differ."""
    ct, cr = _conventions(table), _conventions(reference)
    if ct and cr and ct != cr:
        raise ValueError(
            f"table and reference were computed with different metric conventions: table {_describe(ct)}; "
            f"reference {_describe(cr)}. Evaluate both with the same n_bins/binning/norm."
        )
    n_ref = {(r["corruption"], r["severity"]): r["n"] for r in reference}
    diff = [
        (r["corruption"], r["severity"], r["n"], n_ref[(r["corruption"], r["severity"])])
        for r in table
        if r["corruption"] in corruptions
        and (r["corruption"], r["severity"]) in n_ref
        and n_ref[(r["corruption"], r["severity"])] != r["n"]
    ]
    if diff:
        cells = ", ".join(f"({c!r}, {s}): n={a} vs {b}" for c, s, a, b in diff[:5])
        raise ValueError(
            f"table and reference were evaluated on different numbers of images per cell ({cells}"
            f"{', ...' if len(diff) > 5 else ''}); compare models on the same images"
        )


def _grid(
    records: list[RobustnessRecord],
    metric: str,
    name: str,
    *,
    complete: bool = True,
    corruptions: str | Sequence[str] | None = None,
) -> tuple[dict[str, dict[int, float]], float | None]:
    """``{corruption: {severity: value}}`` (complete grid enforced) and the clean value or None.

    With ``corruptions`` only those corruptions' rows are used (and they must all be present).
    """
    present = {r["corruption"] for r in records if r["corruption"] != CLEAN}
    wanted = _wanted_corruptions(corruptions, present, name)
    if wanted is not None:
        records = [r for r in records if r["corruption"] == CLEAN or r["corruption"] in wanted]
    grid: dict[str, dict[int, float]] = {}
    clean: float | None = None
    for r in records:
        value = float(r[metric])  # type: ignore[literal-required]
        if r["corruption"] == CLEAN:
            if clean is not None:
                raise ValueError(f"{name} has more than one clean row")
            if math.isnan(value):
                raise ValueError(
                    f"{name} has no {metric} for the clean row ({CLEAN!r}, {r['severity']}); fill it in "
                    "or drop the row"
                )
            clean = value
            continue
        cell = grid.setdefault(r["corruption"], {})
        if r["severity"] in cell:
            raise ValueError(f"{name} has duplicate rows for ({r['corruption']!r}, {r['severity']})")
        if math.isnan(value):
            raise ValueError(f"{name} has no {metric} for ({r['corruption']!r}, {r['severity']})")
        cell[r["severity"]] = value
    if not grid:
        raise ValueError(f"{name} has no corruption rows (only clean data?)")
    all_sev = sorted({s for cells in grid.values() for s in cells})
    holes = [(c, s) for c, cells in grid.items() for s in all_sev if s not in cells]
    if holes and complete:
        raise ValueError(
            f"{name} is not a complete corruption x severity grid; missing cells {holes[:5]}"
            f"{'...' if len(holes) > 5 else ''} (every corruption needs severities {all_sev})"
        )
    return grid, clean


@overload
def mean_performance_under_corruption(
    table: Table,
    *,
    per_severity: Literal[False] = ...,
    model: str | None = ...,
    corruptions: str | Sequence[str] | None = ...,
) -> float: ...
@overload
def mean_performance_under_corruption(
    table: Table,
    *,
    per_severity: Literal[True],
    model: str | None = ...,
    corruptions: str | Sequence[str] | None = ...,
) -> dict[int, float]: ...
def mean_performance_under_corruption(
    table: Table,
    *,
    per_severity: bool = False,
    model: str | None = None,
    corruptions: str | Sequence[str] | None = None,
) -> float | dict[int, float]:
    r"""Mean accuracy over corruptions and severities, mPC (Michaelis et al., 2019).

    .. math:: \mathrm{mPC} = \frac{1}{N_c N_s} \sum_{c} \sum_{s} \mathrm{acc}_{c,s}

    Parameters
    ----------
    table : RobustnessResult, list of records or pandas.DataFrame
        Output of :func:`evaluate_corruptions` (clean rows are ignored).  Must be a complete
        corruption x severity grid.
    per_severity : bool, default False
        Return ``{severity: mean accuracy over corruptions}`` instead.
    model : str, optional
        Which model's rows to use when the table holds several.
    corruptions : str or sequence of str, optional
        Which corruptions to average over: names or shortcuts (``"benchmark"``, ``"noise"``, ...,
        see :func:`prunesafe.data.resolve_corruptions`).  Default ``None``: every corruption in the
        table **except the four extra CIFAR-C corruptions** (speckle_noise, gaussian_blur, spatter,
        saturate) -- for a full CIFAR-C table the 15 benchmark corruptions of Hendrycks & Dietterich
        (the literature's mPC/mCE), however the data was passed.  ``"table"``: every corruption in the
        table, extras included.  A requested corruption missing from the table raises ValueError.

    Examples
    --------
    >>> rows = [{"model": "m", "corruption": c, "severity": s, "n": 1, "accuracy": a, "ece": 0, "nll": 0}
    ...         for c, s, a in [("fog", 1, .9), ("fog", 2, .7), ("snow", 1, .8), ("snow", 2, .6)]]
    >>> round(mean_performance_under_corruption(rows), 6)
    0.75
    >>> {s: round(v, 6) for s, v in mean_performance_under_corruption(rows, per_severity=True).items()}
    {1: 0.85, 2: 0.65}
    >>> round(mean_performance_under_corruption(rows, corruptions="fog"), 6)
    0.8
    """
    grid, _ = _grid(_select(_records(table), model, "table"), "accuracy", "table", corruptions=corruptions)
    if per_severity:
        severities = sorted(next(iter(grid.values())))
        return {s: float(np.mean([grid[c][s] for c in grid])) for s in severities}
    return float(np.mean([v for cells in grid.values() for v in cells.values()]))


def relative_performance_under_corruption(
    table: Table, *, model: str | None = None, corruptions: str | Sequence[str] | None = None
) -> float:
    r"""rPC = mPC / clean accuracy (Michaelis et al., 2019).

    Needs the clean row (``evaluate_corruptions(..., clean=...)``).

    Parameters
    ----------
    table : RobustnessResult, list of records or pandas.DataFrame
        As in :func:`mean_performance_under_corruption`.
    model : str, optional
        Which model's rows to use when the table holds several.
    corruptions : str or sequence of str, optional
        Which corruptions to average over: names or shortcuts (``"benchmark"``, ``"noise"``, ...,
        see :func:`prunesafe.data.resolve_corruptions`).  Default ``None``: every corruption in the
        table **except the four extra CIFAR-C corruptions** (speckle_noise, gaussian_blur, spatter,
        saturate) -- for a full CIFAR-C table the 15 benchmark corruptions of Hendrycks & Dietterich
        (the literature's mPC/mCE), however the data was passed.  ``"table"``: every corruption in the
        table, extras included.  A requested corruption missing from the table raises ValueError.

    Examples
    --------
    >>> rows = [{"model": "m", "corruption": c, "severity": s, "n": 1, "accuracy": a, "ece": 0, "nll": 0}
    ...         for c, s, a in [("clean", 0, .9), ("fog", 1, .6), ("fog", 2, .3)]]
    >>> round(relative_performance_under_corruption(rows), 6)
    0.5
    """
    records = _select(_records(table), model, "table")
    grid, clean = _grid(records, "accuracy", "table", corruptions=corruptions)
    if clean is None:
        raise ValueError("table has no clean row; evaluate with clean=(images, labels) to get rPC")
    if clean == 0:
        raise ValueError("clean accuracy is 0, rPC = mPC / clean accuracy is undefined")
    mpc = float(np.mean([v for cells in grid.values() for v in cells.values()]))
    return mpc / clean


#: A reference model's errors keyed by corruption name: ``{corruption: {severity: error}}`` or
#: ``{corruption: mean error over severities}``, optionally with a ``"clean"`` float entry.
ReferenceErrors = Mapping[str, Mapping[int, float] | float]


def _is_error_mapping(reference: Any) -> bool:
    is_frame = hasattr(reference, "to_dict") and hasattr(reference, "columns")
    return isinstance(reference, Mapping) and not is_frame


def _error_value(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"reference error {where} must be a number in [0, 1], got {value!r}")
    v = float(value)
    if not 0.0 <= v <= 1.0:  # also rejects nan
        raise ValueError(f"reference error {where} must lie in [0, 1] (an error rate 1 - accuracy), got {v}")
    return v


def _reference_errors(
    reference: Mapping[Any, Any], clean_error: float | None
) -> tuple[dict[str, dict[int, float] | float], float | None]:
    """Validate a mapping reference: per-corruption errors (per severity or a mean) and the clean error."""
    errors: dict[str, dict[int, float] | float] = {}
    clean: float | None = None
    for c, value in reference.items():
        if not isinstance(c, str):
            raise TypeError(f"reference keys must be corruption names (str), got {c!r}")
        if c == CLEAN:
            if isinstance(value, Mapping):
                raise TypeError(f'reference["{CLEAN}"] must be the clean error (a float), got a mapping')
            clean = _error_value(value, f'["{CLEAN}"]')
        elif isinstance(value, Mapping):
            per_sev: dict[int, float] = {}
            for sev, err in value.items():
                if isinstance(sev, bool) or not isinstance(sev, (int, np.integer)):
                    raise TypeError(f"reference[{c!r}] keys must be int severities, got {sev!r}")
                per_sev[int(sev)] = _error_value(err, f"[{c!r}][{sev}]")
            if not per_sev:
                raise ValueError(f"reference[{c!r}] holds no severities")
            errors[c] = per_sev
        else:
            errors[c] = _error_value(value, f"[{c!r}]")
    if clean_error is not None:
        if clean is not None:
            raise ValueError(
                f'the clean reference error is given twice (reference["{CLEAN}"] and '
                "reference_clean_error); give it once"
            )
        clean = _error_value(clean_error, "reference_clean_error")
    return errors, clean


@overload
def mean_corruption_error(
    table: Table,
    reference: Table | ReferenceErrors,
    *,
    relative: bool = ...,
    per_corruption: Literal[False] = ...,
    model: str | None = ...,
    reference_model: str | None = ...,
    corruptions: str | Sequence[str] | None = ...,
    reference_clean_error: float | None = ...,
) -> float: ...
@overload
def mean_corruption_error(
    table: Table,
    reference: Table | ReferenceErrors,
    *,
    relative: bool = ...,
    per_corruption: Literal[True],
    model: str | None = ...,
    reference_model: str | None = ...,
    corruptions: str | Sequence[str] | None = ...,
    reference_clean_error: float | None = ...,
) -> dict[str, float]: ...
def mean_corruption_error(
    table: Table,
    reference: Table | ReferenceErrors,
    *,
    relative: bool = False,
    per_corruption: bool = False,
    model: str | None = None,
    reference_model: str | None = None,
    corruptions: str | Sequence[str] | None = None,
    reference_clean_error: float | None = None,
) -> float | dict[str, float]:
    r"""mCE or relative mCE against a reference model (Hendrycks & Dietterich, 2019).

    With errors :math:`E = 1 - \mathrm{acc}`, summed over the severities :math:`s` of the table:

    .. math::
        \mathrm{CE}_c = \frac{\sum_s E_{s,c}}{\sum_s E^{\mathrm{ref}}_{s,c}}, \qquad
        \mathrm{rCE}_c = \frac{\sum_s (E_{s,c} - E_{\mathrm{clean}})}
                              {\sum_s (E^{\mathrm{ref}}_{s,c} - E^{\mathrm{ref}}_{\mathrm{clean}})}

    and mCE is the mean of :math:`\mathrm{CE}_c` over the table's corruptions, or over ``corruptions``
    when given (ratios; multiply by 100 for the paper's percentages).  The paper normalises
    ImageNet-C by AlexNet; for CIFAR the user picks the reference, e.g. the unpruned model's table.

    Parameters
    ----------
    table : RobustnessResult, list of records or pandas.DataFrame
        The evaluated model.
    reference : RobustnessResult, list of records, pandas.DataFrame or mapping
        The reference model: its evaluation table (with every (corruption, severity) cell of
        ``table``; ``relative=True`` needs clean rows in both), or its **errors** (``1 - accuracy``,
        not accuracies) keyed by corruption name, e.g. published numbers:

        * ``{"fog": {1: 0.21, 2: 0.25, ...}}`` -- error per severity (must cover the table's
          severities); CE uses the formulas above;
        * ``{"fog": 0.25}`` -- the reference's *mean* error over the table's severities, so
          :math:`\mathrm{CE}_c = \mathrm{mean}_s E_{s,c} / E^{\mathrm{ref}}_c` and
          :math:`\mathrm{rCE}_c = \mathrm{mean}_s (E_{s,c} - E_{\mathrm{clean}}) /
          (E^{\mathrm{ref}}_c - E^{\mathrm{ref}}_{\mathrm{clean}})` (the same values when the
          per-severity errors average to it).

        The reference's clean error for ``relative=True`` is the mapping's ``"clean"`` entry (a
        float) or ``reference_clean_error``.
    relative : bool, default False
        Relative mCE instead of mCE.
    per_corruption : bool, default False
        Return ``{corruption: CE_c}`` instead of the mean.
    model, reference_model : str, optional
        Which model's rows to use when a table holds several (``reference_model`` only for a
        table reference).
    reference_clean_error : float, optional
        Clean error of a mapping reference (instead of its ``"clean"`` entry); only with a
        mapping reference.
    corruptions : str or sequence of str, optional
        Which of the table's corruptions to average over: names or shortcuts (``"benchmark"``,
        ``"noise"``, ..., see :func:`prunesafe.data.resolve_corruptions`).  Default ``None``: every
        corruption in ``table`` -- which for a CIFAR-C evaluation of all 19 corruptions is *not* the
        benchmark set.  Pass ``corruptions="benchmark"`` (the 15 of Hendrycks & Dietterich) for
        numbers comparable with the literature.  A requested corruption missing from the table
        raises ValueError.

    Examples
    --------
    >>> def rows(accs):
    ...     return [{"model": "m", "corruption": c, "severity": s, "n": 1, "accuracy": a, "ece": 0, "nll": 0}
    ...             for (c, s), a in accs.items()]
    >>> pruned = rows({("clean", 0): .9, ("fog", 1): .7, ("fog", 2): .5})
    >>> dense = rows({("clean", 0): .9, ("fog", 1): .8, ("fog", 2): .6})
    >>> round(mean_corruption_error(pruned, dense), 6)  # (0.3 + 0.5) / (0.2 + 0.4)
    1.333333
    >>> round(mean_corruption_error(pruned, dense, relative=True), 6)  # (0.2 + 0.4) / (0.1 + 0.3)
    1.5
    >>> round(mean_corruption_error(pruned, {"fog": {1: 0.2, 2: 0.4}}), 6)  # reference errors
    1.333333
    >>> round(mean_corruption_error(pruned, {"fog": 0.3, "clean": 0.1}, relative=True), 6)
    1.5
    """
    records = _select(_records(table), model, "table")
    grid, clean = _grid(records, "accuracy", "table", corruptions=corruptions)
    if _is_error_mapping(reference):
        if reference_model is not None:
            raise ValueError("reference_model selects rows of a reference table; reference is a mapping")
        ref_err, ref_clean_err = _reference_errors(reference, reference_clean_error)
    else:
        if reference_clean_error is not None:
            raise ValueError(
                "reference_clean_error is only for a reference given as a mapping of errors; a reference "
                "table supplies its clean row"
            )
        ref_records = _select(_records(reference, "reference"), reference_model, "reference")
        _check_comparable(records, ref_records, set(grid) | {CLEAN})
        ref_acc, ref_clean = _grid(ref_records, "accuracy", "reference", complete=False, corruptions="table")
        ref_err = {c: {s: 1 - a for s, a in cells.items()} for c, cells in ref_acc.items()}
        ref_clean_err = None if ref_clean is None else 1 - ref_clean
    missing = [c for c in grid if c not in ref_err]
    if missing:
        raise ValueError(
            f"reference lacks corruption(s) {missing} that the table has; evaluate the reference on "
            f"them too (reference has {sorted(ref_err)})"
        )
    holes: list[tuple[str, int]] = []
    for c in grid:
        ref_c = ref_err[c]
        if isinstance(ref_c, dict):
            holes.extend((c, s) for s in sorted(grid[c]) if s not in ref_c)
    if holes:
        raise ValueError(f"reference lacks severities for cells {holes[:5]}; evaluate it on them too")
    if relative and (clean is None or ref_clean_err is None):
        which = "table" if clean is None else "reference"
        how = (
            "evaluate with clean=..."
            if clean is None or not _is_error_mapping(reference)
            else 'give the mapping a "clean" entry or pass reference_clean_error='
        )
        raise ValueError(f"relative mCE needs a clean row in the {which}; {how}")
    ce: dict[str, float] = {}
    for c, cells in grid.items():
        sev = sorted(cells)
        ref_c = ref_err[c]
        if relative and clean is not None and ref_clean_err is not None:
            if isinstance(ref_c, dict):
                num = sum((1 - cells[s]) - (1 - clean) for s in sev)
                den = sum(ref_c[s] - ref_clean_err for s in sev)
            else:
                num = sum((1 - cells[s]) - (1 - clean) for s in sev) / len(sev)
                den = ref_c - ref_clean_err
            if den <= 0:
                raise ValueError(
                    f"reference's corruption error on {c!r} does not exceed its clean error "
                    f"(E_ref - E_ref_clean over the severities = {den:.4g}); relative CE is undefined"
                )
        else:
            if isinstance(ref_c, dict):
                num = sum(1 - cells[s] for s in sev)
                den = sum(ref_c[s] for s in sev)
            else:
                num = sum(1 - cells[s] for s in sev) / len(sev)
                den = ref_c
            if den == 0:
                raise ValueError(
                    f"reference has zero error on {c!r} at every severity; CE (a ratio to it) is undefined"
                )
        ce[c] = num / den
    if per_corruption:
        return ce
    return float(np.mean(list(ce.values())))


def mean_ece_by_severity(
    table: Table, *, model: str | None = None, corruptions: str | Sequence[str] | None = None
) -> dict[int, float]:
    r"""Per severity, the mean over corruptions of the per-cell ECE ("averaged" ECE).

    .. math:: \overline{\mathrm{ECE}}_s = \frac{1}{N_c} \sum_c \mathrm{ECE}(\text{cell } c, s)

    Differs from :func:`pooled_ece_by_severity`: averaging per-cell ECEs keeps each corruption's own
    miscalibration (errors in opposite directions do not cancel) and weights corruptions equally.

    Parameters
    ----------
    table : RobustnessResult, list of records or pandas.DataFrame
        As in :func:`mean_performance_under_corruption`.
    model : str, optional
        Which model's rows to use when the table holds several.
    corruptions : str or sequence of str, optional
        Which corruptions to average over: names or shortcuts (``"benchmark"``, ``"noise"``, ...,
        see :func:`prunesafe.data.resolve_corruptions`).  Default ``None``: every corruption in the
        table **except the four extra CIFAR-C corruptions** (speckle_noise, gaussian_blur, spatter,
        saturate) -- for a full CIFAR-C table the 15 benchmark corruptions of Hendrycks & Dietterich
        (the literature's mPC/mCE), however the data was passed.  ``"table"``: every corruption in the
        table, extras included.  A requested corruption missing from the table raises ValueError.

    Examples
    --------
    >>> rows = [{"model": "m", "corruption": c, "severity": 1, "n": 1, "accuracy": 0, "ece": e, "nll": 0}
    ...         for c, e in [("fog", .1), ("snow", .3)]]
    >>> {s: round(v, 6) for s, v in mean_ece_by_severity(rows).items()}
    {1: 0.2}
    """
    records = _select(_records(table), model, "table")
    _check_one_convention(records, "table")
    grid, _ = _grid(records, "ece", "table", corruptions=corruptions)
    severities = sorted(next(iter(grid.values())))
    return {s: float(np.mean([grid[c][s] for c in grid])) for s in severities}


def pooled_ece_by_severity(
    table: RobustnessResult | None = None,
    *,
    n_bins: int | None = None,
    binning: Binning = "uniform",
    norm: Norm = "l1",
    model: str | None = None,
    corruptions: str | Sequence[str] | None = None,
    result: RobustnessResult | None = None,
) -> dict[int, float]:
    r"""Per severity, the ECE of all corruptions' predictions pooled together ("pooled" ECE).

    .. math:: \mathrm{ECE}^{\mathrm{pool}}_s = \mathrm{ECE}\big(\textstyle\bigcup_c \text{cell } (c, s)\big)

    Needs the logits, i.e. a :class:`RobustnessResult` from ``evaluate_corruptions(...,
    keep_logits=True)`` (a CSV/JSON table is not enough).  The ECE itself is
    :func:`prunesafe.metrics.calibration.expected_calibration_error`.

    Parameters
    ----------
    table : RobustnessResult
        With logits (one model's evaluation).  Named ``table`` like the argument of every other summary;
        the old keyword ``result=`` still works but raises a DeprecationWarning.
    n_bins : int, optional
        Bins of the pooled ECE (default: ``result.n_bins``).
    binning, norm
        As in :func:`~prunesafe.metrics.expected_calibration_error`.
    model : str, optional
        The model the result must belong to: a result's logits are not labelled by model, so this
        checks that every record of ``result`` has ``model == model`` and raises otherwise.
    corruptions : str or sequence of str, optional
        Which corruptions to average over: names or shortcuts (``"benchmark"``, ``"noise"``, ...,
        see :func:`prunesafe.data.resolve_corruptions`).  Default ``None``: every corruption in the
        table **except the four extra CIFAR-C corruptions** (speckle_noise, gaussian_blur, spatter,
        saturate) -- for a full CIFAR-C table the 15 benchmark corruptions of Hendrycks & Dietterich
        (the literature's mPC/mCE), however the data was passed.  ``"table"``: every corruption in the
        table, extras included.  A requested corruption missing from the table raises ValueError.

    Examples
    --------
    >>> import torch
    >>> res = RobustnessResult(records=[], logits={("fog", 1): torch.tensor([[2., 0.]]),
    ...                                            ("snow", 1): torch.tensor([[0., 2.]])},
    ...                        labels={("fog", 1): torch.tensor([0]), ("snow", 1): torch.tensor([0])})
    >>> {s: round(v, 4) for s, v in pooled_ece_by_severity(res, n_bins=10).items()}
    {1: 0.3808}
    """
    if result is not None:
        if table is not None:
            raise TypeError("pass the evaluation once: `table` (the old name `result=` is deprecated)")
        warnings.warn(
            "pooled_ece_by_severity(result=...) is deprecated; pass it as `table` (as for every summary)",
            DeprecationWarning,
            stacklevel=2,
        )
        table = result
    result = table
    if not isinstance(result, RobustnessResult):
        raise TypeError(
            "pooled_ece_by_severity needs a RobustnessResult with logits (evaluate_corruptions(..., "
            f"keep_logits=True)), got {type(result).__name__}; a records table has only per-cell ECEs -- "
            "use mean_ece_by_severity for those"
        )
    if model is not None:
        models = sorted({r["model"] for r in result.records})
        if models != [model]:
            raise ValueError(
                f"result holds rows of model(s) {models}, not only {model!r}; its logits belong to one "
                "evaluation -- pass the RobustnessResult of that model"
            )
    keys = [k for k in result.logits if k[0] != CLEAN]
    if not keys:
        raise ValueError(
            "result holds no corruption logits; evaluate with keep_logits=True (a table read from CSV/JSON "
            "has none)"
        )
    wanted = _wanted_corruptions(corruptions, {c for c, _ in keys}, "result")
    if wanted is not None:
        keys = [k for k in keys if k[0] in wanted]
    names = sorted({c for c, _ in keys})
    severities = sorted({s for _, s in keys})
    holes = [(c, s) for c in names for s in severities if (c, s) not in result.logits]
    if holes:
        raise ValueError(f"logits missing for cells {holes[:5]}; pooled ECE needs a complete grid")
    bins = result.n_bins if n_bins is None else n_bins
    out: dict[int, float] = {}
    for s in severities:
        logits = torch.cat([result.logits[(c, s)] for c in names])
        labels = torch.cat([result.labels[(c, s)] for c in names])
        out[s] = expected_calibration_error(logits, labels, n_bins=bins, binning=binning, norm=norm)
    return out
