"""Unstructured L1 magnitude pruning (Han et al. 2015) with masks that survive fine-tuning.

The pruner zeroes the ``ratio`` fraction of the targeted weights with the smallest
magnitude, either under one global threshold over all targeted layers (the default) or
layer by layer.  Masks are attached with :mod:`torch.nn.utils.prune`'s
reparametrisation (``weight_orig`` parameter, ``weight_mask`` buffer, forward pre-hook),
so an optimiser only ever sees ``weight_orig`` and the pruned entries stay zero while
fine-tuning.  :func:`finalize` folds the masks into plain ``weight`` parameters.

The masks are *identical* to those of
``torch.nn.utils.prune.global_unstructured(params, pruning_method=prune.L1Unstructured,
amount=ratio)`` (``scope="global"``) and of ``prune.l1_unstructured(module, "weight",
amount=ratio)`` per layer (``scope="layerwise"``): the number of pruned weights is
``round(ratio * n)`` (Python rounding, as torch does) and the weights are the ``n`` smallest
magnitudes of the same flattened vector; where a tie straddles the threshold,
:func:`torch.topk` breaks it exactly as torch does (otherwise a faster ``kthvalue``
selection gives the same, unique, set).

Examples
--------
>>> import torch
>>> from prunesafe.models import cifar_resnet
>>> from prunesafe.pruning.unstructured import UnstructuredPruner, finalize, is_pruned, sparsity
>>> model = cifar_resnet(20)
>>> pruner = UnstructuredPruner(0.5)
>>> model = pruner.prune(model)
>>> round(pruner.achieved_ratio, 3), round(sparsity(model), 3)
(0.5, 0.5)
>>> model = finalize(model)
>>> is_pruned(model)
False
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunesafe.pruning._ratios import (
    Selection,
    count_to_remove,
    resolve_ratio_map,
    threshold_index,
    validate_ratio,
    validate_selection,
)
from prunesafe.pruning.base import Pruner, register_pruner

__all__ = ["UnstructuredPruner", "finalize", "is_pruned", "sparsity", "unstructured_targets"]

_CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

LayerSelector = Sequence[str] | Callable[[str, nn.Module], bool]


def _has_mask(module: nn.Module, name: str = "weight") -> bool:
    return hasattr(module, name + "_mask") and hasattr(module, name + "_orig")


def _effective(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The tensor the module computes with: ``orig * mask`` for masked tensors, else the parameter."""
    if _has_mask(module, name):
        orig = _tensor(module, name + "_orig")
        return orig * _tensor(module, name + "_mask").to(orig.dtype)
    return _tensor(module, name)


def unstructured_targets(
    model: nn.Module, *, include_linear: bool = False, layers: LayerSelector | None = None
) -> list[tuple[str, nn.Module]]:
    """Modules whose ``weight`` unstructured pruning targets, in ``named_modules`` order.

    Parameters
    ----------
    model : nn.Module
    include_linear : bool, default False
        Also target ``nn.Linear`` layers (by default only ``Conv1d/2d/3d``).
    layers : sequence of str or callable, optional
        Restrict to these qualified module names, or to modules for which
        ``layers(name, module)`` is true.  Unknown names raise ``ValueError``.

    Examples
    --------
    >>> from prunesafe.models import cifar_vgg
    >>> model = cifar_vgg(16)
    >>> len(unstructured_targets(model)), len(unstructured_targets(model, include_linear=True))
    (13, 14)
    """
    types: tuple[type[nn.Module], ...] = (*_CONV_TYPES, nn.Linear) if include_linear else _CONV_TYPES
    candidates = [(n, m) for n, m in model.named_modules() if isinstance(m, types)]
    if layers is None:
        return candidates
    if callable(layers):
        return [(n, m) for n, m in candidates if layers(n, m)]
    if isinstance(layers, str):
        raise TypeError(f"layers must be a sequence of module names or a callable, got the str {layers!r}")
    wanted = list(layers)
    known = {n for n, _ in candidates}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        kind = "Conv/Linear" if include_linear else "Conv"
        raise ValueError(
            f"layers names modules that are not prunable {kind} layers of the model: {unknown}; "
            f"valid names start with {sorted(known)[:5]}"
            + ("" if include_linear else " (pass include_linear=True to allow Linear layers)")
        )
    selected = set(wanted)
    return [(n, m) for n, m in candidates if n in selected]


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    value = getattr(module, name)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.{name} is not a tensor")
    return value


