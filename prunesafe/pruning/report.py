"""Before/after report of a pruning run: parameters, MACs, per-layer channels and sparsity.

What is counted
---------------
* **Parameters**: every element of ``model.parameters()`` (for masked models the
  ``weight_orig`` tensors, i.e. the dense size).  **Nonzero parameters** counts the elements
  that are not zero in the weights the model computes with (``weight_orig * weight_mask``),
  which is what unstructured pruning reduces.
* **MACs** (multiply-accumulates, *not* FLOPs) of one sample, measured with forward hooks:
  a ``Conv1d/2d/3d`` costs ``output elements × in_channels / groups × kernel volume`` and
  an ``nn.Linear`` costs ``in_features × out_features`` per output row.  BatchNorm,
  activations, pooling, additions and biases are not counted.  **Nonzero MACs** count only
  the products with a nonzero weight (``output positions × nonzero weights``), the
  theoretical cost of a sparse kernel.
* **Ratios** are counted in the two models themselves, never copied from the last call, so
  repeated pruning is reported against the original: ``ratio_achieved_of_all`` is the fraction of
  ALL the unit in ``original`` that is gone in ``pruned`` (filters: output channels of every conv;
  channels: every BatchNorm's channels; weights: conv weights -- plus Linear ones when the pruning
  targeted any -- that are zero), and ``ratio_achieved`` the same fraction over the layers any of
  the model's ``prune_model`` calls counted (their union).  ``filter`` 0.5 -> 0.5 -> 0.75 on
  ResNet-20 therefore reads 93.75 % of the pruned layers' filters and 45.8 % of all filters.

Examples
--------
>>> import torch
>>> from prunesafe.models import cifar_resnet
>>> from prunesafe.pruning import prune_model
>>> from prunesafe.pruning.report import pruning_report
>>> model = cifar_resnet(20)
>>> report = pruning_report(model, prune_model(model, "unstructured", 0.5), torch.rand(1, 3, 32, 32))
>>> report.macs_before == report.macs_after, report.macs_before
(True, 40551040)
>>> round(report.nonzero_params_after / report.nonzero_params_before, 2)
0.5
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from prunesafe._utils import as_input_tuple, module_device
from prunesafe.pruning.api import get_record

__all__ = ["LayerReport", "PruningReport", "count_macs", "pruning_report"]

_CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LAYER_TYPES: tuple[type[nn.Module], ...] = (*_CONV_TYPES, nn.Linear)


def _weight(module: nn.Module) -> torch.Tensor:
    """Effective weight (``weight_orig * weight_mask`` for masked modules)."""
    orig = getattr(module, "weight_orig", None)
    mask = getattr(module, "weight_mask", None)
    if isinstance(orig, torch.Tensor) and isinstance(mask, torch.Tensor):
        return orig.detach() * mask.to(orig.dtype)
    weight = getattr(module, "weight")  # noqa: B009 - typed access to a dynamic attribute
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.weight is not a tensor")
    return weight.detach()


def _nonzero_parameters(model: nn.Module) -> int:
    total = 0
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            mask = getattr(module, name[:-5] + "_mask", None) if name.endswith("_orig") else None
            if isinstance(mask, torch.Tensor):
                total += int(torch.count_nonzero(param.detach() * mask.to(param.dtype)))
            else:
                total += int(torch.count_nonzero(param.detach()))
    return total


def _as_inputs(example_inputs: Any, model: nn.Module) -> tuple[Any, ...]:
    inputs = as_input_tuple(example_inputs, module_device(model))
    if not inputs:
        raise TypeError(
            "example_inputs must be a tensor, a numpy array or a non-empty tuple of them, got an empty "
            f"{type(example_inputs).__name__}; pass e.g. example_inputs=torch.rand(1, 3, 32, 32)"
        )
    return inputs


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd while measuring; restores every module's training flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes:
            module.training = mode


def count_macs(model: nn.Module, example_inputs: Any) -> dict[str, tuple[int, int]]:
    """Per-sample MACs of every Conv/Linear layer, measured with forward hooks.

    Parameters
    ----------
    model : nn.Module
    example_inputs : tensor, numpy array or tuple
        One input batch; MACs are divided by its batch size (the first dimension of the
        first tensor).

    Returns
    -------
    dict of str to (int, int)
        ``{module name: (dense MACs, MACs with a nonzero weight)}`` for every Conv/Linear
        module that ran (a module called twice is counted twice).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> count_macs(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(128, 4)),
    ...            torch.rand(2, 3, 4, 4))
    {'0': (3456, 3456), '2': (512, 512)}
    """
    inputs = _as_inputs(example_inputs, model)
    first = next((x for x in inputs if isinstance(x, torch.Tensor)), None)
    batch = int(first.shape[0]) if first is not None and first.dim() > 0 else 1
    counts: dict[str, tuple[int, int]] = {}
    handles = []

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                return
            weight = _weight(module)
            # each output position (per output channel group) uses every weight once
            if isinstance(module, nn.Linear):
                positions = output.numel() // max(module.out_features, 1)
            else:
                out_channels = int(output.shape[1])
                positions = output.numel() // max(out_channels, 1)
                # Conv weight has out_channels × (in/groups) × kernel elements: positions × numel
            dense = positions * weight.numel()
            sparse = positions * int(torch.count_nonzero(weight))
            old = counts.get(name, (0, 0))
            counts[name] = (old[0] + dense // batch, old[1] + sparse // batch)

        return hook

    for name, module in model.named_modules():
        if isinstance(module, _LAYER_TYPES):
            handles.append(module.register_forward_hook(make_hook(name)))
    try:
        with _frozen(model):
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return counts


@dataclass
class LayerReport:
    """One Conv/Linear layer, matched by qualified module name.

    ``channels_*`` are output channels (``out_features`` for Linear), ``in_channels_*`` input
    channels; ``sparsity`` is the fraction of zero weights of the pruned layer.
    """

    name: str
    type: str
    channels_before: int
    channels_after: int
    in_channels_before: int
    in_channels_after: int
    params_before: int
    params_after: int
    sparsity: float
    macs_before: int
    macs_after: int

    @property
    def kept(self) -> str:
        """``"kept/total"`` output channels."""
        return f"{self.channels_after}/{self.channels_before}"


def _channels(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    out_channels = getattr(module, "out_channels", 0)
    in_channels = getattr(module, "in_channels", 0)
    return int(out_channels), int(in_channels)


@dataclass
class PruningReport:
    """Parameters and MACs before/after pruning plus a per-layer table.

    Create it with :func:`pruning_report`.  ``str(report)`` is an aligned text table,
    :meth:`to_dict` a JSON-serialisable dict and :meth:`to_records` one dict per layer for
    ``pandas.DataFrame``.

    Examples
    --------
    >>> import json, torch
    >>> from prunesafe.models import cifar_vgg
    >>> from prunesafe.pruning import prune_model
    >>> model = cifar_vgg(11)
    >>> report = pruning_report(model, prune_model(model, "unstructured", 0.9), torch.rand(1, 3, 32, 32))
    >>> report.ratio_asked, round(report.ratio_achieved, 3)
    (0.9, 0.9)
    >>> _ = json.dumps(report.to_dict())
    >>> len(report.to_records())
    9
    """

    method: str | None
    unit: str | None
    ratio_asked: float | None
    ratio_achieved: float | None
    params_before: int
    params_after: int
    nonzero_params_before: int
    nonzero_params_after: int
    macs_before: int
    macs_after: int
    nonzero_macs_before: int
    nonzero_macs_after: int
    layers: list[LayerReport] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    #: Fraction of ALL the model's ``unit`` removed (structured pruners; ``None`` otherwise).
    ratio_achieved_of_all: float | None = None
    #: Fraction of the model's ``unit`` in the layers the pruning counted (``None`` without a record).
    eligible_fraction: float | None = None
    #: Units (of ``unit``) in the whole original / pruned model; for "weights" the nonzero weights.
    units_before: int | None = None
    units_after: int | None = None
    #: Number of ``prune_model`` calls behind ``pruned`` (its record's history + 1).
    calls: int = 0
    #: Notes of the pruning run(s) (warnings, shortfalls, verification).
    notes: list[str] = field(default_factory=list)

    @property
    def param_reduction(self) -> float:
        """``params_before / params_after`` (dense parameters)."""
        return self.params_before / self.params_after if self.params_after else math.inf

    @property
    def mac_reduction(self) -> float:
        """``macs_before / macs_after`` (dense MACs)."""
        return self.macs_before / self.macs_after if self.macs_after else math.inf

    def to_dict(self) -> dict[str, Any]:
        """All numbers as plain Python types (``json.dumps`` works on it)."""
        out = asdict(self)
        out["param_reduction"] = self.param_reduction
        out["mac_reduction"] = self.mac_reduction
        return out

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per layer (``pandas.DataFrame(report.to_records())``)."""
        return [asdict(layer) for layer in self.layers]

    def __str__(self) -> str:
        def pct(after: int, before: int) -> str:
            return f"{100.0 * after / before:6.2f}%" if before else "   n/a"

        head = []
        if self.method is not None:
            if self.ratio_achieved_of_all is not None:
                calls = f" over {self.calls} prune_model calls" if self.calls > 1 else ""
                head.append(
                    f"fraction of ALL {self.unit} in the model removed: {self.ratio_achieved_of_all:.4f}"
                    f"   ({self.units_before:,} -> {self.units_after:,}{calls})"
                )
            achieved = "n/a" if self.ratio_achieved is None else f"{self.ratio_achieved:.4f}"
            eligible = "" if self.eligible_fraction is None else f" = {self.eligible_fraction:.2%} of all"
            last = " (last call)" if self.calls > 1 else ""
            head.append(
                f"method: {self.method}   ratio asked{last}: {self.ratio_asked}   achieved: {achieved} "
                f"(fraction of the pruned layers' {self.unit} removed; those layers hold{eligible})"
            )
            head += [f"note: {n}" for n in self.notes]
        rows = [
            ("parameters", self.params_before, self.params_after),
            ("nonzero parameters", self.nonzero_params_before, self.nonzero_params_after),
            ("MACs", self.macs_before, self.macs_after),
            ("nonzero-weight MACs", self.nonzero_macs_before, self.nonzero_macs_after),
        ]
        head.append(f"{'':<20} {'before':>14} {'after':>14} {'kept':>8}")
        head += [f"{label:<20} {b:>14,} {a:>14,} {pct(a, b):>8}" for label, b, a in rows]
        width = max([len("layer")] + [len(layer.name) for layer in self.layers])
        table = [
            "",
            f"{'layer':<{width}} {'type':<8} {'out kept':>11} {'in kept':>11} {'params':>17} "
            f"{'sparsity':>8} {'MACs kept':>9}",
        ]
        for layer in self.layers:
            table.append(
                f"{layer.name:<{width}} {layer.type:<8} {layer.kept:>11} "
                f"{f'{layer.in_channels_after}/{layer.in_channels_before}':>11} "
                f"{f'{layer.params_after}/{layer.params_before}':>17} {layer.sparsity:>8.2%} "
                f"{pct(layer.macs_after, layer.macs_before):>9}"
            )
        if self.unmatched:
            table.append(f"layers of the original missing in the pruned model: {', '.join(self.unmatched)}")
        return "\n".join(head + table)


