"""``run_study``: prune -> fine-tune -> evaluate over models x methods x ratios x seeds, resumable.

The runner only assembles public pieces: :func:`~prunesafe.pruning.prune_model`,
:func:`~prunesafe.models.fit` with the FINETUNE / BASELINE recipes, :func:`~prunesafe.models.load_weights`,
:func:`~prunesafe.metrics.evaluate_corruptions` (plus the calibration functions on the logits it keeps),
:func:`~prunesafe.metrics.fit_temperature`, :func:`~prunesafe.pruning.pruning_report` and
:func:`~prunesafe.pruning.save_pruned`.

Jobs are ``(model, method, ratio, seed)``; ``method`` is ``"none"`` for the unpruned model and
``"control"`` for the unpruned model fine-tuned with the same recipe and seed.  Every finished job appends
its rows (clean + every corruption cell) to ``results.jsonl`` in one write, after its logits and checkpoint
files are in place, so a run killed at any point resumes from the last finished job.  Under ``torchrun``
the jobs are dealt to ranks by index (job ``i`` on rank ``i mod world_size``), every rank sends its results
to rank 0 with ``torch.distributed.gather_object``, and rank 0 writes them in job order.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunesafe.study.config import ModelSpec, StudyConfig, build_model, builder_of, config_diff
from prunesafe.study.data import CorruptionSource, StudyData, load_data
from prunesafe.study.fetch import prepare_data

__all__ = ["CONTRACT_COLUMNS", "Job", "StudyResult", "evaluate_model", "plan_jobs", "run_study"]

logger = logging.getLogger("prunesafe.study")

#: Columns of ``results.jsonl`` that scripts may code against (more columns may follow them).
CONTRACT_COLUMNS: tuple[str, ...] = (
    "model",
    "method",
    "ratio",
    "seed",
    "finetune_epochs",
    "corruption",
    "severity",
    "n",
    "accuracy",
    "ece",
    "ece_equal_mass",
    "nll",
    "brier",
    "params",
    "macs",
    "achieved_ratio",
    "config_hash",
    "version",
    "bins",
    "edges",
    "edges_equal_mass",
    "norm",
)
#: Further columns, after the contract ones.
EXTRA_COLUMNS: tuple[str, ...] = (
    "temperature",
    "ece_ts",
    "ece_equal_mass_ts",
    "nll_ts",
    "brier_ts",
    "params_dense",
    "macs_dense",
    "unit",
    "dataset",
    "corruptions_from",
    "status",
    "job",
)
COLUMNS: tuple[str, ...] = CONTRACT_COLUMNS + EXTRA_COLUMNS

_EXAMPLE = (1, 3, 32, 32)


# ----------------------------------------------------------------------------------------------
# jobs
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One grid cell: a model, a method (``"none"``, ``"control"`` or a pruning method), a ratio, a seed."""

    index: int
    model: str
    method: str
    ratio: float
    seed: int

    @property
    def key(self) -> tuple[str, str, float, int]:
        """``(model, method, ratio, seed)``, the identity of the job in ``results.jsonl``."""
        return (self.model, self.method, self.ratio, self.seed)

    @property
    def slug(self) -> str:
        """File-name form, e.g. ``resnet20__filter__r0.300__s0``."""
        return f"{self.model}__{self.method}__r{self.ratio:.3f}__s{self.seed}"


def plan_jobs(config: StudyConfig) -> list[Job]:
    """All jobs of the study in their fixed order (model, seed, then none / control / method x ratio).

    Examples
    --------
    >>> cfg = StudyConfig.from_dict({"models": ["resnet20"], "methods": ["filter"], "ratios": [0.5],
    ...                              "seeds": [0, 1]})
    >>> [(j.method, j.ratio, j.seed) for j in plan_jobs(cfg)][:3]
    [('none', 0.0, 0), ('control', 0.0, 0), ('filter', 0.5, 0)]
    >>> len(plan_jobs(cfg))
    6
    """
    keys: list[tuple[str, str, float, int]] = []
    for m in config.models:
        for seed in config.seeds:
            keys.append((m.label, "none", 0.0, seed))
            if config.control:
                keys.append((m.label, "control", 0.0, seed))
            for method in config.methods_of(m):
                for ratio in config.ratios_of(m):
                    keys.append((m.label, method.label, ratio, seed))
    return [Job(i, *k) for i, k in enumerate(keys)]