def _weight(module: nn.Module) -> torch.Tensor:
    """The trainable weight tensor: ``weight_orig`` for masked modules, else ``weight``."""
    return _tensor(module, "weight_orig") if _has_mask(module) else _tensor(module, "weight")


def _scores(module: nn.Module) -> torch.Tensor:
    """Flattened |w|; already-masked entries get -1 so they are always among the pruned."""
    magnitude = _weight(module).detach().abs().flatten()
    if _has_mask(module):
        return torch.where(_tensor(module, "weight_mask").flatten() != 0, magnitude, -1.0)
    return magnitude


def _keep_mask(scores: torch.Tensor, n_prune: int, dtype: torch.dtype) -> torch.Tensor:
    """1 for kept, 0 for the ``n_prune`` smallest scores -- exactly the set ``torch.topk`` picks.

    For large ``n_prune`` one ``kthvalue`` selection is several times faster than ``topk``.
    When exactly ``n_prune`` scores are ``<=`` the k-th value, the k smallest form a unique
    set, so the result equals topk's; otherwise a tie straddles the threshold and topk
    itself breaks it (as torch.nn.utils.prune does).
    """
    if n_prune > 0 and 8 * n_prune > scores.numel():
        threshold = torch.kthvalue(scores, n_prune).values
        pruned = scores <= threshold
        if int(torch.count_nonzero(pruned)) == n_prune:
            return (~pruned).to(dtype)
    keep = torch.ones(scores.numel(), dtype=dtype, device=scores.device)
    if n_prune > 0:
        keep[torch.topk(scores, k=n_prune, largest=False).indices] = 0
    return keep


def _apply_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Attach (or update) the ``weight`` mask with torch's pruning reparametrisation."""
    if _has_mask(module):
        # Update the existing buffer in place: every torch pruning hook reads ``weight_mask``,
        # and the hook does not nest a new PruningContainer on every call.
        old = _tensor(module, "weight_mask")
        orig = _tensor(module, "weight_orig")
        with torch.no_grad():
            old.mul_(mask.to(old.dtype))
            setattr(module, "weight", orig * old.to(orig.dtype))  # noqa: B010 - plain attribute, not a Parameter
        return
    # The same reparametrisation as ``torch.nn.utils.prune.custom_from_mask`` (a CustomFromMask
    # forward pre-hook, ``weight_orig`` parameter, ``weight_mask`` buffer), without its extra
    # ``ones_like`` default mask, product and copy per layer.
    param = module._parameters["weight"]
    if param is None:
        raise ValueError(f"{type(module).__name__} has no weight to prune")
    mask = mask.to(param.dtype).clone(memory_format=torch.contiguous_format)
    hook = torch_prune.CustomFromMask(mask)
    hook._tensor_name = "weight"
    module.register_parameter("weight_orig", param)
    del module._parameters["weight"]
    module.register_buffer("weight_mask", mask)
    with torch.no_grad():
        setattr(module, "weight", param * mask)  # noqa: B010 - plain attribute, recomputed by the hook
    module.register_forward_pre_hook(hook)


