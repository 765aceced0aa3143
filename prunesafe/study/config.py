"""The study's configuration: :class:`StudyConfig`, validated before any work starts.

A config comes from a TOML or JSON file (:meth:`StudyConfig.from_file`), a dict
(:meth:`StudyConfig.from_dict`), a preset (:func:`prunesafe.study.presets.preset`) and command-line flags
(:meth:`StudyConfig.with_overrides`).  Every key and its default is listed in docs/study.md.  Validation
(:meth:`StudyConfig.validate`) checks everything that can be checked without running anything -- names,
ranges, files, that checkpoints fit their models, that the output folder is writable -- and raises a
``ValueError`` / ``FileNotFoundError`` naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

__all__ = [
    "ZOO",
    "MethodSpec",
    "ModelSpec",
    "StudyConfig",
    "build_model",
    "builder_of",
    "config_diff",
]

Dataset = Literal["cifar10", "cifar100"]
TrainMode = Literal["baseline"]
CorruptionsFrom = Literal["auto", "engine", "files"]

#: Keys that do not change any number (left out of ``config_hash``).
_UNHASHED = ("out", "progress", "notes", "figures", "reliability", "download")


def builder_of(name: str, num_classes: int = 10) -> tuple[str, dict[str, Any]]:
    """``(builder, builder_kwargs)`` of a zoo model, in the form :func:`~prunesafe.pruning.save_pruned` takes.

    Examples
    --------
    >>> builder_of("vgg16")
    ('prunesafe.models:cifar_vgg', {'depth': 16, 'batch_norm': True, 'num_classes': 10})
    """
    if name.startswith("resnet") and name[6:].isdigit() and int(name[6:]) != 164:
        return "prunesafe.models:cifar_resnet", {"depth": int(name[6:]), "num_classes": num_classes}
    if name == "resnet164":  # Liu et al. 2017: pre-activation bottleneck ResNet-164
        return "prunesafe.models:cifar_preact_resnet", {
            "depth": 164,
            "num_classes": num_classes,
            "block": "bottleneck",
        }
    if name == "preact-resnet110":
        return "prunesafe.models:cifar_preact_resnet", {"depth": 110, "num_classes": num_classes}
    if name.startswith("vgg") and name[3:].isdigit():
        return "prunesafe.models:cifar_vgg", {
            "depth": int(name[3:]),
            "batch_norm": True,
            "num_classes": num_classes,
        }
    raise ValueError(f"models[].name: unknown model {name!r}; choose one of {', '.join(ZOO)}")


#: Model names accepted in ``models[].name`` (VGGs are the batch-norm variants, as in the paper).
ZOO: tuple[str, ...] = (
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet164",
    "preact-resnet110",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
)


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """Build an untrained zoo model by its study name.

    Examples
    --------
    >>> type(build_model("resnet20")).__name__
    'CifarResNet'
    """
    if name not in ZOO:
        raise ValueError(f"models[].name: unknown model {name!r}; choose one of {', '.join(ZOO)}")
    import prunesafe.models

    builder, kwargs = builder_of(name, num_classes)
    model: nn.Module = getattr(prunesafe.models, builder.split(":")[1])(**kwargs)
    return model


# ----------------------------------------------------------------------------------------------
# small validation helpers
# ----------------------------------------------------------------------------------------------
def _suggest(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ValueError(
                f"{where}: unknown key {key!r}{_suggest(str(key), allowed)}; "
                f"allowed keys: {', '.join(allowed)}"
            )


def _int(value: Any, key: str, *, low: int | None = None, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an int, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{key} must be >= {low}, got {value}")
    return value


def _float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def _tuple(value: Any, key: str) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return (value,)
    return tuple(value)


def _ratios(value: Any, key: str) -> tuple[float, ...]:
    out = []
    for r in _tuple(value, key):
        f = _float(r, key)
        if not 0.0 <= f < 1.0:
            raise ValueError(
                f"{key}: ratio {r!r} is outside [0, 1); use a fraction such as 0.3 (30 % removed)"
            )
        out.append(f)
    if not out:
        raise ValueError(f"{key} must list at least one ratio, e.g. [0.0, 0.3, 0.6]")
    if len(set(out)) != len(out):
        raise ValueError(f"{key} lists a ratio twice: {out}")
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# specs
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodSpec:
    """One pruning method of the grid.

    Parameters
    ----------
    name : str
        A registered pruner (``prunesafe.pruning.registered_pruners()``).
    options : mapping, optional
        Keyword options passed to ``prune_model`` (e.g. ``{"layers": [...]}`` for ``"filter"``).
    label : str, optional
        Value of the ``method`` column (default ``name``); needed to tell two variants of one pruner apart.

    Examples
    --------
    >>> MethodSpec.from_value({"name": "filter", "options": {"norm": "l2"}, "label": "filter-l2"}).label
    'filter-l2'
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @classmethod
    def from_value(cls, value: Any, where: str = "methods") -> MethodSpec:
        """A method name or a ``{"name", "options", "label"}`` table."""
        if isinstance(value, MethodSpec):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            _check_keys(value, ("name", "options", "label"), where)
            if "name" not in value:
                raise ValueError(f"{where}: a method table needs a 'name' (e.g. name = \"filter\")")
            options = value.get("options", {})
            if not isinstance(options, Mapping):
                raise ValueError(f"{where}.options must be a table of keyword options, got {options!r}")
            return cls(str(value["name"]), dict(options), str(value.get("label", "") or ""))
        raise ValueError(f"{where}: a method is a name or a table with 'name', got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-serialisable)."""
        return {"name": self.name, "options": _plain(self.options), "label": self.label}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the study.

    Parameters
    ----------
    name : str
        Zoo name (:data:`ZOO`).
    checkpoint : str, optional
        Weights to start from (``load_weights`` format).  Exactly one of ``checkpoint`` and ``train``.
    train : {"baseline"}, optional
        Train the model from scratch with the BASELINE recipe (once per seed).
    baseline_epochs : int, optional
        Override the BASELINE recipe's 160 epochs (milestones rescale).
    baseline_batch_size : int, optional
        Override the BASELINE recipe's batch size (128).
    sparsity : float, optional
        Network-slimming λ added to the BN γ gradients while training the baseline (``SlimmingRegularizer``).
    channel_selection : bool, default False
        Give the pre-activation BNs of a pre-activation ResNet Liu et al.'s channel selection
        (:func:`~prunesafe.pruning.add_channel_selection`), so ``"channel"`` prunes them for their branch
        while the residual stream stays whole, as network slimming does on ResNet-164.
    methods, ratios : optional
        Override the study-level ``methods`` / ``ratios`` for this model.
    label : str, optional
        Value of the ``model`` column (default ``name``).

    Examples
    --------
    >>> ModelSpec.from_value("resnet20").train
    'baseline'
    """

    name: str
    checkpoint: str | None = None
    train: TrainMode | None = None
    baseline_epochs: int | None = None
    baseline_batch_size: int | None = None
    sparsity: float | None = None
    channel_selection: bool = False
    methods: tuple[MethodSpec, ...] | None = None
    ratios: tuple[float, ...] | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @classmethod
    def from_value(cls, value: Any, where: str = "models") -> ModelSpec:
        """A zoo name (trained from scratch) or a table with ``name`` and ``checkpoint`` / ``train``."""
        if isinstance(value, ModelSpec):
            return value
        if isinstance(value, str):
            return cls(value, train="baseline")
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: a model is a zoo name or a table with 'name', got {value!r}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        _check_keys(value, allowed, where)
        if "name" not in value:
            raise ValueError(f"{where}: a model table needs 'name' (one of {', '.join(ZOO)})")
        methods = value.get("methods")
        ratios = value.get("ratios")
        return cls(
            name=str(value["name"]),
            checkpoint=None if value.get("checkpoint") is None else os.fspath(value["checkpoint"]),
            train=value.get("train"),
            baseline_batch_size=_int(
                value.get("baseline_batch_size"), f"{where}.baseline_batch_size", low=1, allow_none=True
            ),
            baseline_epochs=_int(
                value.get("baseline_epochs"), f"{where}.baseline_epochs", low=1, allow_none=True
            ),
            sparsity=None
            if value.get("sparsity") is None
            else _float(value["sparsity"], f"{where}.sparsity"),
            channel_selection=_bool(value.get("channel_selection", False), f"{where}.channel_selection"),
            methods=None
            if methods is None
            else tuple(MethodSpec.from_value(m, f"{where}.methods") for m in _tuple(methods, where)),
            ratios=None if ratios is None else _ratios(ratios, f"{where}.ratios"),
            label=str(value.get("label", "") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-serialisable)."""
        return {
            "name": self.name,
            "checkpoint": self.checkpoint,
            "train": self.train,
            "baseline_epochs": self.baseline_epochs,
            "baseline_batch_size": self.baseline_batch_size,
            "sparsity": self.sparsity,
            # absent when False, so the hashes of configs written before this key existed still hold
            **({"channel_selection": True} if self.channel_selection else {}),
            "methods": None if self.methods is None else [m.to_dict() for m in self.methods],
            "ratios": None if self.ratios is None else list(self.ratios),
            "label": self.label,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return os.fspath(value)
    return value


_DEFAULT_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study run needs; see docs/study.md for the reference of every key.

    Build it with :meth:`from_dict`, :meth:`from_file` or a preset, then override fields with
    :meth:`with_overrides`.  The constructor only normalises types; :meth:`validate` (called by
    ``run_study``) checks names, ranges and files.

    Examples
    --------
    >>> cfg = StudyConfig.from_dict({"models": [{"name": "resnet20", "train": "baseline"}],
    ...                              "methods": ["unstructured"], "ratios": [0.0, 0.5], "seeds": [0]})
    >>> cfg.models[0].label, [m.name for m in cfg.methods], cfg.ratios
    ('resnet20', ['unstructured'], (0.0, 0.5))
    >>> len(cfg.config_hash())
    16
    """

    models: tuple[ModelSpec, ...]
    methods: tuple[MethodSpec, ...] = (
        MethodSpec("unstructured"),
        MethodSpec("filter"),
        MethodSpec("channel"),
    )
    ratios: tuple[float, ...] = _DEFAULT_RATIOS
    seeds: tuple[int, ...] = (0, 1, 2)
    finetune_epochs: int = 40
    finetune_lr: float = 1e-3
    finetune_batch_size: int = 64
    control: bool = True
    dataset: Dataset = "cifar10"
    data_dir: str = "data"
    clean_dir: str | None = None
    corruptions_dir: str | None = None
    corruptions: tuple[str, ...] = ("benchmark",)
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    n_test: int | None = None
    n_corrupted: int | None = None
    n_train: int | None = None
    n_holdout: int = 1000
    temperature_scaling: bool = True
    n_bins: int = 10
    bootstrap_resamples: int = 1000
    confidence: float = 0.95
    batch_size: int = 500
    device: str = "cpu"
    out: str = "results"
    reliability: tuple[str, ...] = ("auto",)
    figures: bool = True
    progress: bool = True
    notes: tuple[str, ...] = ()
    corruptions_from: CorruptionsFrom = "files"  # issue 11 (study/fetch.py): auto | engine | files
    download: bool = False  # issue 11: fetch missing data into data_dir first (study/fetch.py)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """All top-level keys."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyConfig:
        """Build from plain data (what a TOML / JSON file holds); unknown keys raise ``ValueError``."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a study config must be a mapping of keys to values, got {type(data).__name__}")
        _check_keys(data, cls.keys(), "study config")
        if "models" not in data or not data["models"]:
            raise ValueError(
                'models: the study needs at least one model, e.g. models = [{name = "resnet20", '
                'checkpoint = "resnet20.th"}]'
            )
        kw: dict[str, Any] = dict(data)
        kw["models"] = tuple(
            ModelSpec.from_value(m, f"models[{i}]") for i, m in enumerate(_tuple(data["models"], "models"))
        )
        if "methods" in kw:
            kw["methods"] = tuple(
                MethodSpec.from_value(m, "methods") for m in _tuple(kw["methods"], "methods")
            )
        if "ratios" in kw:
            kw["ratios"] = _ratios(kw["ratios"], "ratios")
        for key in ("seeds", "severities", "corruptions", "reliability", "notes"):
            if key in kw:
                kw[key] = _tuple(kw[key], key)
        for key in ("data_dir", "clean_dir", "corruptions_dir", "out"):
            if kw.get(key) is not None:
                kw[key] = os.fspath(kw[key])
        return cls(**kw)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> StudyConfig:
        """Read a ``.toml`` or ``.json`` file (relative paths in it are relative to the current folder)."""
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"config file {file} not found (--config expects a .toml or .json file)")
        text = file.read_text(encoding="utf-8")
        if file.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError as exc:  # Python 3.10: no TOML reader in the standard library
                raise ValueError(
                    f"{file}: reading TOML needs Python >= 3.11 (tomllib); write the config as JSON instead"
                ) from exc
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{file} is not valid TOML: {exc}") from exc
        elif file.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{file} is not valid JSON: {exc}") from exc
        else:
            raise ValueError(f"config file {file} must end in .toml or .json")
        return cls.from_dict(data)

    def with_overrides(self, **overrides: Any) -> StudyConfig:
        """A copy with some keys replaced (``None`` values are ignored, as for unset CLI flags).

        ``model`` / ``checkpoint`` override every model's name / checkpoint.

        Examples
        --------
        >>> cfg = StudyConfig.from_dict({"models": ["resnet20"]})
        >>> cfg.with_overrides(seeds=[3], ratios=None).seeds
        (3,)
        """
        data = self.to_dict(hashable_only=False)
        model = overrides.pop("model", None)
        checkpoint = overrides.pop("checkpoint", None)
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in data:
                raise ValueError(f"unknown override {key!r}{_suggest(key, list(data))}")
            data[key] = value
        if model is not None or checkpoint is not None:
            models = []
            for m in data["models"]:
                m = dict(m)
                if model is not None:
                    if m["name"] != model and m["label"] == m["name"]:
                        m["label"] = model
                    m["name"] = model
                if checkpoint is not None:
                    m["checkpoint"], m["train"] = os.fspath(checkpoint), None
                models.append(m)
            data["models"] = models
        return StudyConfig.from_dict(data)

    def to_dict(self, *, hashable_only: bool = False) -> dict[str, Any]:
        """Plain-data form (``from_dict(to_dict())`` round-trips); ``hashable_only`` drops unhashed keys."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if hashable_only and f.name in _UNHASHED:
                continue
            value = getattr(self, f.name)
            if f.name in ("models", "methods"):
                value = [m.to_dict() for m in value]
            out[f.name] = _plain(value)
        return out

    def config_hash(self) -> str:
        """16 hex digits naming the settings that change numbers (not ``out``, ``progress``, ``notes``)."""
        text = json.dumps(self.to_dict(hashable_only=True), sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    # -- derived -------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """10 for CIFAR-10, 100 for CIFAR-100."""
        return 100 if self.dataset == "cifar100" else 10

    def methods_of(self, model: ModelSpec) -> tuple[MethodSpec, ...]:
        """The methods run on ``model``."""
        return model.methods if model.methods is not None else self.methods

    def ratios_of(self, model: ModelSpec) -> tuple[float, ...]:
        """The ratios run on ``model``."""
        return model.ratios if model.ratios is not None else self.ratios

    def resolved_corruptions(self) -> tuple[str, ...]:
        """Corruption names after expanding shortcuts such as ``"benchmark"``."""
        from prunesafe.data import resolve_corruptions

        names: list[str] = []
        for item in self.corruptions:
            try:
                expanded = resolve_corruptions(item)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"corruptions: {exc}") from None
            names += [c for c in expanded if c not in names]
        return tuple(names)

    # -- validation ----------------------------------------------------------------------------------
    def validate(self, *, check_files: bool = True) -> StudyConfig:
        """Check every key; raise ``ValueError`` / ``FileNotFoundError`` naming the key and the fix.

        With ``check_files`` also the data files, the checkpoints (loaded into their models) and that
        ``out`` is writable.  Returns ``self``.
        """
        from prunesafe.pruning import get_pruner, registered_pruners

        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise ValueError(f"models: two models share the label {labels}; give them distinct 'label's")
        for i, m in enumerate(self.models):
            where = f"models[{i}]"
            if m.name not in ZOO:
                raise ValueError(
                    f"{where}.name: unknown model {m.name!r}{_suggest(m.name, ZOO)}; "
                    f"choose one of {', '.join(ZOO)}"
                )
            if m.train not in (None, "baseline"):
                raise ValueError(f'{where}.train must be "baseline" or left out, got {m.train!r}')
            if (m.checkpoint is None) == (m.train is None):
                raise ValueError(
                    f'{where}: give exactly one of checkpoint = "<file>" (start from trained weights) or '
                    'train = "baseline" (train from scratch with the BASELINE recipe)'
                )
            if m.channel_selection and m.name not in ("resnet164", "preact-resnet110"):
                raise ValueError(
                    f"{where}.channel_selection applies to pre-activation ResNets (resnet164, "
                    f"preact-resnet110), not {m.name!r}; remove it"
                )
            if m.sparsity is not None and (m.train is None or m.sparsity < 0):
                raise ValueError(f'{where}.sparsity (slimming λ >= 0) only applies with train = "baseline"')
            for j, method in enumerate(self.methods_of(m)):
                if method.name not in registered_pruners():
                    raise ValueError(
                        f"methods: unknown pruning method {method.name!r}"
                        f"{_suggest(method.name, registered_pruners())}; "
                        f"registered: {', '.join(registered_pruners())}"
                    )
                try:  # the pruner's own validation of its options, without touching a model
                    get_pruner(method.name)(0.0, **dict(method.options))
                except TypeError as exc:
                    raise ValueError(f"methods[{j}] ({method.label}).options: {exc}") from None
            mlabels = [x.label for x in self.methods_of(m)]
            if len(set(mlabels)) != len(mlabels) or {"none", "control"} & set(mlabels):
                raise ValueError(
                    f"methods: labels {mlabels} must be distinct and not 'none'/'control' (reserved); set "
                    "'label'"
                )
        for key in ("finetune_epochs", "n_holdout"):
            _int(getattr(self, key), key, low=0)
        if not 0.0 < _float(self.confidence, "confidence") < 1.0:
            raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {self.confidence}")
        for key in ("finetune_batch_size", "batch_size", "n_bins", "bootstrap_resamples"):
            _int(getattr(self, key), key, low=1)
        for key in ("n_test", "n_corrupted", "n_train"):
            _int(getattr(self, key), key, low=1, allow_none=True)
        if not (_float(self.finetune_lr, "finetune_lr") > 0):
            raise ValueError(f"finetune_lr must be > 0, got {self.finetune_lr}")
        if not self.seeds:
            raise ValueError("seeds must list at least one seed, e.g. seeds = [0, 1, 2]")
        for s in self.seeds:
            _int(s, "seeds", low=0)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds lists a seed twice: {list(self.seeds)}")
        if not self.severities:
            raise ValueError("severities must list at least one of 1..5")
        for s in self.severities:
            if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 5:
                raise ValueError(f"severities: {s!r} is outside 1..5 (CIFAR-C has severities 1, 2, 3, 4, 5)")
        if self.dataset not in ("cifar10", "cifar100"):
            raise ValueError(f'dataset must be "cifar10" or "cifar100", got {self.dataset!r}')
        self.resolved_corruptions()
        if self.corruptions_from not in ("auto", "engine", "files"):
            raise ValueError(f"corruptions_from must be auto, engine or files, got {self.corruptions_from!r}")
        for key in ("control", "temperature_scaling", "progress", "figures", "download"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be true or false, got {getattr(self, key)!r}")
        import torch

        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f'device: {exc}; use "cpu", "cuda" or "cuda:0"') from None
        if check_files:
            from prunesafe.study.data import check_data

            check_data(self)
            self._check_checkpoints()
            _check_writable(Path(self.out))
        return self

    def _check_checkpoints(self) -> None:
        from prunesafe.models import load_weights

        for i, m in enumerate(self.models):
            if m.checkpoint is None:
                continue
            if not Path(m.checkpoint).is_file():
                raise FileNotFoundError(f"models[{i}].checkpoint: file {m.checkpoint} not found")
            try:
                load_weights(build_model(m.name, self.num_classes), m.checkpoint)
            except ValueError as exc:
                raise ValueError(
                    f"models[{i}].checkpoint {m.checkpoint} does not fit models[{i}].name = {m.name!r}: {exc}"
                ) from None


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".prunesafe-write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise ValueError(
            f"out: cannot write to the output folder {out} ({exc}); pass --out <a writable folder>"
        ) from None


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two ``to_dict`` forms.

    Examples
    --------
    >>> config_diff({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}})
    ['b.c']
    """
    keys = sorted(set(old) | set(new))
    out: list[str] = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        name = f"{prefix}{k}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_diff(a, b, name + ".")
        elif a != b:
            out.append(name)
    return out
