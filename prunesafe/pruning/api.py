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

    Attributes
    ----------
    method : str
        Registered name of the pruner.
    ratio : float
        Ratio asked for.
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

    Examples
    --------
    >>> rec = PruningRecord("unstructured", 0.5, 0.5, "weights", {}, ["conv"])
    >>> PruningRecord.from_dict(rec.to_dict()) == rec
    True
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

    def to_dict(self) -> dict[str, Any]:
        """A dict of plain Python types (JSON- and ``torch.load(weights_only=True)``-safe)."""
        out: dict[str, Any] = _plain(asdict(self))
        return out

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


def _build_pruner(method: Any, ratio: float | None, options: dict[str, Any]) -> Pruner:
    if isinstance(method, Pruner):
        if options:
            raise TypeError(
                f"options {sorted(options)} were given together with a Pruner instance; "
                "pass them to the pruner's constructor instead"
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
    try:
        return cls(ratio, **options)
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


def prune_model(
    model: nn.Module,
    method: str | Pruner | type[Pruner],
    ratio: float | None = None,
    *,
    example_inputs: Any = None,
    inplace: bool = False,
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
    ratio : float
        Fraction in ``[0, 1)`` of the method's unit to remove (weights, filters or BN
        channels).  May be left out only when ``method`` is a Pruner instance.
    example_inputs : tensor, numpy array or tuple, optional
        An input batch for tracing; required by the structured methods.
    inplace : bool, default False
        Prune ``model`` itself instead of a copy.
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
    )
    setattr(pruned, RECORD_ATTRIBUTE, record)
    return pruned


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