def pruning_report(original: nn.Module, pruned: nn.Module, example_inputs: Any) -> PruningReport:
    """Compare an original and a pruned model.

    Parameters
    ----------
    original, pruned : nn.Module
        The model before pruning and the model ``prune_model`` returned.  Layers are matched
        by qualified module name.  Neither model is modified (both run once in eval mode
        without autograd; their training flags are restored).
    example_inputs : tensor, numpy array or tuple
        One input batch, e.g. ``torch.rand(1, 3, 32, 32)``; MACs are per sample.

    Returns
    -------
    PruningReport
        Ratio asked/achieved come from ``pruned.prunesafe_pruning`` (``None`` when the model
        was not pruned by ``prune_model``).

    Examples
    --------
    >>> import torch
    >>> from prunesafe.models import cifar_resnet
    >>> model = cifar_resnet(20)
    >>> print(pruning_report(model, model, torch.rand(1, 3, 32, 32)).layers[0].kept)
    16/16
    """
    for arg, value in (("original", original), ("pruned", pruned)):
        if not isinstance(value, nn.Module):
            raise TypeError(f"{arg} must be a torch.nn.Module, got {type(value).__name__}")
    if example_inputs is None:
        raise ValueError("example_inputs is required to count MACs: pass e.g. torch.rand(1, 3, 32, 32)")
    macs_before = count_macs(original, example_inputs)
    macs_after = count_macs(pruned, example_inputs)
    pruned_modules = dict(pruned.named_modules())
    layers: list[LayerReport] = []
    unmatched: list[str] = []
    for name, module in original.named_modules():
        if not isinstance(module, _LAYER_TYPES):
            continue
        other = pruned_modules.get(name)
        if other is None or not isinstance(other, _LAYER_TYPES):
            unmatched.append(name)
            continue
        out_b, in_b = _channels(module)
        out_a, in_a = _channels(other)
        weight = _weight(other)
        layers.append(
            LayerReport(
                name=name,
                type=type(other).__name__,
                channels_before=out_b,
                channels_after=out_a,
                in_channels_before=in_b,
                in_channels_after=in_a,
                params_before=sum(p.numel() for p in module.parameters()),
                params_after=sum(p.numel() for p in other.parameters()),
                sparsity=1.0 - int(torch.count_nonzero(weight)) / weight.numel() if weight.numel() else 0.0,
                macs_before=macs_before.get(name, (0, 0))[0],
                macs_after=macs_after.get(name, (0, 0))[0],
            )
        )
    record = get_record(pruned)
    counted = _count_ratios(original, pruned, record)
    return PruningReport(
        method=record.method if record else None,
        unit=record.unit if record else None,
        ratio_asked=record.ratio if record else None,
        ratio_achieved=counted["ratio_achieved"],
        params_before=sum(p.numel() for p in original.parameters()),
        params_after=sum(p.numel() for p in pruned.parameters()),
        nonzero_params_before=_nonzero_parameters(original),
        nonzero_params_after=_nonzero_parameters(pruned),
        macs_before=sum(d for d, _ in macs_before.values()),
        macs_after=sum(d for d, _ in macs_after.values()),
        nonzero_macs_before=sum(s for _, s in macs_before.values()),
        nonzero_macs_after=sum(s for _, s in macs_after.values()),
        layers=layers,
        unmatched=unmatched,
        ratio_achieved_of_all=counted["ratio_achieved_of_all"],
        eligible_fraction=counted["eligible_fraction"],
        units_before=counted["units_before"],
        units_after=counted["units_after"],
        calls=0 if record is None else len(record.history) + 1,
        notes=[] if record is None else list(record.notes),
    )


