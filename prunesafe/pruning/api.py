"""``prune_model``: one call for unstructured, filter and channel pruning.

Examples
--------
>>> import torch
>>> from prunesafe.models import cifar_resnet
>>> from prunesafe.pruning import prune_model
>>> model = cifar_resnet(20)
>>> pruned = prune_model(model, "unstructured", 0.5)
>>> pruned is model, pruned.prunesafe_pruning.method, pruned.prunesafe_pruning.achieved_ratio
(False, 'unstructured', 0.5)
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from prunesafe._utils import as_input_tuple, module_device
from prunesafe.pruning.base import Pruner, get_pruner, registered_pruners

__all__ = ["PruningRecord", "copy_model", "get_record", "prune_model"]

RECORD_ATTRIBUTE = "prunesafe_pruning"


def _plain(value: Any) -> Any:
    """JSON-friendly version of an option value (callables and objects become their repr)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


@dataclass
class PruningRecord:
    """What ``prune_model`` did, attached to the pruned model as ``model.prunesafe_pruning``.

    The number to read first is :attr:`achieved_ratio_of_all`: the fraction of ALL the model's
    ``unit`` (every conv filter, every BN channel, every conv weight) that this call removed.
    ``str(record)`` and :meth:`to_dict` lead with it.

    Attributes
    ----------
    method : str
        Registered name of the pruner.
    ratio : float
        Ratio asked for (with a ratio mapping: the unit-weighted mean of the asked per-layer ratios
        over the pruned layers; the mapping itself is :attr:`ratio_map`).
    achieved_ratio : float
        Fraction of ``unit`` actually removed (or masked).
    unit : str
        What the ratio counts ("weights", "filters", "channels", ...).
    options : dict
        The pruner's keyword options (callables stored as their ``repr``).
    pruned_modules : list of str
        Qualified names of the modules the pruner changed.
    history : list of dict
        Records of earlier ``prune_model`` calls on the same model, oldest first.
    achieved_ratio_of_all : float or None
        Fraction of ALL of the model's ``unit`` removed, for pruners that restrict ``ratio``
        to eligible layers ("filter": all conv filters; "channel": all BN channels); ``None``
        when the pruner does not report it.
    eligible_fraction : float or None
        Fraction of the model's ``unit`` that was eligible (``None`` when not reported).
    ratio_map : dict or None
        The ``{layer name or glob pattern: ratio}`` mapping passed as ``ratio`` (``None`` for a float).
    unit_layers : list of str
        The layers whose units ``ratio`` and ``achieved_ratio`` count (eligible convs / BNs / targeted
        weights), so that :func:`~prunesafe.pruning.pruning_report` can count them itself.
    notes : list of str
        Warnings of the run: few eligible units, constant ``|gamma|``, ``min_channels`` shortfall,
        verification skipped.
    verified : bool or None
        Whether ``verify`` checked the removed model against the masked original (``None``:
        the method has nothing to verify, e.g. masks).

    Examples
    --------
    >>> rec = PruningRecord("unstructured", 0.5, 0.5, "weights", {}, ["conv"])
    >>> PruningRecord.from_dict(rec.to_dict()) == rec
    True
    >>> rec = PruningRecord("filter", 0.5, 0.5, "filters", achieved_ratio_of_all=0.244,
    ...                     eligible_fraction=0.49)
    >>> print(rec)
    filter: 24.40% of ALL filters removed (49.00% eligible; 50.00% of those, 0.5 asked)
    """

    method: str
    ratio: float
    achieved_ratio: float
    unit: str
    options: dict[str, Any] = field(default_factory=dict)
    pruned_modules: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    achieved_ratio_of_all: float | None = None
    eligible_fraction: float | None = None
    ratio_map: dict[str, float] | None = None
    unit_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verified: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types (JSON- and ``torch.load(weights_only=True)``-safe), all-units fraction first."""
        plain: dict[str, Any] = _plain(asdict(self))
        first = ["method", "unit", "achieved_ratio_of_all", "eligible_fraction", "achieved_ratio", "ratio"]
        out = {k: plain[k] for k in first}
        out.update({k: v for k, v in plain.items() if k not in out})
        return out

    def __str__(self) -> str:
        asked = self.ratio_map if self.ratio_map is not None else self.ratio
        if self.achieved_ratio_of_all is None:
            removed = f"{self.achieved_ratio:.2%} of the targeted {self.unit} removed"
            return f"{self.method}: {removed} ({asked} asked)"
        eligible = "" if self.eligible_fraction is None else f"{self.eligible_fraction:.2%} eligible; "
        return (
            f"{self.method}: {self.achieved_ratio_of_all:.2%} of ALL {self.unit} removed "
            f"({eligible}{self.achieved_ratio:.2%} of those, {asked} asked)"
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PruningRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            method=str(data["method"]),
            ratio=float(data["ratio"]),
            achieved_ratio=float(data["achieved_ratio"]),
            unit=str(data["unit"]),
            options=dict(data.get("options", {})),
            pruned_modules=list(data.get("pruned_modules", [])),
            history=list(data.get("history", [])),
            achieved_ratio_of_all=_optional_float(data.get("achieved_ratio_of_all")),
            eligible_fraction=_optional_float(data.get("eligible_fraction")),
            ratio_map=None
            if data.get("ratio_map") is None
            else {str(k): float(v) for k, v in dict(data["ratio_map"]).items()},
            unit_layers=[str(n) for n in data.get("unit_layers", [])],
            notes=[str(n) for n in data.get("notes", [])],
            verified=None if data.get("verified") is None else bool(data["verified"]),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def get_record(model: nn.Module) -> PruningRecord | None:
    """The :class:`PruningRecord` of a model returned by ``prune_model`` (``None`` otherwise)."""
    record = getattr(model, RECORD_ATTRIBUTE, None)
    return record if isinstance(record, PruningRecord) else None


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works on models with :mod:`torch.nn.utils.prune` masks after a forward.

    The pruning hook stores ``weight = weight_orig * weight_mask`` as a plain attribute; after a
    forward pass with autograd on it is a non-leaf tensor, which ``deepcopy`` refuses.  The
    attributes are swapped for detached copies during the copy and restored afterwards.

    Examples
    --------
    >>> from torch import nn
    >>> copy_model(nn.Linear(2, 2)).in_features
    2
    """
    saved: list[tuple[nn.Module, str, torch.Tensor]] = []
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            name = getattr(hook, "_tensor_name", None)
            if isinstance(name, str) and name in module.__dict__:
                value = module.__dict__[name]
                if isinstance(value, torch.Tensor) and not value.is_leaf:
                    saved.append((module, name, value))
                    setattr(module, name, value.detach())
    try:
        return copy.deepcopy(model)
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _validate_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}; "
            "pass the network itself (e.g. prunesafe.models.cifar_resnet(20)), not its state_dict or a path"
        )
    if not any(p.numel() for p in model.parameters()):
        raise ValueError(f"model has no prunable layers: {type(model).__name__} has no parameters")
    return model