@register_pruner("unstructured")
class UnstructuredPruner(Pruner):
    """L1 magnitude pruning of individual weights (Han et al. 2015).

    Parameters
    ----------
    ratio : float
        Fraction in ``[0, 1)`` of the targeted weights to set to zero, ``round(ratio * n)``
        weights in all (``scope="global"``) or per layer (``scope="layerwise"``).
    scope : {"global", "layerwise"}, default "global"
        One magnitude threshold over all targeted weights, or the same ratio in every layer.
    include_linear : bool, default False
        Target ``nn.Linear`` weights as well as ``Conv1d/2d/3d`` weights.
    norm : {"l1"}, default "l1"
        Importance of a weight: its magnitude ``|w|`` (any element-wise p-norm ranks
        weights identically, so only ``"l1"`` is offered).
    layers : sequence of str or callable, optional
        Restrict the targets to these module names or to modules where
        ``layers(name, module)`` is true.
    selection : {"topk", "threshold"}, default "topk"
        ``"topk"``: exactly ``round(ratio * n)`` weights (torch's rule and tie-breaking).
        ``"threshold"``: the rule of Liu et al.'s weight-level code -- keep ``|w|`` strictly greater
        than the value at sorted index ``floor(n * ratio)``; ties at it are pruned (achieved >= asked).

    A mapping ``ratio={layer name or glob: ratio}`` prunes every matched layer by its own ratio
    (layer by layer, whatever ``scope``); unmatched layers are not targeted.

    Attributes
    ----------
    achieved_ratio : float
        Set by :meth:`prune`: fraction of the targeted weights that are zero.
    achieved_ratio_of_all : float
        Set by :meth:`prune`: fraction of ALL conv weights (and Linear weights with
        ``include_linear=True``) of the model that are zero.
    eligible_fraction : float
        Set by :meth:`prune`: targeted weights / all those weights.

    Notes
    -----
    Pruning an already-masked model composes: weights pruned before stay pruned and
    count towards ``ratio``, which is always the *total* fraction of targeted weights
    that are zero afterwards (``0.5`` then ``0.75`` gives 75 %, not 87.5 % as repeated
    ``torch.nn.utils.prune.global_unstructured(amount=0.5)`` calls would).  If the model
    is already sparser than ``ratio`` nothing more is pruned and :attr:`achieved_ratio`
    reports the actual sparsity.  Biases are never pruned.

    ``achieved_ratio`` is the fraction of targeted weights that are zero afterwards (masked, or
    zero already, e.g. after :func:`finalize` of an earlier pruning), i.e. :func:`sparsity`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    >>> pruner = UnstructuredPruner(0.3, scope="layerwise")
    >>> model = pruner.prune(model)
    >>> int((model[0].weight == 0).sum()), model[0].weight.numel()  # round(0.3 * 216) = 65
    (65, 216)
    >>> pruner.pruned_modules
    ['0', '2']
    """

    unit = "weights"
    requires_example_inputs = False

    def __init__(
        self,
        ratio: float | Mapping[str, float],
        *,
        scope: Literal["global", "layerwise"] = "global",
        include_linear: bool = False,
        norm: Literal["l1"] = "l1",
        layers: LayerSelector | None = None,
        selection: Selection = "topk",
    ) -> None:
        parsed = validate_ratio(ratio)
        self.ratio_map: dict[str, float] | None = parsed if isinstance(parsed, dict) else None
        if self.ratio_map is not None and layers is not None:
            raise TypeError(
                "give either a ratio mapping or layers=, not both: the mapping's keys select the layers"
            )
        super().__init__(max(parsed.values()) if isinstance(parsed, dict) else parsed)
        self.selection: Selection = validate_selection(selection)
        self.achieved_ratio_of_all: float | None = None
        self.eligible_fraction: float | None = None
        self.unit_layers: list[str] = []
        if scope not in ("global", "layerwise"):
            raise ValueError(f"scope must be 'global' or 'layerwise', got {scope!r}")
        if not isinstance(include_linear, bool):
            raise TypeError(f"include_linear must be a bool, got {type(include_linear).__name__}")
        if norm != "l1":
            raise ValueError(
                f"norm must be 'l1' for unstructured pruning (element-wise norms all rank |w|), got {norm!r}"
            )
        if isinstance(layers, str):
            raise TypeError(f"layers must be a sequence of module names or a callable, got str {layers!r}")
        self.scope = scope
        self.include_linear = include_linear
        self.norm = norm
        self.layers = layers

    def prune(self, model: nn.Module, *, example_inputs: Any = None) -> nn.Module:
        """Mask the smallest-magnitude weights of ``model`` in place and return it."""
        layer_ratio: dict[str, float] = {}
        if self.ratio_map is not None:
            names = [n for n, _ in unstructured_targets(model, include_linear=self.include_linear)]
            layer_ratio = resolve_ratio_map(self.ratio_map, names)
            targets = [(n, m) for n, m in unstructured_targets(model, include_linear=self.include_linear)
                       if n in layer_ratio]  # fmt: skip
        else:
            targets = unstructured_targets(model, include_linear=self.include_linear, layers=self.layers)
        if not targets:
            kinds = "Conv1d/2d/3d or Linear" if self.include_linear else "Conv1d/2d/3d"
            hint = "" if self.include_linear else " (pass include_linear=True to prune Linear layers too)"
            raise ValueError(f"model has no prunable layers: found no {kinds} modules to prune{hint}")
        total = sum(_weight(m).numel() for _, m in targets)
        if total == 0:
            raise ValueError("model has no prunable layers: the targeted layers have no weights")
        if layer_ratio:
            self.ratio = sum(layer_ratio[n] * _weight(m).numel() for n, m in targets) / total
        with torch.no_grad():
            if self.scope == "global" and not layer_ratio:
                scores = [_scores(m) for _, m in targets]
                sizes = [s.numel() for s in scores]
                flat = torch.cat(scores)
                del scores
                keep = self._select(flat, self.ratio, self._dtype(targets))
                masks = list(torch.split(keep, sizes))
            else:
                dtype = self._dtype(targets)
                masks = []
                for name, m in targets:
                    s = _scores(m)
                    masks.append(self._select(s, layer_ratio.get(name, self.ratio), dtype))
            zeros = 0
            for (_, module), mask in zip(targets, masks, strict=True):
                _apply_mask(module, mask.view(_weight(module).shape))
                weight = _effective(module)
                zeros += weight.numel() - int(torch.count_nonzero(weight))
        self.achieved_ratio = zeros / total
        self.pruned_modules = [name for name, _ in targets]
        self.unit_layers = list(self.pruned_modules)
        every = unstructured_targets(model, include_linear=self.include_linear)
        all_weights = sum(_weight(m).numel() for _, m in every)
        all_zeros = sum(_effective(m).numel() - int(torch.count_nonzero(_effective(m))) for _, m in every)
        self.achieved_ratio_of_all = all_zeros / all_weights if all_weights else 0.0
        self.eligible_fraction = total / all_weights if all_weights else 0.0
        return model

    def _select(self, scores: torch.Tensor, ratio: float, dtype: torch.dtype) -> torch.Tensor:
        """Keep-mask of one score vector under the chosen ``selection`` rule."""
        if self.selection == "threshold":
            if ratio <= 0 or scores.numel() == 0:
                return torch.ones(scores.numel(), dtype=dtype, device=scores.device)
            k = threshold_index(ratio, scores.numel())
            threshold = torch.kthvalue(scores.cpu(), k + 1).values.to(scores.device)  # sorted[k], 0-based
            return (scores > threshold).to(dtype)
        return _keep_mask(scores, count_to_remove(ratio, scores.numel()), dtype)

    @staticmethod
    def _dtype(targets: list[tuple[str, nn.Module]]) -> torch.dtype:
        return _weight(targets[0][1]).dtype

    def __repr__(self) -> str:
        return (
            f"UnstructuredPruner(ratio={self.ratio}, scope={self.scope!r}, "
            f"include_linear={self.include_linear})"
        )