# ----------------------------------------------------------------------------------------------
# result object
# ----------------------------------------------------------------------------------------------
@dataclass
class StudyResult:
    """What :func:`run_study` returns: the tidy rows, the summaries and where the files are.

    Attributes
    ----------
    records : list of dict
        The rows of ``results.jsonl`` (one per model x method x ratio x seed x cell).
    summary : list of dict
        The rows of ``summary.csv`` (one per model x method x ratio x seed).
    verdict : list of dict
        The verdict table (one row per model x method x ratio x reference x metric).
    out : Path
        The run folder.
    files : dict
        Name -> path of every output written.
    """

    records: list[dict[str, Any]]
    summary: list[dict[str, Any]] = field(default_factory=list)
    verdict: list[dict[str, Any]] = field(default_factory=list)
    out: Path = Path(".")
    files: dict[str, Path] = field(default_factory=dict)

    def to_pandas(self) -> Any:
        """The records as a ``pandas.DataFrame`` (pandas must be installed)."""
        import importlib

        pd: Any = importlib.import_module("pandas")
        return pd.DataFrame(self.records)

    def summary_pandas(self) -> Any:
        """The summary as a ``pandas.DataFrame``."""
        import importlib

        pd: Any = importlib.import_module("pandas")
        return pd.DataFrame(self.summary)


# ----------------------------------------------------------------------------------------------
# distributed helpers (torch.distributed only; nothing home-made)
# ----------------------------------------------------------------------------------------------
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    owned: bool = False  # we initialised the process group, so we destroy it

    @property
    def active(self) -> bool:
        return self.world > 1


def _init_dist(device: str) -> _Dist:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return _Dist()
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), True)


def _rank_device(device: str, d: _Dist) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and d.active and dev.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def _gather(obj: Any, d: _Dist) -> list[Any]:
    """Every rank's ``obj`` on rank 0 (rank order); other ranks get ``[]``."""
    if not d.active:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * d.world if d.rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return list(out) if out is not None else []


def _broadcast(obj: Any, d: _Dist) -> Any:
    if not d.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----------------------------------------------------------------------------------------------
# run folder: config, rows, resume
# ----------------------------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _prepare_folder(config: StudyConfig) -> Path:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("checkpoints", "logits", "figures", "base"):
        (out / sub).mkdir(exist_ok=True)
    cfg_file = out / "config.json"
    current = config.to_dict(hashable_only=True)
    if cfg_file.is_file():
        saved = json.loads(cfg_file.read_text(encoding="utf-8"))
        old = saved.get("config", {})
        if saved.get("config_hash") != config.config_hash():
            differing = config_diff(old, current)
            raise ValueError(
                f"out: {out} holds a run with a different config (keys that differ: "
                f"{', '.join(differing) or 'unknown'}); pass another --out for the new config, or restore "
                "those "
                "keys to resume the old run"
            )
    elif (out / "results.jsonl").is_file():
        raise ValueError(
            f"out: {out}/results.jsonl exists but {cfg_file} does not; pass another --out (rows of an "
            "unknown "
            "config are never mixed with new ones)"
        )
    else:
        payload = {"config_hash": config.config_hash(), "config": current, "full_config": config.to_dict()}
        _write_atomic(cfg_file, (json.dumps(payload, indent=1) + "\n").encode("utf-8"))
    return out