def _validate_example_inputs(example_inputs: Any, model: nn.Module) -> Any:
    """Turn numpy arrays into tensors on the model's device; tuples stay tuples."""
    if example_inputs is None:
        return None
    inputs = as_input_tuple(example_inputs, module_device(model))
    single = isinstance(example_inputs, (torch.Tensor, np.ndarray))
    return inputs[0] if single else inputs


def _build_pruner(method: Any, ratio: float | Mapping[str, float] | None, options: dict[str, Any]) -> Pruner:
    if isinstance(method, Pruner):
        if options:
            raise TypeError(
                f"options {sorted(options)} were given together with a Pruner instance; "
                "pass them to the pruner's constructor instead"
            )
        if isinstance(ratio, Mapping):
            raise TypeError(
                "a ratio mapping cannot be combined with a Pruner instance; pass it to its constructor"
            )
        if ratio is not None and float(ratio) != method.ratio:
            raise ValueError(
                f"ratio={ratio} disagrees with the ratio {method.ratio} of the given "
                f"{type(method).__name__}; leave ratio out when passing a Pruner instance"
            )
        return method
    if isinstance(method, type) and issubclass(method, Pruner):
        cls: type[Pruner] = method
    elif isinstance(method, str):
        cls = get_pruner(method)  # ValueError listing the registered names
    else:
        raise TypeError(
            f"method must be the name of a registered pruner ({', '.join(registered_pruners())}), "
            f"a Pruner subclass or a Pruner instance, got {type(method).__name__}"
        )
    if ratio is None:
        raise TypeError("ratio is required: the fraction in [0, 1) of the method's unit to remove")
    if isinstance(ratio, Mapping) and not _takes_mapping(cls):
        raise TypeError(
            f"pruning method {cls.name or cls.__name__!r} takes one float ratio, not a per-layer mapping "
            '(mappings {layer name or glob: ratio} work with "filter", "channel" and "unstructured")'
        )
    try:
        return cls(ratio, **options)  # type: ignore[arg-type]  # a mapping only where __init__ takes one
    except TypeError as err:
        accepted = [
            p.name
            for p in list(inspect.signature(cls.__init__).parameters.values())[2:]
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise TypeError(
                f"unknown option(s) {unknown} for pruning method {cls.name or cls.__name__!r}; "
                f"accepted options: {accepted}"
            ) from err
        raise


def _takes_mapping(cls: type[Pruner]) -> bool:
    """Whether the pruner's ``ratio`` annotation admits a mapping (the built-in pruners' do)."""
    first = list(inspect.signature(cls.__init__).parameters.values())[1]
    return "Mapping" in str(first.annotation)


def prune_model(
    model: nn.Module,
    method: str | Pruner | type[Pruner],
    ratio: float | Mapping[str, float] | None = None,
    *,
    example_inputs: Any = None,
    inplace: bool = False,
    verify: bool | None = None,
    **options: Any,
) -> nn.Module:
    """Prune ``model`` with a registered method and return the pruned model.

    Parameters
    ----------
    model : nn.Module
        The network to prune.  It is deep-copied first unless ``inplace=True``.
    method : str, Pruner subclass or Pruner instance
        ``"unstructured"`` (L1 magnitude, masks), ``"filter"`` (L1-norm filters, Li et al.
        2017), ``"channel"`` (network slimming on BN γ, Liu et al. 2017) or any name added
        with :func:`~prunesafe.pruning.register_pruner`.
    ratio : float or mapping of str to float
        Fraction in ``[0, 1)`` of the method's unit to remove (weights, filters or BN
        channels) -- of each selected layer ("filter", ``scope="layerwise"``), of all targeted
        weights ("unstructured"), of all BN channels ("channel").  Or a mapping from qualified
        layer names / glob patterns to ratios, e.g. ``{"layer1.*.conv1": 0.5, "layer2.*.conv1":
        0.4, "layer1.8.conv1": 0}``: every layer gets the ratio of the *last* key matching it,
        unmatched layers (and ratio 0) are skipped.  May be left out only when ``method`` is a
        Pruner instance.  The count is ``round(ratio * n)`` (half to even, as
        :mod:`torch.nn.utils.prune`) with ``selection="topk"`` (default), or Liu et al.'s rule
        "keep scores > sorted[floor(n * ratio)]" with ``selection="threshold"``.
    example_inputs : tensor, numpy array or tuple, optional
        An input batch for tracing; required by the structured methods.
    inplace : bool, default False
        Prune ``model`` itself instead of a copy.
    verify : bool or None, default None
        Structured methods: run the pruned model and the original with the removed channels
        zeroed on ``example_inputs`` and raise
        :class:`~prunesafe.pruning.structured.PruningVerificationError` when they differ (a wrong
        channel rule).  ``None`` (auto) verifies when it is cheap and meaningful: up to 50 M
        parameters and no normalisation across channels (LayerNorm, GroupNorm).  Methods without
        removal (masks) have nothing to verify.
    **options
        Keyword options of the method, e.g. ``scope="layerwise"`` or ``include_linear=True``
        for ``"unstructured"``.

    Returns
    -------
    nn.Module
        The pruned model, carrying a :class:`PruningRecord` as ``prunesafe_pruning``.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``; an option the method does not accept.
    ValueError
        ``ratio`` outside ``[0, 1)``; unknown ``method`` (the message lists the registered
        ones); no prunable layers; ``example_inputs`` missing for a structured method.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.models import cifar_vgg
    >>> model = cifar_vgg(11)
    >>> pruned = prune_model(model, "unstructured", 0.8, scope="layerwise")
    >>> round(pruned.prunesafe_pruning.achieved_ratio, 3)
    0.8
    >>> torch.equal(prune_model(model, "unstructured", 0.0)(torch.ones(1, 3, 32, 32)),
    ...             model(torch.ones(1, 3, 32, 32)))
    True
    """
    model = _validate_model(model)
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {type(inplace).__name__}")
    pruner = _build_pruner(method, ratio, options)
    if verify is not None:
        if not isinstance(verify, bool):
            raise TypeError(f"verify must be True, False or None (auto), got {verify!r}")
        if hasattr(pruner, "verify"):
            pruner.verify = verify
        elif verify and pruner.requires_example_inputs:
            raise ValueError(
                f"verify=True: pruning method {pruner.name!r} does not support verification (it has no "
                "'verify' attribute); pass verify=False or leave it out"
            )
    if pruner.requires_example_inputs and example_inputs is None:
        raise ValueError(
            f"pruning method {pruner.name!r} traces the model and needs example_inputs: pass "
            "example_inputs=torch.randn(1, 3, 32, 32) (one batch shaped like the model's input, "
            "e.g. torch.randn(1, 3, 224, 224) for ImageNet models)"
        )
    example_inputs = _validate_example_inputs(example_inputs, model)
    previous = get_record(model)
    target = model if inplace else copy_model(model)
    pruned = pruner.prune(target, example_inputs=example_inputs)
    if not isinstance(pruned, nn.Module):
        raise TypeError(f"{type(pruner).__name__}.prune returned {type(pruned).__name__}, not an nn.Module")
    if pruner.achieved_ratio is None:
        raise RuntimeError(
            f"{type(pruner).__name__}.prune did not set achieved_ratio; a Pruner must set it (and "
            "pruned_modules) in prune()"
        )
    history: list[dict[str, Any]] = []
    if previous is not None:
        history = [*previous.history, {k: v for k, v in previous.to_dict().items() if k != "history"}]
    record = PruningRecord(
        method=pruner.name or type(pruner).__name__,
        ratio=pruner.ratio,
        achieved_ratio=float(pruner.achieved_ratio),
        unit=pruner.unit,
        options=_plain(_options_of(pruner, options)),
        pruned_modules=list(pruner.pruned_modules),
        history=history,
        achieved_ratio_of_all=_optional_float(getattr(pruner, "achieved_ratio_of_all", None)),
        eligible_fraction=_optional_float(getattr(pruner, "eligible_fraction", None)),
        ratio_map=getattr(pruner, "ratio_map", None),
        unit_layers=[str(n) for n in getattr(pruner, "unit_layers", [])],
        notes=[str(n) for n in getattr(pruner, "notes", [])],
        verified=_verified(pruner),
    )
    setattr(pruned, RECORD_ATTRIBUTE, record)
    return pruned


def _verified(pruner: Pruner) -> bool | None:
    value = getattr(pruner, "verified", None)
    return value if isinstance(value, bool) else None


def _options_of(pruner: Pruner, given: dict[str, Any]) -> dict[str, Any]:
    """The options the pruner was built with: the given ones, or its constructor's keyword attributes."""
    if given:
        return dict(given)
    out: dict[str, Any] = {}
    for p in list(inspect.signature(type(pruner).__init__).parameters.values())[2:]:
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and hasattr(pruner, p.name):
            value = getattr(pruner, p.name)
            try:
                is_default = bool(value == p.default)
            except Exception:  # e.g. an array-valued option
                is_default = False
            if not is_default:
                out[p.name] = value
    return out