def _units(module: nn.Module, unit: str) -> tuple[int, int]:
    """(units, removed units) of one module: output filters / BN channels / (weights, zero weights)."""
    if unit == "filters" and isinstance(module, nn.modules.conv._ConvNd):
        return int(module.out_channels), 0
    if unit == "channels" and isinstance(module, nn.modules.batchnorm._BatchNorm):
        selected = getattr(module, "indices", None)  # a channel-selection BN counts its selected channels
        if isinstance(selected, torch.Tensor) and selected.dim() == 1:
            return int(selected.numel()), 0
        return int(module.num_features), 0
    if unit == "weights" and isinstance(module, _LAYER_TYPES):
        weight = _weight(module)
        return weight.numel(), weight.numel() - int(torch.count_nonzero(weight))
    return 0, 0


def _count_ratios(original: nn.Module, pruned: nn.Module, record: Any) -> dict[str, Any]:
    """Achieved ratios counted in the two models (over all units and over the layers pruning counted)."""
    none: dict[str, Any] = dict.fromkeys(
        ("ratio_achieved", "ratio_achieved_of_all", "eligible_fraction", "units_before", "units_after")
    )
    if record is None:
        return none
    unit = record.unit
    scope = set(record.unit_layers)
    linear = any(isinstance(m, nn.Linear) for n, m in original.named_modules() if n in scope)
    for past in record.history:
        if past.get("unit") == unit:
            scope.update(str(n) for n in past.get("unit_layers", []))
            linear = linear or bool(dict(past.get("options", {})).get("include_linear", False))
    linear = linear or bool(record.options.get("include_linear", False))
    if unit not in ("filters", "channels", "weights"):
        return {**none, "ratio_achieved": record.achieved_ratio}
    after_modules = dict(pruned.named_modules())

    def counts(names: set[str] | None) -> tuple[int, int]:
        before = after = 0
        for name, module in original.named_modules():
            skip_linear = unit == "weights" and not linear and isinstance(module, nn.Linear)
            if (names is not None and name not in names) or skip_linear:
                continue
            n_before, _ = _units(module, unit)
            if not n_before:
                continue
            other = after_modules.get(name)
            n_after, zeros = _units(other, unit) if other is not None else (0, 0)
            before += n_before
            after += n_after - zeros  # weights: the nonzero ones are what is left
        return before, after

    all_before, all_after = counts(None)
    if not all_before:
        return {**none, "ratio_achieved": record.achieved_ratio}
    out = {
        "ratio_achieved_of_all": 1.0 - all_after / all_before,
        "units_before": all_before,
        "units_after": all_after,
        "ratio_achieved": record.achieved_ratio,
        "eligible_fraction": None,
    }
    if scope:
        scope_before, scope_after = counts(scope)
        if scope_before:
            out["ratio_achieved"] = 1.0 - scope_after / scope_before
            out["eligible_fraction"] = scope_before / all_before
    return out