def read_rows(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl``; a partly written last line (killed run) is dropped (cut if ``repair``)."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    rows = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    if repair and end != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(end)
    return [{k: (math.nan if v is None and k not in ("status",) else v) for k, v in r.items()} for r in rows]


def _finished_jobs(out: Path, jobs: Sequence[Job], n_cells: int) -> set[int]:
    """Indices of jobs whose rows are all in ``results.jsonl``; rows of a half-written job are cut off."""
    path = out / "results.jsonl"
    rows = read_rows(path, repair=True)
    by_job: dict[int, int] = {}
    for r in rows:
        by_job[int(r["job"])] = by_job.get(int(r["job"]), 0) + 1
    done = {j for j, k in by_job.items() if k == n_cells}
    partial = [j for j, k in by_job.items() if k != n_cells]
    if partial:  # only the job written last can be partial (one write per job); drop its lines
        lines = path.read_bytes().splitlines(keepends=True)
        keep = [ln for ln in lines if ln.strip() and int(json.loads(ln)["job"]) not in partial]
        _write_atomic(path, b"".join(keep))
    index = {j.index for j in jobs}
    unknown = done - index
    if unknown:
        raise ValueError(f"out: results.jsonl holds jobs {sorted(unknown)} that this config does not plan")
    return {j for j in done if (out / "logits" / f"{jobs[j].slug}.npy").is_file()}


def _append_rows(out: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    text = "".join(json.dumps({k: _json(v) for k, v in r.items()}) + "\n" for r in rows)
    with open(out / "results.jsonl", "ab") as fh:
        fh.write(text.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def _json(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
def _base_model(
    spec: ModelSpec, config: StudyConfig, seed: int, data: StudyData, device: torch.device
) -> nn.Module:
    """The unpruned starting point: the checkpoint, or a baseline trained with ``seed``."""
    from prunesafe.models import fit, load_weights

    model = build_model(spec.name, config.num_classes)
    if spec.checkpoint is not None:
        load_weights(model, spec.checkpoint)
        return with_channel_selection(model, spec).to(device).eval()
    if data.finetune is None:  # validated earlier
        raise RuntimeError("baseline training needs training data")
    params_hook = None
    if spec.sparsity:
        from prunesafe.pruning import SlimmingRegularizer

        params_hook = SlimmingRegularizer(spec.sparsity)
    model.to(device)
    from prunesafe.models import BASELINE

    recipe = BASELINE
    if spec.baseline_batch_size is not None:
        recipe = dataclasses.replace(BASELINE, batch_size=spec.baseline_batch_size)
    fit(
        model,
        data.finetune,
        recipe=recipe,
        epochs=spec.baseline_epochs,
        seed=seed,
        device=device,
        progress=config.progress,
        params_hook=params_hook,
    )
    return model.eval()  # channel selection is added when the saved baseline is loaded (_bases)


def with_channel_selection(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """``model`` with Liu et al.'s channel selection on its pre-activation BNs when ``spec`` asks for it.

    All channels stay selected (the model computes the same function); ``"channel"`` pruning then removes
    channels of those BNs for their branch only. Applied after loading or training, so checkpoint keys and
    the baseline recipe are unchanged.

    Examples
    --------
    >>> from prunesafe.models import cifar_preact_resnet
    >>> spec = ModelSpec("preact-resnet110", train="baseline", channel_selection=True)
    >>> m = with_channel_selection(cifar_preact_resnet(20), spec)
    >>> type(m.layer1[0].bn1).__name__
    'ChannelSelectionBatchNorm2d'
    """
    if spec.channel_selection:
        from prunesafe.pruning import add_channel_selection

        add_channel_selection(model, torch.zeros(1, 3, 32, 32, device=next(model.parameters()).device))
    return model


def _finetune(
    model: nn.Module, config: StudyConfig, data: StudyData, seed: int, device: torch.device
) -> None:
    from prunesafe.models import FINETUNE, fit

    if config.finetune_epochs == 0 or data.finetune is None:
        return
    recipe = dataclasses.replace(
        FINETUNE, epochs=config.finetune_epochs, lr=config.finetune_lr, batch_size=config.finetune_batch_size
    )
    fit(model, data.finetune, recipe=recipe, seed=seed, device=device, progress=config.progress)
    model.eval()


def _nan_logits_error(exc: BaseException) -> bool:
    text = str(exc)
    return "NaN" in text or "nan" in text or "infinite" in text or "non-finite" in text


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
def evaluate_model(
    model: nn.Module,
    data: StudyData,
    config: StudyConfig,
    *,
    name: str = "model",
    device: torch.device | str | None = None,
    temperature: float | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Evaluate one model on the study's clean and corrupted data; return rows and the stacked logits.

    The rows are :func:`~prunesafe.metrics.evaluate_corruptions`'s records (``n``, ``accuracy``, ``ece``,
    ``nll``) plus ``ece_equal_mass`` (``binning="quantile"``), ``brier`` and, when ``temperature`` is given,
    the same metrics of ``logits / temperature`` (``*_ts`` columns), all from the logits it keeps.
    ``logits`` stacks every cell's logits in row order (clean first).  A model whose logits are NaN/inf
    gives NaN metrics for those cells, with a warning.

    Examples
    --------
    >>> import numpy as np
    >>> from prunesafe.models import cifar_resnet
    >>> from prunesafe.study.data import StudyData
    >>> imgs = np.zeros((4, 32, 32, 3), np.uint8)
    >>> data = StudyData((imgs, np.arange(4)), None, None, None, "files")
    >>> cfg = StudyConfig.from_dict({"models": ["resnet20"], "progress": False})
    >>> rows, logits = evaluate_model(cifar_resnet(8), data, cfg)
    >>> rows[0]["corruption"], logits.shape
    ('clean', (4, 10))
    """
    from prunesafe.metrics import brier_score, evaluate_corruptions, expected_calibration_error

    cells = _cell_list(data)
    try:
        result = evaluate_corruptions(
            model,
            data.corrupted,
            clean=data.clean,
            n_bins=config.n_bins,
            batch_size=config.batch_size,
            device=device,
            progress=config.progress,
            model_name=name,
            keep_logits=True,
        )
    except ValueError as exc:
        if not _nan_logits_error(exc):
            raise
        warnings.warn(
            f"{name}: the model's outputs are NaN/inf ({exc}); its cells are recorded as NaN", stacklevel=2
        )
        return _nan_rows(name, cells), np.full(
            (sum(n for *_, n in cells), config.num_classes), np.nan, np.float32
        )

    rows: list[dict[str, Any]] = []
    blocks: list[np.ndarray] = []
    for rec in result.records:
        key = (rec["corruption"], rec["severity"])
        if key in result.logits:
            logits, labels = result.logits[key], result.labels[key]
        else:  # evaluate_corruptions keeps no logits of a non-finite cell
            logits = torch.full((int(rec["n"]), config.num_classes), math.nan)
            labels = torch.zeros(int(rec["n"]), dtype=torch.int64)
        row: dict[str, Any] = dict(rec)
        finite = bool(torch.isfinite(logits).all())
        if not finite:
            warnings.warn(
                f"{name}: NaN/inf outputs in cell {key}; its metrics are recorded as NaN",
                RuntimeWarning,
                stacklevel=2,
            )
            row.update(accuracy=math.nan, ece=math.nan, nll=math.nan)
        row["ece_equal_mass"] = (
            expected_calibration_error(logits, labels, n_bins=config.n_bins, binning="quantile")
            if finite
            else math.nan
        )
        row["brier"] = brier_score(logits, labels) if finite else math.nan
        row.update(_ts_metrics(logits, labels, temperature, config.n_bins, finite))
        row["status"] = "ok" if finite else "nan"
        rows.append(row)
        blocks.append(logits.numpy().astype(np.float32, copy=False))
    return rows, np.concatenate(blocks)


def _ts_metrics(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float | None, n_bins: int, finite: bool
) -> dict[str, float]:
    from prunesafe.metrics import brier_score, expected_calibration_error, negative_log_likelihood

    keys = ("ece_ts", "ece_equal_mass_ts", "nll_ts", "brier_ts")
    if temperature is None or not finite or not math.isfinite(temperature):
        return dict.fromkeys(keys, math.nan)
    scaled = logits / temperature
    return {
        "ece_ts": expected_calibration_error(scaled, labels, n_bins=n_bins),
        "ece_equal_mass_ts": expected_calibration_error(scaled, labels, n_bins=n_bins, binning="quantile"),
        "nll_ts": negative_log_likelihood(scaled, labels),
        "brier_ts": brier_score(scaled, labels),
    }


def _cell_list(data: StudyData) -> list[tuple[str, int, int]]:
    cells = [("clean", 0, len(data.clean[1]))]
    if data.corrupted is not None:
        cells += [(c.corruption, int(c.severity), len(c.labels)) for c in data.corrupted.cells]
    return cells


def _cell_labels(data: StudyData) -> np.ndarray:
    parts = [np.asarray(data.clean[1], dtype=np.int64)]
    if data.corrupted is not None:
        parts += [np.asarray(c.labels, dtype=np.int64) for c in data.corrupted.cells]
    return np.concatenate(parts)


def _nan_rows(name: str, cells: Sequence[tuple[str, int, int]]) -> list[dict[str, Any]]:
    nan = math.nan
    return [
        {
            "model": name,
            "corruption": c,
            "severity": s,
            "n": n,
            "accuracy": nan,
            "ece": nan,
            "nll": nan,
            "ece_equal_mass": nan,
            "brier": nan,
            "ece_ts": nan,
            "ece_equal_mass_ts": nan,
            "nll_ts": nan,
            "brier_ts": nan,
            "status": "nan",
        }
        for c, s, n in cells
    ]


def _temperature(
    model: nn.Module, data: StudyData, config: StudyConfig, device: torch.device
) -> float | None:
    from prunesafe.metrics import evaluate_corruptions, fit_temperature

    if not config.temperature_scaling or data.holdout is None:
        return None
    try:
        res = evaluate_corruptions(
            model,
            clean=data.holdout,
            batch_size=config.batch_size,
            device=device,
            progress=False,
            keep_logits=True,
        )
    except ValueError as exc:
        if _nan_logits_error(exc):
            return math.nan
        raise
    if ("clean", 0) not in res.logits:  # a non-finite cell keeps no logits
        return math.nan
    logits, labels = res.logits[("clean", 0)], res.labels[("clean", 0)]
    if not bool(torch.isfinite(logits).all()):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a bound hit is reported by the value itself
        return fit_temperature(logits, labels)


# ----------------------------------------------------------------------------------------------
# one job
# ----------------------------------------------------------------------------------------------
def _run_job(
    job: Job,
    spec: ModelSpec,
    base: nn.Module,
    config: StudyConfig,
    data: StudyData,
    device: torch.device,
    version: str,
    controls: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    from prunesafe.pruning import get_record, prune_model, pruning_report, save_pruned

    start = time.perf_counter()
    example = torch.zeros(*_EXAMPLE, device=device)  # tracing only; draws nothing from the RNG
    status = "ok"
    finetune_epochs = 0
    if job.method == "none":
        model = base
    else:
        if job.method == "control":
            model = copy.deepcopy(base)
        else:
            method = next(m for m in config.methods_of(spec) if m.label == job.method)
            torch.manual_seed(job.seed)  # random pruners draw from the global generator
            model = prune_model(base, method.name, job.ratio, example_inputs=example, **dict(method.options))
            control = (controls or {}).get((job.model, job.seed))
            if control is not None and _unchanged(base, model):
                # nothing was pruned: fine-tuning it is fine-tuning the control, bit for bit
                return _as_control(control, job, get_record(model), time.perf_counter() - start)
        finetune_epochs = config.finetune_epochs
        try:
            _finetune(model, config, data, job.seed, device)
        except FloatingPointError as exc:
            warnings.warn(
                f"{job.slug}: fine-tuning diverged ({exc}); its cells are recorded as NaN", stacklevel=2
            )
            status = "nan"
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(math.nan)
    model.eval()
    temperature = _temperature(model, data, config, device)
    rows, logits = evaluate_model(model, data, config, name=job.model, device=device, temperature=temperature)
    report = pruning_report(base, model, example)
    record = get_record(model)
    achieved = 0.0 if record is None or job.method in ("none", "control") else float(record.achieved_ratio)
    common = {
        "model": job.model,
        "method": job.method,
        "ratio": job.ratio,
        "seed": job.seed,
        "finetune_epochs": finetune_epochs,
        "params": report.nonzero_params_after,
        "macs": report.nonzero_macs_after,
        "achieved_ratio": achieved,
        "config_hash": config.config_hash(),
        "version": version,
        "bins": config.n_bins,
        "edges": "uniform",
        "edges_equal_mass": "quantile",
        "norm": "l1",
        "temperature": math.nan if temperature is None else temperature,
        "params_dense": report.params_after,
        "macs_dense": report.macs_after,
        "unit": None if record is None or job.method in ("none", "control") else record.unit,
        "dataset": config.dataset,
        "corruptions_from": data.corruptions_from,
        "job": job.index,
    }
    out_rows = []
    for r in rows:
        row = {**r, **common}
        if status == "nan":
            row["status"] = "nan"
        out_rows.append({c: row.get(c) for c in COLUMNS})
    checkpoint: bytes | None = None
    if job.method != "none":
        builder, kwargs = builder_of(spec.name, config.num_classes)
        buf = io.BytesIO()
        save_pruned(model, buf, builder=builder, builder_kwargs=kwargs)
        checkpoint = buf.getvalue()
    return {
        "job": job.index,
        "rows": out_rows,
        "logits": logits,
        "checkpoint": checkpoint,
        "seconds": time.perf_counter() - start,
        "rank": int(os.environ.get("RANK", "0")),
    }


def _log_job(job: Job, payload: Mapping[str, Any], progress: bool) -> None:
    clean = payload["rows"][0]
    corrupt = [r["accuracy"] for r in payload["rows"][1:]]
    mpc = float(np.mean(corrupt)) if corrupt else math.nan
    line = (
        f"[study] {job.model} {job.method:<12} ratio={job.ratio:.2f} seed={job.seed}: "
        f"clean acc={clean['accuracy']:.4f} ECE={clean['ece']:.4f} mPC={mpc:.4f} "
        f"({payload['seconds']:.1f} s on rank {payload.get('rank', 0)})"
    )
    logger.info(line)
    if progress and not logger.hasHandlers():  # no logging set up: still one line per finished job
        from tqdm.auto import tqdm

        tqdm.write(line, file=sys.stderr)


def _unchanged(base: nn.Module, model: nn.Module) -> bool:
    """True when ``model`` computes what ``base`` does: same modules, same effective tensors, no new hooks.

    A weight under an all-ones ``torch.nn.utils.prune`` mask counts as unchanged (its ``weight`` attribute is
    ``weight_orig * 1``), and so do the mask's forward pre-hooks; any other hook makes it "changed".
    """
    from torch.nn.utils import prune

    mods_b, mods_m = dict(base.named_modules()), dict(model.named_modules())
    if mods_b.keys() != mods_m.keys():
        return False
    for name, mb in mods_b.items():
        mm = mods_m[name]
        if type(mb) is not type(mm) or len(mm._forward_hooks) != len(mb._forward_hooks):
            return False
        extra = [h for h in mm._forward_pre_hooks.values() if not isinstance(h, prune.BasePruningMethod)]
        if len(extra) != len(mb._forward_pre_hooks):
            return False
        for key, tb in [*mb.named_parameters(recurse=False), *mb.named_buffers(recurse=False)]:
            tm = getattr(mm, key, None)
            if not isinstance(tm, torch.Tensor) or tm.shape != tb.shape or not torch.equal(tm, tb):
                return False
    return True


def _as_control(control: Mapping[str, Any], job: Job, record: Any, seconds: float) -> dict[str, Any]:
    """A ratio that pruned nothing: the control's fine-tuned model and numbers, under this job's name."""
    achieved = 0.0 if record is None else float(record.achieved_ratio)
    unit = None if record is None else record.unit
    rows = [
        {
            **r,
            "method": job.method,
            "ratio": job.ratio,
            "job": job.index,
            "achieved_ratio": achieved,
            "unit": unit,
        }
        for r in control["rows"]
    ]
    return {**control, "job": job.index, "rows": rows, "seconds": seconds}


def _reuse(payload: Mapping[str, Any], job: Job) -> dict[str, Any]:
    """The evaluated unpruned checkpoint again, under another seed (evaluation draws no random numbers)."""
    rows = [{**r, "seed": job.seed, "job": job.index} for r in payload["rows"]]
    return {**payload, "job": job.index, "rows": rows, "seconds": 0.0}


def _write_payload(out: Path, job: Job, payload: Mapping[str, Any]) -> None:
    """Logits and checkpoint first, rows last: a job counts as done only once its rows are written."""
    buf = io.BytesIO()
    np.save(buf, payload["logits"], allow_pickle=False)
    _write_atomic(out / "logits" / f"{job.slug}.npy", buf.getvalue())
    if payload["checkpoint"] is not None:
        _write_atomic(out / "checkpoints" / f"{job.slug}.pt", payload["checkpoint"])
    _append_rows(out, payload["rows"])


# ----------------------------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------------------------
def run_study(
    config: StudyConfig | Mapping[str, Any],
    *,
    corruption_source: CorruptionSource | None = None,
    stop_after: int | None = None,
) -> StudyResult:
    """Run (or resume) the study described by ``config`` and write every output into ``config.out``.

    Parameters
    ----------
    config : StudyConfig or mapping
        The study; validated (names, ranges, files, checkpoints, output folder) before any work.
    corruption_source : CorruptionSource, optional
        Where corrupted images come from (default: CIFAR-C files,
        :class:`~prunesafe.study.data.FileCorruptions`).
    stop_after : int, optional
        Stop after this many newly finished jobs without writing the reports (for tests of resume).

    Returns
    -------
    StudyResult
        Rows, summary, verdict and the paths of ``results.jsonl``, ``results.csv``, ``summary.csv``,
        ``report.md`` and the figures.  Under ``torchrun`` only rank 0 gets the full result.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "cifar10").mkdir(); (d / "CIFAR-10-C").mkdir()
    >>> rng = np.random.default_rng(0)
    >>> np.save(d / "cifar10/test_images.npy", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
    >>> np.save(d / "cifar10/test_labels.npy", rng.integers(0, 10, 8))
    >>> np.save(d / "CIFAR-10-C/fog.npy", rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8))
    >>> np.save(d / "CIFAR-10-C/labels.npy", rng.integers(0, 10, 40))
    >>> from prunesafe.models import cifar_resnet
    >>> import torch; torch.save(cifar_resnet(20).state_dict(), d / "r20.pt")
    >>> result = run_study({"models": [{"name": "resnet20", "checkpoint": str(d / "r20.pt")}],
    ...     "methods": ["unstructured"], "ratios": [0.5], "seeds": [0], "finetune_epochs": 0,
    ...     "control": False, "temperature_scaling": False, "corruptions": ["fog"], "severities": [1],
    ...     "data_dir": str(d), "out": str(d / "run"), "progress": False})
    >>> sorted({(r["method"], r["corruption"]) for r in result.records})
    [('none', 'clean'), ('none', 'fog'), ('unstructured', 'clean'), ('unstructured', 'fog')]
    """
    from prunesafe import __version__

    cfg = config if isinstance(config, StudyConfig) else StudyConfig.from_dict(config)
    d = _init_dist(cfg.device)
    try:
        error: BaseException | None = None
        if d.rank == 0:
            try:
                cfg = prepare_data(cfg, corruption_source)  # data step (study/fetch.py): fetch / list gaps
                cfg.validate()
                _prepare_folder(cfg)
            except (ValueError, TypeError, FileNotFoundError) as exc:
                error = exc
        error = _broadcast(error, d)
        if error is not None:
            raise error
        cfg = _broadcast(cfg, d)  # as resolved by prepare_data on rank 0
        out = Path(cfg.out)
        device = _rank_device(cfg.device, d)
        data = load_data(cfg, corruption_source)
        jobs = plan_jobs(cfg)
        cells = _cell_list(data)
        done: set[int] = set()
        if d.rank == 0:
            done = _finished_jobs(out, jobs, len(cells))
            _write_atomic(out / "labels.npy", _npy_bytes(_cell_labels(data)))
            _write_atomic(out / "cells.json", json.dumps(cells).encode("utf-8"))
        done = _broadcast(done, d)
        pending = [j for j in jobs if j.index not in done]
        if stop_after is not None:
            pending = pending[: max(0, stop_after)]
        bases = _bases(cfg, data, pending, device, d, out)
        specs = {m.label: m for m in cfg.models}
        _run_pending(pending, specs, bases, cfg, data, device, d, out, __version__)
        if stop_after is not None or d.rank != 0:
            return StudyResult(records=read_rows(out / "results.jsonl") if d.rank == 0 else [], out=out)
        from prunesafe.study.outputs import write_outputs

        return write_outputs(cfg, out, jobs)
    finally:
        if d.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _bases(
    cfg: StudyConfig, data: StudyData, pending: Sequence[Job], device: torch.device, d: _Dist, out: Path
) -> dict[tuple[str, int], nn.Module]:
    """The unpruned model of every (model, seed) a pending job needs; baselines are trained once and saved."""
    specs = {m.label: m for m in cfg.models}
    needed = sorted({(j.model, j.seed) for j in pending})
    bases: dict[tuple[str, int], nn.Module] = {}
    to_train: list[tuple[str, int]] = []
    for label, seed in needed:
        spec = specs[label]
        if spec.checkpoint is not None:
            key = (label, -1)
            if key not in bases:
                bases[key] = _base_model(spec, cfg, seed, data, device)
            bases[(label, seed)] = bases[key]
        else:
            to_train.append((label, seed))
    # baselines: saved ones are read on rank 0 and broadcast; the rest are dealt to ranks by index
    saved: dict[tuple[str, int], bytes] = {}
    if d.rank == 0:
        for label, seed in to_train:
            f = out / "base" / f"{label}__s{seed}.pt"
            if f.is_file():
                saved[(label, seed)] = f.read_bytes()
    saved = _broadcast(saved, d)
    missing = [k for k in to_train if k not in saved]
    for start in range(0, len(missing), d.world):
        mine = missing[start + d.rank] if start + d.rank < len(missing) else None
        blob = None
        if mine is not None:
            model = _base_model(specs[mine[0]], cfg, mine[1], data, device)
            blob = _npy_free_state(model)
        gathered = _gather((mine, blob), d)
        if d.rank == 0:
            for key, b in gathered:
                if key is not None:
                    _write_atomic(out / "base" / f"{key[0]}__s{key[1]}.pt", b)
                    saved[key] = b
        saved.update(_broadcast({k: v for k, v in saved.items() if k in missing}, d))
    from prunesafe.models import load_weights

    for label, seed in to_train:
        model = build_model(specs[label].name, cfg.num_classes)
        load_weights(model, torch.load(io.BytesIO(saved[(label, seed)]), weights_only=True))
        bases[(label, seed)] = with_channel_selection(model.to(device), specs[label]).eval()
    return bases


def _npy_free_state(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def _run_pending(
    pending: Sequence[Job],
    specs: Mapping[str, ModelSpec],
    bases: Mapping[tuple[str, int], nn.Module],
    cfg: StudyConfig,
    data: StudyData,
    device: torch.device,
    d: _Dist,
    out: Path,
    version: str,
) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc="study", unit="job", disable=not cfg.progress or d.rank != 0)
    unpruned: dict[str, dict[str, Any]] = {}  # a checkpoint's unpruned model is the same for every seed
    controls: dict[tuple[str, int], dict[str, Any]] = {}  # reused by ratios that prune nothing
    try:
        for start in range(0, len(pending), d.world):
            mine = pending[start + d.rank] if start + d.rank < len(pending) else None
            payload: dict[str, Any] | None = None
            if mine is not None:
                try:
                    spec = specs[mine.model]
                    if mine.method == "none" and spec.checkpoint is not None and mine.model in unpruned:
                        payload = _reuse(unpruned[mine.model], mine)
                    else:
                        base = bases[(mine.model, mine.seed)]
                        payload = _run_job(mine, spec, base, cfg, data, device, version, controls)
                    if mine.method == "none" and spec.checkpoint is not None:
                        unpruned[mine.model] = payload
                    if mine.method == "control":
                        controls[(mine.model, mine.seed)] = payload
                except Exception as exc:  # reported on rank 0 so no rank waits forever
                    if not d.active:
                        raise
                    payload = {
                        "job": mine.index,
                        "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
                    }
            gathered = _gather(payload, d)
            failure = None
            if d.rank == 0:
                for p in gathered:
                    if p is None:
                        continue
                    if "error" in p:
                        failure = failure or f"job {p['job']} failed on another rank: {p['error']}"
                        continue
                    job = pending[[j.index for j in pending].index(p["job"])]
                    _write_payload(out, job, p)
                    _log_job(job, p, cfg.progress)
                    bar.update(1)
            failure = _broadcast(failure, d)
            if failure:
                raise RuntimeError(failure)
    finally:
        bar.close()