def _pruning_hooks(module: nn.Module) -> Iterator[str]:
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, torch_prune.BasePruningMethod):
            name = hook._tensor_name
            if name is not None:
                yield name


def is_pruned(model: nn.Module) -> bool:
    """Whether any module of ``model`` carries a :mod:`torch.nn.utils.prune` mask.

    Examples
    --------
    >>> from torch import nn
    >>> is_pruned(UnstructuredPruner(0.5).prune(nn.Sequential(nn.Conv2d(1, 2, 3))))
    True
    """
    return any(True for m in model.modules() for _ in _pruning_hooks(m))


def finalize(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its parameter (``torch.nn.utils.prune.remove``), in place.

    Afterwards the model has plain ``weight`` parameters that contain the zeros, no
    ``weight_orig``/``weight_mask`` and no hooks, so the zeros are no longer enforced during
    training.  Calling it on a model without masks is a no-op (idempotent).

    Examples
    --------
    >>> from torch import nn
    >>> model = UnstructuredPruner(0.5).prune(nn.Sequential(nn.Conv2d(1, 2, 3)))
    >>> sorted(k for k, _ in finalize(model).named_parameters())
    ['0.bias', '0.weight']
    >>> finalize(model) is model
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for module in model.modules():
        for name in list(_pruning_hooks(module)):
            torch_prune.remove(module, name)  # type: ignore[no-untyped-call]
    return model


def sparsity(model: nn.Module, *, include_linear: bool = False, layers: LayerSelector | None = None) -> float:
    """Fraction of zero entries among the weights unstructured pruning targets.

    Counts the effective weights (``weight_orig * weight_mask`` for masked modules), so it
    is correct before and after :func:`finalize`.

    Examples
    --------
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3))
    >>> sparsity(UnstructuredPruner(0.25).prune(model))
    0.25
    """
    targets = unstructured_targets(model, include_linear=include_linear, layers=layers)
    zeros = 0
    total = 0
    for _, module in targets:
        weight = _effective(module)
        zeros += weight.numel() - int(torch.count_nonzero(weight))
        total += weight.numel()
    return zeros / total if total else math.nan
