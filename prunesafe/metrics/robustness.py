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
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, overload

import numpy as np
import torch
from torch import nn

from prunesafe._utils import module_device
from prunesafe.data.arrays import BatchBuffers, _as_int64_labels, _as_uint8_nhwc
from prunesafe.data.cifar_c import (
    CIFAR10C,
    SEVERITIES,
    CorruptedCIFAR,
    resolve_corruptions,
    resolve_severities,
)
from prunesafe.metrics._checks import check_n_bins
from prunesafe.metrics.calibration import expected_calibration_error, negative_log_likelihood

__all__ = [
    "CLEAN",
    "COLUMNS",
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
#: Column order of the table.
COLUMNS: tuple[str, ...] = ("model", "corruption", "severity", "n", "accuracy", "ece", "nll")

Binning = Literal["uniform", "quantile"]
Norm = Literal["l1", "l2", "max"]


class RobustnessRecord(TypedDict):
    """One row of the evaluation table."""

    model: str
    corruption: str
    severity: int
    n: int
    accuracy: float
    ece: float
    nll: float


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
        Bins used for the ``ece`` column.

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
                writer.writerow({k: r[k] for k in COLUMNS})  # type: ignore[literal-required]
        return out

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the records as a JSON list of objects; ``pandas.read_json`` reads it back."""
        out = Path(path)
        rows = [{k: _json_value(r[k]) for k in COLUMNS} for r in self.records]  # type: ignore[literal-required]
        out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        return out

    def to_pandas(self) -> Any:
        """The records as a ``pandas.DataFrame`` (pandas must be installed)."""
        import importlib

        pd: Any = importlib.import_module("pandas")
        return pd.DataFrame(self.records, columns=list(COLUMNS))

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> RobustnessResult:
        """Read a table written by :meth:`to_csv` (no logits)."""
        with open(path, newline="", encoding="utf-8") as fh:
            return cls([_coerce(row, f"{path}:{i + 2}") for i, row in enumerate(csv.DictReader(fh))])

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> RobustnessResult:
        """Read a table written by :meth:`to_json` (no logits)."""
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValueError(f"{path} must hold a JSON list of records")
        return cls([_coerce(row, f"{path}[{i}]") for i, row in enumerate(rows)])


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _coerce(row: Mapping[str, Any], where: str) -> RobustnessRecord:
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise ValueError(f"record {where} lacks column(s) {missing}; a table needs columns {list(COLUMNS)}")

    def num(key: str) -> float:
        v = row[key]
        return math.nan if v is None or v == "" else float(v)

    try:
        return RobustnessRecord(
            model=str(row["model"]),
            corruption=str(row["corruption"]),
            severity=int(row["severity"]),
            n=int(row["n"]),
            accuracy=num("accuracy"),
            ece=num("ece"),
            nll=num("nll"),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"record {where} has a non-numeric value: {exc}") from exc


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


def _cells(
    data: Any, corruptions: str | Sequence[str] | None, severities: int | str | Sequence[int] | None
) -> Iterator[tuple[str, int, Any, torch.Tensor]]:
    if data is None:
        if corruptions is not None or severities is not None:
            raise ValueError("corruptions/severities given but data is None; pass a CIFAR-C root or dataset")
        return iter(())
    if isinstance(data, (str, os.PathLike)):
        data = CIFAR10C(
            data,
            "benchmark" if corruptions is None else corruptions,
            SEVERITIES if severities is None else severities,
        )
        selected = None
    elif isinstance(data, CorruptedCIFAR):
        want_c = None if corruptions is None else set(resolve_corruptions(corruptions))
        want_s = None if severities is None else set(resolve_severities(severities))
        have = {(c.corruption, c.severity) for c in data.cells}
        selected = {
            (c, s)
            for c, s in have
            if (want_c is None or c in want_c) and (want_s is None or s in want_s)
        }
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
    else:
        raise TypeError(
            "data must be a CIFAR-C folder (str or path), a CIFAR10C/CIFAR100C dataset or None, got "
            f"{type(data).__name__}"
        )
    return (
        (c.corruption, c.severity, c.images, torch.from_numpy(np.ascontiguousarray(c.labels)))
        for c in data.cells
        if selected is None or (c.corruption, c.severity) in selected
    )


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
    progress: bool = True,
    model_name: str | None = None,
    keep_logits: bool = True,
) -> RobustnessResult:
    """Accuracy, ECE and NLL of ``model`` on clean data and every (corruption, severity) cell.

    Runs under ``torch.inference_mode`` with ``model.eval()`` (the previous train/eval mode is
    restored afterwards).  Images are streamed from the memory-mapped files through one
    preallocated uint8 staging buffer (pinned on CUDA) and one float buffer, so no file is loaded
    whole and the per-batch overhead over a bare ``model(x)`` is one copy and one division.

    Parameters
    ----------
    model : nn.Module
        Takes float NCHW inputs in ``[0, 1]`` (prunesafe models normalise internally) and returns
        logits ``(B, C)``.
    data : path, CIFAR10C, CIFAR100C or None
        A CIFAR-10-C folder (opened as :class:`~prunesafe.data.CIFAR10C`) or a dataset object (use
        :class:`~prunesafe.data.CIFAR100C` for CIFAR-100-C).  ``None`` evaluates ``clean`` only.
        Images are read straight from the memory maps: a dataset's ``transform`` is not applied
        (use :class:`RobustnessAccumulator` with your own loop for test-time transforms).
    corruptions : str or sequence of str, optional
        Names or shortcuts (``"benchmark"``, ``"all"``, ``"extra"``, ``"noise"``, ...).  Default:
        ``"benchmark"`` for a folder, the dataset's own selection for a dataset (a given value then
        picks a subset of it).
    severities : int, sequence of int or "all", optional
        Default: 1..5 for a folder, the dataset's selection for a dataset.
    clean : tuple, ArrayDataset or torchvision CIFAR dataset, optional
        Clean test data: ``(uint8 NHWC images, labels)`` or an object with ``.images/.labels`` or
        ``.data/.targets``.  Adds the ``("clean", 0)`` row used by rPC and relative mCE.
    batch_size : int, default 500
    device : torch.device or str, optional
        Device the model is on (default: that of its first parameter).  The model is not moved.
    n_bins : int, default 15
        Equal-width bins of the per-cell ECE (top-label, L1).
    progress : bool, default True
        tqdm progress bar over images.
    model_name : str, optional
        Value of the ``model`` column (default: the model's class name).
    keep_logits : bool, default True
        Keep every cell's logits in the result (``n x C`` float32 per cell; 38 MB for all 95
        CIFAR-10-C cells) so that :func:`pooled_ece_by_severity` can pool them.

    Returns
    -------
    RobustnessResult

    Examples
    --------
    >>> import numpy as np, torch
    >>> from prunesafe.models import cifar_resnet
    >>> imgs = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    >>> res = evaluate_corruptions(cifar_resnet(20), clean=(imgs, np.arange(8)), progress=False)
    >>> [(r["corruption"], r["severity"], r["n"]) for r in res.records]
    [('clean', 0, 8)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    n_bins = check_n_bins(n_bins)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    model_dev = module_device(model)
    dev = torch.device(device) if device is not None else model_dev
    if dev.type != model_dev.type or (dev.index is not None and dev.index != model_dev.index):
        raise ValueError(f"model is on {model_dev} but device={dev}; call model.to({str(dev)!r}) first")
    name = model_name if model_name is not None else type(model).__name__

    sources: list[tuple[str, int, Any, torch.Tensor]] = []
    if clean is not None:
        images, labels = _clean_arrays(clean)
        sources.append((CLEAN, 0, images, labels))
    sources.extend(_cells(data, corruptions, severities))
    if not sources:
        raise ValueError("nothing to evaluate: pass data (a CIFAR-C folder or dataset) and/or clean")

    result = RobustnessResult(records=[], n_bins=n_bins)
    buffers = BatchBuffers(batch_size, device=dev)
    total = sum(len(s[3]) for s in sources)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="img", desc=f"evaluating {name}", disable=not progress)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for corruption, severity, images, labels in sources:
                n = len(labels)
                logits: torch.Tensor | None = None
                for start, (x, _) in zip(
                    range(0, n, batch_size), buffers.batches(images, labels, release_pages=True), strict=True
                ):
                    out = model(x)
                    if logits is None:
                        if out.ndim != 2:
                            raise ValueError(
                                f"model must return logits of shape (batch, classes), got {tuple(out.shape)}"
                            )
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
                result.records.append(_cell_record(name, corruption, severity, logits, labels, n_bins))
                if keep_logits:
                    result.logits[(corruption, severity)] = logits
                    result.labels[(corruption, severity)] = labels
    finally:
        bar.close()
        model.train(was_training)
    return result


