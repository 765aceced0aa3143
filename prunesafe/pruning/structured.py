"""Structured pruning that physically removes channels: "filter" and "channel".

* :class:`FilterPruner` (``method="filter"``): L1-norm filter pruning after Li et al. 2017,
  "Pruning Filters for Efficient ConvNets" (ICLR).  In every selected conv the ``ratio``
  fraction of output filters with the smallest L1 (or L2) norm is removed.
* :class:`ChannelPruner` (``method="channel"``): network slimming after Liu et al. 2017,
  "Learning Efficient Convolutional Networks through Network Slimming" (ICCV).  One global
  threshold on the BatchNorm scaling factors ``|gamma|``, taken over ALL BN channels as in
  their code, removes the eligible channels under it.

Both accept per-layer ratio mappings, ``selection="topk"`` (exactly ``round(ratio * n)``, half
to even) or ``selection="threshold"`` (Liu et al.'s ``> sorted[floor(n * ratio)]`` rule), and
``verify`` (the pruned model must equal the original with the removed channels zeroed).

Both build the model's channel dependency graph (:mod:`prunesafe.pruning.graph`) from the
model itself, then slice every affected tensor in place: the conv's filters and bias, its
BatchNorm (weights and running statistics), the input channels of every consumer (the next
conv, a Linear after flatten or pooling, ...), and channels coupled through residual
additions, concatenation, depthwise convs or parameter-free zero-padding shortcuts.  Module
classes and names stay the same (an ``nn.Conv2d`` remains an ``nn.Conv2d`` with a smaller
``out_channels``), so the pruned model keeps its forward, works with ``torch.compile`` and
``torch.export``, and its ``state_dict`` describes the new shapes.

Coupling policy
---------------
Channels tied through a residual addition (or a concatenation feeding one) belong to
several producing convs at once.  ``coupling="exclude"`` (the default) prunes only convs
whose output channels have a single producer and leaves coupled ones intact; this is what Li
et al. do for ResNets (they prune the first conv of each residual block) and it cannot hurt
the residual stream, which the paper found sensitive.  ``coupling="together"`` prunes a
coupled group as one unit: a channel's importance is the mean over the group's producers of
its filter norm divided by the mean filter norm of that producer (mean rather than sum, so a
channel shared by many layers is comparable with one shared by few; normalised, so layers of
different fan-in weigh alike), and the same channels disappear from every member -- including
the zero channels of option-A shortcuts, whose ``pad_front``/``pad_back`` shrink.

Examples
--------
>>> import torch
>>> from prunesafe.models import cifar_vgg
>>> model = cifar_vgg(11)
>>> pruner = FilterPruner(0.5)
>>> pruned = pruner.prune(model, example_inputs=torch.rand(1, 3, 32, 32))
>>> pruned.features[0].out_channels, pruner.achieved_ratio
(32, 0.5)
>>> pruned(torch.rand(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from prunesafe._utils import as_input_tuple
from prunesafe.pruning._ratios import (
    Selection,
    count_to_remove,
    is_pattern,
    resolve_ratio_map,
    threshold_index,
    validate_ratio,
    validate_selection,
)
from prunesafe.pruning.base import Pruner, register_pruner
from prunesafe.pruning.graph import ChannelGraph, ChannelGroup, SlotRole, build_channel_graph
from prunesafe.pruning.importance import Norm, bn_scaling_factors, component_scores, filter_norms
from prunesafe.pruning.selection import slot_scaling_factors

__all__ = [
    "MIN_ELIGIBLE_FRACTION",
    "VERIFY_MAX_PARAMETERS",
    "ChannelPruner",
    "Coupling",
    "FilterPruner",
    "LayerSelection",
    "PruningVerificationError",
    "ThresholdScope",
]

Coupling = Literal["exclude", "together"]
#: Population of ``"channel"``'s global threshold: ALL BatchNorm channels (Liu et al.) or the eligible ones.
ThresholdScope = Literal["all", "eligible"]
#: Without an explicit selection (``layers=`` / a ratio mapping), warn when fewer units are eligible.
MIN_ELIGIBLE_FRACTION = 0.25
#: ``verify=None`` (auto) checks removed == masked only for models with at most this many parameters.
VERIFY_MAX_PARAMETERS = 50_000_000
#: Layers that normalise ACROSS channels: removing a channel there legitimately differs from zeroing it.
_CROSS_CHANNEL_NORMS: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


class PruningVerificationError(ValueError):
    """The pruned model disagrees with the masked original on ``example_inputs`` (``verify=True``)."""


LayerSelection = Sequence[str] | Callable[[str, nn.Module], bool] | None

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


class _StructuredPruner(Pruner):
    """Shared machinery of the graph-based pruners (selection, eligibility, removal)."""

    requires_example_inputs: ClassVar[bool] = True
    #: The slot role whose channels ``ratio`` counts ("producer" = conv filters, "norm" = BN channels).
    _role: ClassVar[SlotRole] = "producer"
    #: Module types a ``layers=`` name may refer to.
    _layer_types: ClassVar[tuple[type[nn.Module], ...]] = (nn.modules.conv._ConvNd,)
    _layer_kind: ClassVar[str] = "convolution"

    def __init__(
        self,
        ratio: float | Mapping[str, float],
        *,
        coupling: Coupling = "exclude",
        layers: LayerSelection = None,
        min_channels: int = 1,
        selection: Selection = "topk",
        verify: bool | None = None,
    ) -> None:
        parsed = validate_ratio(ratio)
        #: ``{layer name or glob: ratio}`` when ``ratio`` was a mapping (else ``None``).
        self.ratio_map: dict[str, float] | None = parsed if isinstance(parsed, dict) else None
        if self.ratio_map is not None and layers is not None:
            raise TypeError(
                "give either a ratio mapping or layers=, not both: the mapping's keys select the layers "
                "(a ratio of 0 skips one)"
            )
        # with a mapping, ``ratio`` becomes the unit-weighted mean asked ratio once prune() knows the layers
        super().__init__(max(parsed.values()) if isinstance(parsed, dict) else parsed)
        self.selection: Selection = validate_selection(selection)
        if verify is not None and not isinstance(verify, bool):
            raise TypeError(f"verify must be True, False or None (auto), got {verify!r}")
        self.verify = verify
        self._layer_ratio: dict[str, float] = {}
        #: Set by :meth:`prune`: the layers whose units ``ratio`` counted (eligible convs / BNs).
        self.unit_layers: list[str] = []
        #: Set by :meth:`prune`: warnings and shortfalls of the run (also issued as ``UserWarning``).
        self.notes: list[str] = []
        #: Set by :meth:`prune`: whether removed == masked was checked on ``example_inputs``.
        self.verified: bool = False
        if coupling not in ("exclude", "together"):
            raise ValueError(f'coupling must be "exclude" or "together", got {coupling!r}')
        if isinstance(layers, str):
            raise TypeError(f"layers must be a list of module names or a predicate, not a str ({layers!r})")
        if (layers is not None and not callable(layers)) and (
            not isinstance(layers, Sequence) or not all(isinstance(n, str) for n in layers)
        ):
            raise TypeError(
                "layers must be None, a list of qualified module names or a predicate "
                f"(name, module) -> bool, got {layers!r}"
            )
        if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
            raise ValueError(f"min_channels must be an int >= 1, got {min_channels!r}")
        self.coupling: Coupling = coupling
        self.layers = list(layers) if layers is not None and not callable(layers) else layers
        self.min_channels = min_channels
        #: Set by :meth:`prune`: fraction of ALL the model's units (conv filters / BN channels) removed.
        self.achieved_ratio_of_all: float | None = None
        #: Set by :meth:`prune`: fraction of ALL the model's units that were eligible for pruning.
        self.eligible_fraction: float | None = None

    def _units_in_model(self, model: nn.Module) -> int:
        """Number of units (output filters of every conv / channels of every BN) in ``model``."""
        total = 0
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and self._role == "norm":
                total += _bn_units(module)
            elif isinstance(module, nn.modules.conv._ConvNd) and self._role == "producer":
                total += int(module.out_channels)
        return total

    # ------------------------------------------------------------------ hooks for subclasses
    def _slot_scores(self, graph: ChannelGraph, slots: Sequence[int]) -> list[torch.Tensor]:
        raise NotImplementedError

    def _extra_reason(self, graph: ChannelGraph, group: ChannelGroup) -> str:
        return ""

    # ------------------------------------------------------------------ selection
    def _selected_names(self, model: nn.Module) -> set[str] | None:
        if self.ratio_map is not None:
            names = [n for n, m in model.named_modules() if isinstance(m, self._layer_types)]
            self._layer_ratio = resolve_ratio_map(self.ratio_map, names)
            return set(self._layer_ratio)
        if self.layers is None:
            return None
        candidates = {n: m for n, m in model.named_modules() if isinstance(m, self._layer_types)}
        if callable(self.layers):
            predicate = self.layers
            return {n for n, m in candidates.items() if predicate(n, m)}
        unknown = [n for n in self.layers if n not in candidates]
        if unknown:
            raise ValueError(
                f"layers: unknown {self._layer_kind} name(s) {unknown}; valid names are: {sorted(candidates)}"
            )
        return set(self.layers)

    def _group_reason(self, graph: ChannelGraph, group: ChannelGroup) -> str:
        if not group.prunable:
            return group.reason
        if not group.producers:
            return "no producing layer"
        extra = self._extra_reason(graph, group)
        if extra:
            return extra
        if self.coupling == "exclude" and len(group.producers) > 1:
            others = sorted(graph.slots[i].module_name for i in group.producers)
            return (
                f"its channels are coupled across {len(others)} layers ({', '.join(others[:4])}"
                f"{', ...' if len(others) > 4 else ''}) through residual additions / concatenation; "
                'coupling="exclude" leaves them (pass coupling="together" to prune them as one group)'
            )
        return ""

    def _eligible(self, model: nn.Module, graph: ChannelGraph) -> tuple[list[ChannelGroup], dict[str, str]]:
        selected = self._selected_names(model)
        groups = graph.groups()
        eligible: list[ChannelGroup] = []
        reasons: dict[str, str] = {}
        for group in groups:
            unit_slots = group.producers if self._role == "producer" else group.norms
            names = sorted({graph.slots[i].module_name for i in unit_slots})
            reason = self._group_reason(graph, group)
            if not reason and selected is not None and not all(n in selected for n in names):
                by = "the ratio mapping" if self.ratio_map is not None else "layers="
                reason = (
                    f"coupled group {names} is only partly selected by {by} (select all of them)"
                    if any(n in selected for n in names)
                    else f"not selected by {by}"
                )
            if reason:
                for n in names:
                    reasons.setdefault(n, reason)
            else:
                eligible.append(group)
        if selected is not None and isinstance(self.layers, list):
            in_groups = {graph.slots[i].module_name for g in eligible for i in self._unit_slots(g)}
            refused = {
                n: reasons.get(n, self._not_a_unit_reason()) for n in self.layers if n not in in_groups
            }
            if refused:
                detail = "; ".join(f"{n!r}: {r}" for n, r in refused.items())
                raise ValueError(f"layers: these {self._layer_kind}s cannot be pruned -- {detail}")
        if self.ratio_map is not None:
            self._check_ratio_map(graph, eligible, reasons)
        return eligible, reasons

    def _check_ratio_map(
        self, graph: ChannelGraph, eligible: list[ChannelGroup], reasons: dict[str, str]
    ) -> None:
        """Exact keys must be prunable, a pattern must reach one prunable layer, a group needs one ratio."""
        assert self.ratio_map is not None
        in_groups = {graph.slots[i].module_name for g in eligible for i in self._unit_slots(g)}
        decided: dict[str, list[str]] = {}
        for name in self._layer_ratio:
            winner = [k for k in self.ratio_map if fnmatchcase(name, k)][-1]
            decided.setdefault(winner, []).append(name)
        problems: dict[str, str] = {}
        for key, names in decided.items():
            if is_pattern(key):
                if not any(n in in_groups for n in names):
                    problems[key] = (
                        f"matches only layers that cannot be pruned, e.g. {names[0]!r}: "
                        + reasons.get(names[0], self._not_a_unit_reason())
                    )
            elif key not in in_groups:
                problems[key] = reasons.get(key, self._not_a_unit_reason())
        if problems:
            detail = "; ".join(f"{k!r}: {r}" for k, r in problems.items())
            raise ValueError(f"ratio mapping: these keys select nothing prunable -- {detail}")
        for group in eligible:
            self._group_ratio(graph, group)

    def _group_ratio(self, graph: ChannelGraph, group: ChannelGroup) -> float:
        """The ratio asked for one group (the same for every unit layer of a coupled group)."""
        if self.ratio_map is None:
            return self.ratio
        names = sorted({graph.slots[i].module_name for i in self._unit_slots(group)})
        values = {self._layer_ratio[n] for n in names if n in self._layer_ratio}
        if len(values) != 1:
            detail = ", ".join(f"{n}: {self._layer_ratio.get(n, 0.0)}" for n in names)
            raise ValueError(
                f"ratio mapping: the coupled {self._layer_kind}s {names} share their channels and are pruned "
                f"together, so they need one ratio (got {detail})"
            )
        return values.pop()

    def _not_a_unit_reason(self) -> str:
        return "not an independent producer of channels (e.g. a depthwise conv follows its input's channels)"

    def _unit_slots(self, group: ChannelGroup) -> list[int]:
        return group.producers if self._role == "producer" else group.norms

    def _no_layers_error(self, reasons: dict[str, str]) -> ValueError:
        shown = "; ".join(f"{n!r}: {r}" for n, r in list(reasons.items())[:6])
        return ValueError(
            f"no prunable layers for method {self.name!r}: nothing in the model can be pruned safely"
            + (
                f" ({shown}{' ...' if len(reasons) > 6 else ''})"
                if shown
                else f" (the model has no {self._layer_kind}s)"
            )
            + ". Check layers=/coupling=, or use method='unstructured'."
        )

    @staticmethod
    def _take_lowest(
        comps: IntArray,
        scores: FloatArray,
        weights: IntArray,
        budget: float,
        cap: IntArray,
        group_of: IntArray,
    ) -> IntArray:
        """Lowest-score components (at most ``cap[g]`` per group) whose weights sum closest to ``budget``."""
        order = np.lexsort((comps, scores))  # by score, ties by component id (deterministic)
        comps, weights, group_of = comps[order], weights[order], group_of[order]
        # rank of each component inside its group, in score order
        sort_g = np.argsort(group_of, kind="stable")
        rank = np.empty(len(comps), dtype=np.int64)
        g_sorted = group_of[sort_g]
        starts = np.r_[0, np.nonzero(np.diff(g_sorted))[0] + 1]
        counts = np.diff(np.r_[starts, len(g_sorted)])
        rank[sort_g] = np.arange(len(comps)) - np.repeat(starts, counts)
        allowed = rank < cap[group_of]
        comps, weights = comps[allowed], weights[allowed]
        # a prefix in score order (a threshold), of the length whose weight is closest to the budget
        cumulative = np.r_[0, np.cumsum(weights)]
        length = int(np.argmin(np.abs(cumulative - budget)))
        return comps[:length]

    def _protect_slots(self, graph: ChannelGraph, removed: np.ndarray[Any, Any], score: FloatArray) -> None:
        """Un-remove the best channels of any slot that would keep fewer than ``min_channels``."""
        for slot in graph.slots:
            if slot.role == "consumer":
                continue
            comps = graph.labels[slot.elements]
            gone = removed[comps]
            if not gone.any():
                continue
            need = min(self.min_channels, len(comps)) - int((~gone).sum())
            if need > 0:
                candidates = np.unique(comps[gone])
                best = candidates[np.argsort(-np.nan_to_num(score[candidates], nan=np.inf), kind="stable")]
                removed[best[:need]] = False

    # ------------------------------------------------------------------ the algorithm
    def _choose(
        self, graph: ChannelGraph, groups: list[ChannelGroup], score: FloatArray, weight: IntArray
    ) -> IntArray:
        raise NotImplementedError

    def _choose_in_group(
        self, comps: IntArray, ratio: float, score: FloatArray, weight: IntArray
    ) -> IntArray:
        """The channels of one group to remove at ``ratio`` (units counted with ``weight``)."""
        comps = comps[weight[comps] > 0]
        w = weight[comps]
        if ratio <= 0 or not len(comps):
            return np.zeros(0, dtype=np.int64)
        if self.selection == "threshold":
            # Liu et al.'s rule over the group's units (a coupled channel counts once per layer)
            units = np.repeat(np.nan_to_num(score[comps], nan=np.inf), w)
            threshold = np.sort(units, kind="stable")[threshold_index(ratio, len(units))]
            out: IntArray = comps[score[comps] <= threshold]
            return out
        # the budget counts units: a coupled channel counts once per layer it removes a filter/BN channel from
        budget = count_to_remove(ratio, int(w.sum()))
        self._scopes.append((comps, budget))
        cap = np.array([max(len(comps) - self.min_channels, 0)], dtype=np.int64)
        return self._take_lowest(comps, score[comps], w, budget, cap, np.zeros(len(comps), dtype=np.int64))

    def explain(self, model: nn.Module, *, example_inputs: Any) -> dict[str, str]:
        """Which layers this pruner would prune, and why the others are left alone.

        Parameters
        ----------
        model : nn.Module
            Not modified.
        example_inputs : torch.Tensor, numpy.ndarray or tuple
            As for :meth:`prune`.

        Returns
        -------
        dict of str to str
            For every convolution (``"filter"``) or BatchNorm (``"channel"``) of the model:
            ``""`` when it would be pruned, otherwise the reason it is not.

        Examples
        --------
        >>> import torch
        >>> from prunesafe.models import cifar_resnet
        >>> why = FilterPruner(0.5).explain(cifar_resnet(20), example_inputs=torch.rand(1, 3, 32, 32))
        >>> why["layer1.0.conv1"]
        ''
        >>> why["layer1.0.conv2"].startswith("its channels are coupled across 10 layers")
        True
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        graph = build_channel_graph(model, example_inputs)
        layers, ratio_map = self.layers, self.ratio_map
        if ratio_map is not None:
            self._selected_names(model)
            layers, self.ratio_map = list(self._layer_ratio), None
        self.layers = None if isinstance(layers, list) else layers
        try:
            eligible, reasons = self._eligible(model, graph)
        finally:
            self.layers, self.ratio_map = (None if ratio_map is not None else layers), ratio_map
        if isinstance(layers, list):
            chosen = set(layers)
            for group in eligible:
                names = {graph.slots[i].module_name for i in self._unit_slots(group)}
                if not names <= chosen:
                    for n in names:
                        reasons[n] = "not selected by " + ("the ratio mapping" if ratio_map else "layers=")
        pruned = {graph.slots[i].module_name for g in eligible for i in self._unit_slots(g)}
        out: dict[str, str] = {}
        for name, module in model.named_modules():
            if isinstance(module, self._layer_types):
                out[name] = (
                    ""
                    if name in pruned and name not in reasons
                    else reasons.get(name, self._not_a_unit_reason())
                )
        return out

    def prune(self, model: nn.Module, *, example_inputs: Any = None) -> nn.Module:
        """Remove channels from ``model`` in place and return it.

        Parameters
        ----------
        model : nn.Module
            Modified in place (``prune_model`` passes a copy unless ``inplace=True``).
        example_inputs : torch.Tensor, numpy.ndarray or tuple
            Inputs used to trace the model (shapes only; one sample is enough).

        Returns
        -------
        nn.Module
            ``model`` itself, with smaller layers.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if example_inputs is None:
            raise TypeError(
                f"example_inputs is required for method {self.name or type(self).__name__!r} (the model is "
                "traced to find dependent layers): pass example_inputs=torch.rand(1, 3, H, W)"
            )
        graph = build_channel_graph(model, example_inputs)
        eligible, reasons = self._eligible(model, graph)
        if not eligible:
            raise self._no_layers_error(reasons)
        self.notes = []
        self.verified = False
        all_before = self._units_in_model(model)
        unit_slots = sorted({i for g in eligible for i in self._unit_slots(g)})
        self.unit_layers = sorted({graph.slots[i].module_name for i in unit_slots})
        total = sum(len(graph.slots[i].elements) for i in unit_slots)
        if self.ratio_map is not None:  # the asked ratio, weighted by the units of each selected layer
            asked = sum(self._layer_ratio[graph.slots[i].module_name] * len(graph.slots[i].elements)
                        for i in unit_slots if graph.slots[i].module_name in self._layer_ratio)  # fmt: skip
            self.ratio = asked / total if total else 0.0
        score, weight = component_scores(graph, unit_slots, self._slot_scores(graph, unit_slots))
        self._check_scores(graph, eligible, score)
        self._scopes: list[tuple[IntArray, int]] = []
        chosen = self._choose(graph, eligible, score, weight) if self.ratio > 0 else np.zeros(0, np.int64)
        removed = np.zeros(graph.num_components, dtype=bool)
        removed[chosen] = True
        before_protection = int(weight[removed].sum())
        self._protect_slots(graph, removed, score)
        if self.selection == "topk":
            self._compensate(graph, removed, score, weight)
        asked_units = sum(b for _, b in self._scopes) if self.selection == "topk" else before_protection
        got_units = int(weight[removed].sum())
        if got_units < asked_units:
            self._note(
                f"min_channels={self.min_channels}: {asked_units - got_units} of the {asked_units} "
                f"{self.unit} selected for removal had to stay (no layer may keep fewer than min_channels, "
                "and no other eligible channel could be taken instead)"
            )
        dropped = sum(int(removed[graph.slot_components(i)].sum()) for i in unit_slots)
        check = self._verify_wanted(model)
        masked = self._masked_copy(graph, model, removed) if check and removed.any() else None
        self.pruned_modules = graph.remove(np.nonzero(removed)[0])
        if masked is not None:
            self._verify(masked, model, example_inputs)
        self.achieved_ratio = dropped / total if total else 0.0
        self.eligible_fraction = total / all_before if all_before else 0.0
        self.achieved_ratio_of_all = 1.0 - self._units_in_model(model) / all_before if all_before else 0.0
        self._after_prune(model)
        explicit = self.layers is not None or self.ratio_map is not None
        if not explicit and self.ratio > 0 and self.eligible_fraction < MIN_ELIGIBLE_FRACTION:
            self._note(
                f"only {self.eligible_fraction:.1%} of the model's {self.unit} were eligible, so ratio="
                f"{self.ratio} removed {self.achieved_ratio_of_all:.2%} of ALL its {self.unit} "
                f"(achieved_ratio_of_all); see explain() for why the others were left"
                + (
                    '; coupling="together" makes coupled layers eligible'
                    if self.coupling == "exclude"
                    else ""
                )
            )
        return model

    # ------------------------------------------------------------------ warnings, compensation, verification
    def _note(self, message: str) -> None:
        self.notes.append(message)
        warnings.warn(
            f"{self.name or type(self).__name__}: {message}", UserWarning, stacklevel=_caller_level()
        )

    def _check_scores(self, graph: ChannelGraph, groups: list[ChannelGroup], score: FloatArray) -> None:
        """Hook: warn about scores that cannot rank channels (see :class:`ChannelPruner`)."""

    def _after_prune(self, model: nn.Module) -> None:
        """Hook: notes about the finished run (see :class:`ChannelPruner`)."""

    def _compensate(self, graph: ChannelGraph, removed: np.ndarray[Any, Any], score: FloatArray,
                    weight: IntArray) -> None:  # fmt: skip
        """After :meth:`_protect_slots`, take the next lowest channels of each scope to meet its budget."""
        slots = [s for s in graph.slots if s.role != "consumer"]
        slot_comps = [graph.labels[s.elements] for s in slots]
        for comps, budget in self._scopes:
            deficit = budget - int(weight[comps[removed[comps]]].sum())
            if deficit <= 0:
                continue
            cand = comps[~removed[comps] & (weight[comps] > 0)]
            if not len(cand):
                continue
            cand = cand[np.lexsort((cand, np.nan_to_num(score[cand], nan=np.inf)))]
            wanted = set(cand.tolist())
            kept = np.array([int((~removed[c]).sum()) for c in slot_comps])
            need = np.array([min(self.min_channels, len(c)) for c in slot_comps])
            members: dict[int, list[tuple[int, int]]] = {}
            for k, c in enumerate(slot_comps):
                uniq, counts = np.unique(c, return_counts=True)
                for comp, count in zip(uniq.tolist(), counts.tolist(), strict=True):
                    if comp in wanted:
                        members.setdefault(comp, []).append((k, count))
            for comp in cand.tolist():
                if 2 * deficit < int(weight[comp]):  # closer to the budget without it
                    break
                touched = members.get(comp, [])
                if all(kept[k] - n >= need[k] for k, n in touched):
                    removed[comp] = True
                    for k, n in touched:
                        kept[k] -= n
                    deficit -= int(weight[comp])
                    if deficit <= 0:
                        break

    def _verify_wanted(self, model: nn.Module) -> bool:
        if self.verify is not None:
            return self.verify
        cross = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _CROSS_CHANNEL_NORMS)})
        if cross:
            self.notes.append(
                f"not verified (verify=None): the model normalises across channels ({', '.join(cross)}), "
                "where "
                "removing a channel legitimately differs from zeroing it; pass verify=True to check anyway"
            )
            return False
        if sum(p.numel() for p in model.parameters()) > VERIFY_MAX_PARAMETERS:
            self.notes.append(
                f"not verified (verify=None): more than {VERIFY_MAX_PARAMETERS:,} parameters; "
                "pass verify=True"
            )
            return False
        return True

    @staticmethod
    def _masked_copy(graph: ChannelGraph, model: nn.Module, removed: np.ndarray[Any, Any]) -> nn.Module:
        """A copy of ``model`` with the removed channels zeroed at their source (filters, BN gamma/beta)."""
        from prunesafe.pruning.api import copy_model  # api imports the pruners' registry: import late

        masked = copy_model(model)
        with torch.no_grad():
            for slot in graph.slots:
                if slot.role == "consumer":
                    continue
                idx = torch.from_numpy(np.nonzero(removed[graph.labels[slot.elements]])[0])
                if not len(idx):
                    continue
                module = masked.get_submodule(slot.module_name)
                if slot.mask is not None:  # the slot says how to zero its channels (channel selection)
                    slot.mask(module, idx)
                    continue
                for attr, dim in slot.tensors:
                    if attr.startswith("running_"):
                        continue
                    orig = getattr(module, attr + "_orig", None)
                    tensor = orig if isinstance(orig, torch.Tensor) else getattr(module, attr, None)
                    if isinstance(tensor, torch.Tensor) and tensor.dim() > dim:
                        tensor.index_fill_(dim, idx.to(tensor.device), 0.0)
        return masked

    def _verify(self, masked: nn.Module, pruned: nn.Module, example_inputs: Any) -> None:
        """Raise :class:`PruningVerificationError` unless ``pruned`` computes what ``masked`` does."""
        inputs = as_input_tuple(example_inputs, None)
        outputs = []
        for net in (masked, pruned):
            modes = [(m, m.training) for m in net.modules()]
            net.eval()
            try:
                with torch.no_grad():
                    outputs.append(_tensors_of(net(*inputs)))
            finally:
                for m, mode in modes:
                    m.training = mode
        expected, got = outputs
        worst = 0.0
        for a, b in zip(expected, got, strict=False):
            if a.shape != b.shape:
                worst = float("inf")
                break
            scale = float(a.abs().max()) if a.numel() else 0.0
            diff = float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
            worst = max(worst, diff / max(scale, 1e-6))
        if len(expected) != len(got) or worst > 1e-3:
            raise PruningVerificationError(
                f"verify: the pruned model disagrees with the original whose removed channels are zeroed "
                f"(largest relative difference {worst:.3g} on example_inputs). A channel rule or the graph "
                "sliced a layer at the wrong channels -- check rules registered with register_channel_rule "
                "for "
                "the layers between the pruned ones. The model returned would compute something else, so it "
                "is refused (with inplace=True the model has been modified); pass verify=False only if the "
                "difference is intended (e.g. normalisation across channels)."
            )
        self.verified = True


@register_pruner("filter")
class FilterPruner(_StructuredPruner):
    """L1-norm filter pruning (Li et al. 2017, "Pruning Filters for Efficient ConvNets").

    In every selected convolution the ``round(ratio * out_channels)`` filters (Python's
    ``round``, half to even, as :mod:`torch.nn.utils.prune`; at most ``out_channels -
    min_channels``) with the smallest norm are removed, together with everything that depends
    on them.  ``ratio`` counts output filters of the selected convs; :attr:`achieved_ratio` is
    removed / total filters over those convs, :attr:`achieved_ratio_of_all` over every conv.

    Parameters
    ----------
    ratio : float or mapping of str to float
        Fraction in ``[0, 1)`` of each selected conv's filters to remove, or a mapping
        ``{conv name or glob pattern: ratio}`` giving each conv its own (the last matching key
        wins; unmatched convs and ratio 0 are skipped), e.g. ``{"layer1.*.conv1": 0.5,
        "layer2.*.conv1": 0.4, "layer1.8.conv1": 0}``.
    norm : {"l1", "l2"}, default "l1"
        Filter importance: L1 norm (the paper) or L2 norm.
    coupling : {"exclude", "together"}, default "exclude"
        What to do with convs whose output channels are tied to other convs through residual
        additions or concatenation: leave them (default, as Li et al. do for ResNets) or
        prune each coupled group as one (see the module documentation).
    layers : None, list of str, or callable, default None
        ``None``: every safely prunable conv.  A list of qualified conv names (unknown names
        or names that cannot be pruned raise ``ValueError`` saying why), or a predicate
        ``(name, module) -> bool``.  With ``coupling="together"`` a coupled group is pruned
        only when all its convs are selected.
    min_channels : int, default 1
        Never leave a layer with fewer channels.
    prune_linear : bool, default True
        Also prune the hidden units of Linear layers (VGG/AlexNet classifiers: the rows of a
        hidden Linear are its "filters", ranked by the same norm) when ``layers`` is None.
        The final classifier's outputs are never pruned (they reach the model output).
        ``False`` keeps every Linear layer, as Li et al. do (they prune convolutions only).
    selection : {"topk", "threshold"}, default "topk"
        ``"topk"``: exactly ``round(ratio * n)`` filters per conv.  ``"threshold"``: the rule of
        Liu et al.'s code -- keep norms strictly greater than the value at sorted index
        ``floor(n * ratio)`` (ties pruned, achieved >= asked).
    verify : bool or None, default None
        After removal, compare the pruned model with the original whose removed channels are
        zeroed on ``example_inputs`` and raise :class:`PruningVerificationError` on a mismatch;
        ``None``: only when cheap and meaningful (see :func:`~prunesafe.pruning.prune_model`).

    Attributes
    ----------
    achieved_ratio : float
        Set by :meth:`prune`: removed / total output filters over the pruned groups' convs
        (and hidden Linear units, see ``prune_linear``; what ``ratio`` counts).
    achieved_ratio_of_all : float
        Set by :meth:`prune`: fraction of ALL conv filters (output channels of every conv of
        the model, depthwise ones included) removed.  Smaller than :attr:`achieved_ratio`
        whenever some convs are not eligible: with ``coupling="exclude"`` the convs on a
        residual stream and the last conv before the output stay intact.
    eligible_fraction : float
        Set by :meth:`prune`: filters of the eligible convs / all conv filters of the model.
    pruned_modules : list of str
        Set by :meth:`prune`: every module whose shape changed (convs, BatchNorms, consumers,
        depthwise convs, zero-pad shortcuts), in graph order.

    Notes
    -----
    Safe by construction: convs whose channels reach the model output, feed an operation the
    graph does not understand, or are grouped (non-depthwise) are never pruned.  A
    depthwise conv follows the channels of the conv that feeds it.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.models import cifar_resnet
    >>> model = cifar_resnet(20)
    >>> pruner = FilterPruner(0.5)          # first conv of every residual block
    >>> _ = pruner.prune(model, example_inputs=torch.rand(1, 3, 32, 32))
    >>> model.layer1[0].conv1.out_channels, model.layer1[0].conv2.in_channels, model.conv1.out_channels
    (8, 8, 16)
    """

    unit: ClassVar[str] = "filters"
    _role: ClassVar[SlotRole] = "producer"

    def __init__(
        self,
        ratio: float | Mapping[str, float],
        *,
        norm: Norm = "l1",
        coupling: Coupling = "exclude",
        layers: LayerSelection = None,
        min_channels: int = 1,
        selection: Selection = "topk",
        verify: bool | None = None,
        prune_linear: bool = True,
    ) -> None:
        super().__init__(
            ratio,
            coupling=coupling,
            layers=layers,
            min_channels=min_channels,
            selection=selection,
            verify=verify,
        )
        if norm not in ("l1", "l2"):
            raise ValueError(f'norm must be "l1" or "l2", got {norm!r}')
        if not isinstance(prune_linear, bool):
            raise TypeError(f"prune_linear must be True or False, got {prune_linear!r}")
        self.norm: Norm = norm
        self.prune_linear = prune_linear

    def _extra_reason(self, graph: ChannelGraph, group: ChannelGroup) -> str:
        # hidden Linear units are units like filters (issue 9); any other producer is not
        allowed = (nn.modules.conv._ConvNd, nn.Linear) if self.prune_linear else (nn.modules.conv._ConvNd,)
        other = [graph.slots[i].module_name for i in group.producers
                 if not isinstance(graph.slots[i].module, allowed)]  # fmt: skip
        if other:
            what = "non-convolution" if self.prune_linear else "Linear or other non-convolution"
            hint = "" if self.prune_linear else "; prune_linear=True prunes hidden Linear units"
            return f"produced by {what} layer(s) {other} (filter pruning removes conv filters{hint})"
        return ""

    def _slot_scores(self, graph: ChannelGraph, slots: Sequence[int]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for i in slots:
            slot = graph.slots[i]
            weight = getattr(slot.module, "weight")  # noqa: B009 (a parameter or a masked weight)
            dim = next(d for attr, d in slot.tensors if attr == "weight")
            norms = filter_norms(weight, dim, self.norm)
            # scale-free within a coupled group: layers of different fan-in are compared fairly
            mean = norms.mean()
            out.append(norms / mean if mean > 0 else norms)
        return out

    def _choose(
        self, graph: ChannelGraph, groups: list[ChannelGroup], score: FloatArray, weight: IntArray
    ) -> IntArray:
        chosen: list[IntArray] = []
        for group in groups:
            chosen.append(
                self._choose_in_group(group.components, self._group_ratio(graph, group), score, weight)
            )
        return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


@register_pruner("channel")
class ChannelPruner(_StructuredPruner):
    """Network slimming (Liu et al. 2017): one global threshold on BatchNorm ``|gamma|``.

    One threshold on ``|gamma|`` over **all** BatchNorm channels of the model (as in Liu et al.'s
    code, ``threshold_scope="all"``, the default) or over the eligible ones only
    (``threshold_scope="eligible"``) decides which channels go; every *eligible* channel under the
    threshold is removed, across all layers at once (layers with larger scaling factors keep more
    channels).  Channels under the threshold that cannot be removed (e.g. the residual stream with
    ``coupling="exclude"``) stay, so ``achieved_ratio_of_all`` -- the number to read first -- can be
    below ``ratio``.  No layer is ever emptied: each keeps at least ``min_channels``; with
    ``selection="topk"`` the next smallest channels elsewhere are taken instead, a remaining
    shortfall is reported in :attr:`notes`.  Train with the slimming regulariser (L1 on ``gamma``)
    first for the method to be meaningful: with equal ``|gamma|`` everywhere (a fresh model,
    ``affine=False``) the choice is arbitrary and a ``UserWarning`` says so.

    Parameters
    ----------
    ratio : float or mapping of str to float
        Fraction in ``[0, 1)`` of the threshold's population (see ``threshold_scope``) under the
        threshold.  A mapping ``{BatchNorm name or glob: ratio}`` prunes each matched BN (or coupled
        group) by its own ratio instead (a local threshold per layer; unmatched BNs are skipped).
    coupling : {"exclude", "together"}, default "exclude"
        As in :class:`FilterPruner`.  With ``"together"`` a coupled channel's score is the
        mean ``|gamma|`` over the BatchNorms sharing it, and it counts once per BatchNorm.
    layers : None, list of str, or callable, default None
        ``None``: every eligible BatchNorm; or qualified BatchNorm names / a predicate.
    min_channels : int, default 1
    selection : {"topk", "threshold"}, default "topk"
        ``"topk"``: the ``round(ratio * n)`` smallest of the ``n`` channels of the population (ties
        by position).  ``"threshold"``: Liu et al.'s rule -- keep ``|gamma|`` strictly greater
        than the value at sorted index ``floor(n * ratio)``; ties are pruned, achieved >= asked.
    threshold_scope : {"all", "eligible"}, default "all"
        The population of the global threshold: ALL BatchNorm channels of the model (Liu et al.)
        or only the eligible ones (so that ``achieved_ratio`` equals ``ratio``).
    verify : bool or None, default None
        Check that the pruned model equals the original with the removed channels zeroed (see
        :class:`FilterPruner`).

    Attributes
    ----------
    achieved_ratio : float
        Set by :meth:`prune`: removed / total channels over the eligible BatchNorms.
    achieved_ratio_of_all : float
        Set by :meth:`prune`: fraction of ALL BatchNorm channels of the model removed.  With
        ``coupling="exclude"`` the BNs on a residual stream are not eligible, so this is
        smaller: on CIFAR ResNet-56, ``ratio=0.5`` removes about half of the eligible BN
        channels but only about a quarter of all of them.
    eligible_fraction : float
        Set by :meth:`prune`: channels of the eligible BatchNorms / all BN channels.
    pruned_modules : list of str
        Set by :meth:`prune`: every module whose shape changed, in graph order.

    Notes
    -----
    Only channel groups that contain a BatchNorm are eligible.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.models import cifar_vgg
    >>> model = cifar_vgg(11)
    >>> with torch.no_grad():
    ...     for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
    ...         _ = bn.weight.copy_(torch.rand(bn.num_features))
    >>> pruner = ChannelPruner(0.3)
    >>> _ = pruner.prune(model, example_inputs=torch.rand(1, 3, 32, 32))
    >>> round(pruner.achieved_ratio_of_all, 3), pruner.verified
    (0.3, True)
    """

    def __init__(
        self,
        ratio: float | Mapping[str, float],
        *,
        coupling: Coupling = "exclude",
        layers: LayerSelection = None,
        min_channels: int = 1,
        selection: Selection = "topk",
        threshold_scope: ThresholdScope = "all",
        verify: bool | None = None,
    ) -> None:
        super().__init__(
            ratio,
            coupling=coupling,
            layers=layers,
            min_channels=min_channels,
            selection=selection,
            verify=verify,
        )
        if threshold_scope not in ("all", "eligible"):
            raise ValueError(
                'threshold_scope must be "all" (threshold over every BatchNorm channel, Liu et al.) or '
                f'"eligible", got {threshold_scope!r}'
            )
        self.threshold_scope: ThresholdScope = threshold_scope

    unit: ClassVar[str] = "channels"
    _role: ClassVar[SlotRole] = "norm"
    _layer_types: ClassVar[tuple[type[nn.Module], ...]] = (nn.modules.batchnorm._BatchNorm,)
    _layer_kind: ClassVar[str] = "BatchNorm"

    def _extra_reason(self, graph: ChannelGraph, group: ChannelGroup) -> str:
        if group.norms:
            return ""
        return "no BatchNorm on these channels (network slimming needs BN scaling factors)"

    def _not_a_unit_reason(self) -> str:
        return "its channels are not an eligible group"

    def _slot_scores(self, graph: ChannelGraph, slots: Sequence[int]) -> list[torch.Tensor]:
        # slot_scaling_factors: |gamma| of the slot's channels (the selected ones of a channel-selection BN)
        return [slot_scaling_factors(graph.slots[i]) for i in slots]

    def _choose(
        self, graph: ChannelGraph, groups: list[ChannelGroup], score: FloatArray, weight: IntArray
    ) -> IntArray:
        if self.ratio_map is not None:  # a local threshold per selected BatchNorm / coupled group
            parts = [
                self._choose_in_group(g.components, self._group_ratio(graph, g), score, weight)
                for g in groups
            ]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        comps = np.concatenate([g.components for g in groups])
        group_of = np.concatenate(
            [np.full(len(g.components), k, dtype=np.int64) for k, g in enumerate(groups)]
        )
        w = weight[comps]
        has_bn = w > 0
        comps, group_of, w = comps[has_bn], group_of[has_bn], w[has_bn]
        cap = np.array(
            [max(int((weight[g.components] > 0).sum()) - self.min_channels, 0) for g in groups],
            dtype=np.int64,
        )
        if self.threshold_scope == "all":
            population, eligible_entry = self._all_bn_channels(graph, comps)
        else:
            population = np.repeat(score[comps], w)
            eligible_entry = np.ones(len(population), dtype=bool)
        if self.selection == "threshold":
            index = threshold_index(self.ratio, len(population))
            threshold = np.sort(population, kind="stable")[index]
            out: IntArray = comps[score[comps] <= threshold]
            return out
        k = count_to_remove(self.ratio, len(population))
        order = np.argsort(population, kind="stable")  # ties by position (module order)
        budget = int(eligible_entry[order[:k]].sum())  # the eligible channels among the k lowest of ALL
        self._scopes.append((comps, budget))
        return self._take_lowest(comps, score[comps], w, budget, cap, group_of)

    @staticmethod
    def _all_bn_channels(graph: ChannelGraph, eligible_comps: IntArray) -> tuple[FloatArray, Any]:
        """``|gamma|`` of every BatchNorm channel of the model and whether it is an eligible one."""
        is_eligible = np.zeros(graph.num_components, dtype=bool)
        is_eligible[eligible_comps] = True
        norm_slot = {s.module_name: k for k, s in enumerate(graph.slots) if s.role == "norm"}
        values: list[FloatArray] = []
        flags: list[Any] = []
        for name, module in graph.model.named_modules():
            if not isinstance(module, nn.modules.batchnorm._BatchNorm):
                continue
            gamma = bn_scaling_factors(module).double().cpu().numpy()
            selected = getattr(
                module, "indices", None
            )  # channel-selection BN: its units are the selected ones
            if isinstance(selected, torch.Tensor) and selected.dim() == 1:
                gamma = gamma[selected.cpu().numpy()]
            values.append(gamma)
            k = norm_slot.get(name)
            flag = np.zeros(len(gamma), dtype=bool)
            if k is not None and len(graph.slot_components(k)) == len(gamma):
                flag = is_eligible[graph.slot_components(k)]
            flags.append(flag)
        if not values:
            return np.zeros(0), np.zeros(0, dtype=bool)
        return np.concatenate(values), np.concatenate(flags)

    def _after_prune(self, model: nn.Module) -> None:
        of_all = self.achieved_ratio_of_all or 0.0
        if self.threshold_scope == "all" and self.ratio_map is None and of_all < self.ratio - 0.05:
            self._note(
                f"the global threshold over ALL BatchNorm channels put {self.ratio:.0%} of them under it, "
                "but "
                f"only {of_all:.1%} could be removed: the others are not eligible "
                f"({1 - (self.eligible_fraction or 0.0):.1%} of all BN channels"
                + (
                    ', e.g. the residual stream under coupling="exclude")'
                    if self.coupling == "exclude"
                    else ")"
                )
                + ' and stay; threshold_scope="eligible" removes ratio of the eligible channels instead'
            )

    def _check_scores(self, graph: ChannelGraph, groups: list[ChannelGroup], score: FloatArray) -> None:
        comps = np.concatenate([g.components for g in groups]) if groups else np.zeros(0, np.int64)
        values = score[comps]
        values = values[~np.isnan(values)]
        if (
            self.ratio > 0
            and len(values) > 1
            and float(values.max() - values.min()) <= 1e-6 * float(max(abs(values.max()), 1e-12))
        ):
            self._note(
                f"every eligible BatchNorm has the same |gamma| ({float(values[0]):.4g}: a fresh model, "
                "affine=False or frozen gammas), so the scaling factors cannot rank the channels and the "
                "ones removed are simply the first in graph order; train with SlimmingRegularizer first "
                'or use method="filter"'
            )


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside ``prunesafe.pruning`` (the user's call), from the caller."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).startswith(
        "prunesafe.pruning"
    ):
        frame = frame.f_back
        level += 1
    return level


def _bn_units(module: nn.Module) -> int:
    """Channels a BatchNorm contributes as units: the selected ones of a channel-selection BN, else all."""
    selected = getattr(module, "indices", None)
    if isinstance(selected, torch.Tensor) and selected.dim() == 1:
        return int(selected.numel())
    return int(getattr(module, "num_features", 0))


def _tensors_of(output: Any) -> list[torch.Tensor]:
    """Every tensor of a (nested) model output, in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for v in output.values() for t in _tensors_of(v)]
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in _tensors_of(v)]
    return []