def _cell_record(
    model: str, corruption: str, severity: int, logits: torch.Tensor, labels: torch.Tensor, n_bins: int
) -> RobustnessRecord:
    return RobustnessRecord(
        model=model,
        corruption=corruption,
        severity=severity,
        n=int(labels.shape[0]),
        accuracy=float((logits.argmax(1) == labels).double().mean()),
        ece=expected_calibration_error(logits, labels, n_bins=n_bins),
        nll=negative_log_likelihood(logits, labels),
    )


class RobustnessAccumulator:
    """Stateful counterpart of :func:`evaluate_corruptions` for your own evaluation loop.

    Feed it logits per (corruption, severity) cell -- in any order, in as many batches as you like --
    and :meth:`compute` returns the same :class:`RobustnessResult` table.

    Parameters
    ----------
    model_name : str, default "model"
        Value of the ``model`` column.
    n_bins : int, default 15
        Bins of the per-cell ECE.

    Examples
    --------
    >>> import torch
    >>> acc = RobustnessAccumulator(model_name="m")
    >>> acc.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), "fog", 1)
    >>> acc.update(torch.tensor([[3.0, 0.0]]), torch.tensor([0]), "clean", 0)
    >>> [(r["corruption"], r["severity"], r["n"], r["accuracy"]) for r in acc.compute().records]
    [('fog', 1, 2, 0.5), ('clean', 0, 1, 1.0)]
    """

    def __init__(self, *, model_name: str = "model", n_bins: int = 15) -> None:
        self.model_name = model_name
        self.n_bins = check_n_bins(n_bins)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._logits: dict[tuple[str, int], list[torch.Tensor]] = {}
        self._labels: dict[tuple[str, int], list[torch.Tensor]] = {}
        self._num_classes: int | None = None

    def update(self, logits: Any, labels: Any, corruption: str, severity: int) -> None:
        """Add a batch of ``logits`` ``(B, C)`` and ``labels`` ``(B,)`` to cell (corruption, severity).

        Use ``corruption="clean", severity=0`` for clean data.
        """
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

    def compute(self, *, keep_logits: bool = True) -> RobustnessResult:
        """The table, one record per cell in first-seen order (and the logits when ``keep_logits``)."""
        if not self._logits:
            raise ValueError("nothing accumulated yet; call update() first")
        result = RobustnessResult(records=[], n_bins=self.n_bins)
        for key, chunks in self._logits.items():
            logits, labels = torch.cat(chunks), torch.cat(self._labels[key])
            if labels.numel() == 0:
                raise ValueError(f"cell {key} received only empty batches")
            result.records.append(_cell_record(self.model_name, *key, logits, labels, self.n_bins))
            if keep_logits:
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
    """The corruption names a summary averages over (``None``: all of the table's).

    Names and shortcuts are expanded with :func:`prunesafe.data.resolve_corruptions`; a name that is
    not a CIFAR-C corruption is accepted when the table has it (custom corruptions).  A requested
    corruption that the table lacks raises.
    """
    if corruptions is None:
        return None
    have = set(available)
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
        table -- which for a CIFAR-C evaluation of all 19 corruptions is *not* the benchmark set.
        Pass ``corruptions="benchmark"`` (the 15 of Hendrycks & Dietterich) for numbers comparable
        with the literature.  A requested corruption missing from the table raises ValueError.

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
        table -- which for a CIFAR-C evaluation of all 19 corruptions is *not* the benchmark set.
        Pass ``corruptions="benchmark"`` (the 15 of Hendrycks & Dietterich) for numbers comparable
        with the literature.  A requested corruption missing from the table raises ValueError.

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
        raise ValueError(
            f"reference error {where} must lie in [0, 1] (an error rate 1 - accuracy), got {v}"
        )
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
        ref_acc, ref_clean = _grid(ref_records, "accuracy", "reference", complete=False)
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
        table -- which for a CIFAR-C evaluation of all 19 corruptions is *not* the benchmark set.
        Pass ``corruptions="benchmark"`` (the 15 of Hendrycks & Dietterich) for numbers comparable
        with the literature.  A requested corruption missing from the table raises ValueError.

    Examples
    --------
    >>> rows = [{"model": "m", "corruption": c, "severity": 1, "n": 1, "accuracy": 0, "ece": e, "nll": 0}
    ...         for c, e in [("fog", .1), ("snow", .3)]]
    >>> {s: round(v, 6) for s, v in mean_ece_by_severity(rows).items()}
    {1: 0.2}
    """
    grid, _ = _grid(_select(_records(table), model, "table"), "ece", "table", corruptions=corruptions)
    severities = sorted(next(iter(grid.values())))
    return {s: float(np.mean([grid[c][s] for c in grid])) for s in severities}


def pooled_ece_by_severity(
    result: RobustnessResult,
    *,
    n_bins: int | None = None,
    binning: Binning = "uniform",
    norm: Norm = "l1",
    model: str | None = None,
    corruptions: str | Sequence[str] | None = None,
) -> dict[int, float]:
    r"""Per severity, the ECE of all corruptions' predictions pooled together ("pooled" ECE).

    .. math:: \mathrm{ECE}^{\mathrm{pool}}_s = \mathrm{ECE}\big(\textstyle\bigcup_c \text{cell } (c, s)\big)

    Needs the logits, i.e. a :class:`RobustnessResult` from ``evaluate_corruptions(...,
    keep_logits=True)`` (a CSV/JSON table is not enough).  The ECE itself is
    :func:`prunesafe.metrics.calibration.expected_calibration_error`.

    Parameters
    ----------
    result : RobustnessResult
        With logits (one model's evaluation).
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
        table -- which for a CIFAR-C evaluation of all 19 corruptions is *not* the benchmark set.
        Pass ``corruptions="benchmark"`` (the 15 of Hendrycks & Dietterich) for numbers comparable
        with the literature.  A requested corruption missing from the table raises ValueError.

    Examples
    --------
    >>> import torch
    >>> res = RobustnessResult(records=[], logits={("fog", 1): torch.tensor([[2., 0.]]),
    ...                                            ("snow", 1): torch.tensor([[0., 2.]])},
    ...                        labels={("fog", 1): torch.tensor([0]), ("snow", 1): torch.tensor([0])})
    >>> {s: round(v, 4) for s, v in pooled_ece_by_severity(res, n_bins=10).items()}
    {1: 0.3808}
    """
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
