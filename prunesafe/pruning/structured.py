"""Structured pruning that physically removes channels: "filter" and "channel".

* :class:`FilterPruner` (``method="filter"``): L1-norm filter pruning after Li et al. 2017,
  "Pruning Filters for Efficient ConvNets" (ICLR).  In every selected conv the ``ratio``
  fraction of output filters with the smallest L1 (or L2) norm is removed.
* :class:`ChannelPruner` (``method="channel"``): network slimming after Liu et al. 2017,
  "Learning Efficient Convolutional Networks through Network Slimming" (ICCV).  One global
  threshold on the BatchNorm scaling factors ``|gamma|`` removes the ``ratio`` fraction of all
  eligible BN channels.

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

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from prunesafe.pruning.base import Pruner, register_pruner
from prunesafe.pruning.graph import ChannelGraph, ChannelGroup, SlotRole, build_channel_graph
from prunesafe.pruning.importance import Norm, bn_scaling_factors, component_scores, filter_norms

__all__ = ["ChannelPruner", "Coupling", "FilterPruner", "LayerSelection"]

Coupling = Literal["exclude", "together"]
LayerSelection = Sequence[str] | Callable[[str, nn.Module], bool] | None

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5 + 1e-9)


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
        ratio: float,
        *,
        coupling: Coupling = "exclude",
        layers: LayerSelection = None,
        min_channels: int = 1,
    ) -> None:
        super().__init__(ratio)
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
                total += int(module.num_features)
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
                reason = (
                    f"coupled group {names} is only partly selected by layers= (select all of them)"
                    if any(n in selected for n in names)
                    else "not selected by layers="
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
        return eligible, reasons

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
        layers, self.layers = self.layers, None if isinstance(self.layers, list) else self.layers
        try:
            eligible, reasons = self._eligible(model, graph)
        finally:
            self.layers = layers
        if isinstance(layers, list):
            chosen = set(layers)
            for group in eligible:
                names = {graph.slots[i].module_name for i in self._unit_slots(group)}
                if not names <= chosen:
                    for n in names:
                        reasons[n] = "not selected by layers="
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
        all_before = self._units_in_model(model)
        unit_slots = sorted({i for g in eligible for i in self._unit_slots(g)})
        score, weight = component_scores(graph, unit_slots, self._slot_scores(graph, unit_slots))
        chosen = self._choose(graph, eligible, score, weight) if self.ratio > 0 else np.zeros(0, np.int64)
        removed = np.zeros(graph.num_components, dtype=bool)
        removed[chosen] = True
        self._protect_slots(graph, removed, score)
        total = sum(len(graph.slots[i].elements) for i in unit_slots)
        dropped = sum(int(removed[graph.slot_components(i)].sum()) for i in unit_slots)
        self.pruned_modules = graph.remove(np.nonzero(removed)[0])
        self.achieved_ratio = dropped / total if total else 0.0
        self.eligible_fraction = total / all_before if all_before else 0.0
        self.achieved_ratio_of_all = 1.0 - self._units_in_model(model) / all_before if all_before else 0.0
        return model


@register_pruner("filter")
class FilterPruner(_StructuredPruner):
    """L1-norm filter pruning (Li et al. 2017, "Pruning Filters for Efficient ConvNets").

    In every selected convolution the ``round(ratio * out_channels)`` filters (rounded half
    up, at most ``out_channels - min_channels``) with the smallest norm are removed, together
    with everything that depends on them.  ``ratio`` counts output filters of the selected
    convs; :attr:`achieved_ratio` is removed / total filters over those convs.

    Parameters
    ----------
    ratio : float
        Fraction in ``[0, 1)`` of each selected conv's filters to remove.
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

    Attributes
    ----------
    achieved_ratio : float
        Set by :meth:`prune`: removed / total output filters over the pruned groups' convs
        (what ``ratio`` counts).
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
        ratio: float,
        *,
        norm: Norm = "l1",
        coupling: Coupling = "exclude",
        layers: LayerSelection = None,
        min_channels: int = 1,
    ) -> None:
        super().__init__(ratio, coupling=coupling, layers=layers, min_channels=min_channels)
        if norm not in ("l1", "l2"):
            raise ValueError(f'norm must be "l1" or "l2", got {norm!r}')
        self.norm: Norm = norm

    def _extra_reason(self, graph: ChannelGraph, group: ChannelGroup) -> str:
        linear = [graph.slots[i].module_name for i in group.producers
                  if not isinstance(graph.slots[i].module, nn.modules.conv._ConvNd)]  # fmt: skip
        if linear:
            return f"produced by non-convolution layer(s) {linear} (filter pruning removes conv filters)"
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
            comps = group.components
            w = weight[comps]
            # the budget counts filters: a coupled channel counts once per conv it removes a filter from
            budget = _round_half_up(self.ratio * float(w.sum()))
            cap = np.array([max(len(comps) - self.min_channels, 0)], dtype=np.int64)
            chosen.append(
                self._take_lowest(comps, score[comps], w, budget, cap, np.zeros(len(comps), dtype=np.int64))
            )
        return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


@register_pruner("channel")
class ChannelPruner(_StructuredPruner):
    """Network slimming (Liu et al. 2017): one global threshold on BatchNorm ``|gamma|``.

    The ``ratio`` fraction of all *eligible* BN channels with the smallest ``|gamma|`` are
    removed (not of all BN channels: see :attr:`achieved_ratio_of_all`), across all layers at
    once (layers with larger scaling factors keep more channels).  No layer is ever emptied:
    each keeps at least ``min_channels``; the next smallest channels elsewhere are taken
    instead, so :attr:`achieved_ratio` (removed / eligible BN channels) matches ``ratio`` up to
    rounding whenever that is possible.  Train with the slimming regulariser (L1 on ``gamma``)
    first for the method to be meaningful.

    Parameters
    ----------
    ratio : float
        Global fraction in ``[0, 1)`` of eligible BN channels to remove.
    coupling : {"exclude", "together"}, default "exclude"
        As in :class:`FilterPruner`.  With ``"together"`` a coupled channel's score is the
        mean ``|gamma|`` over the BatchNorms sharing it, and it counts once per BatchNorm.
    layers : None, list of str, or callable, default None
        ``None``: every eligible BatchNorm; or qualified BatchNorm names / a predicate.
    min_channels : int, default 1

    Attributes
    ----------
    achieved_ratio : float
        Set by :meth:`prune`: removed / total channels over the eligible BatchNorms (what
        ``ratio`` counts).
    achieved_ratio_of_all : float
        Set by :meth:`prune`: fraction of ALL BatchNorm channels of the model removed.  With
        ``coupling="exclude"`` the BNs on a residual stream are not eligible, so this is
        smaller: on CIFAR ResNet-56, ``ratio=0.5`` removes half of the eligible BN channels
        but only about a quarter of all of them.
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
    >>> pruner = ChannelPruner(0.3)
    >>> _ = pruner.prune(model, example_inputs=torch.rand(1, 3, 32, 32))
    >>> round(pruner.achieved_ratio, 3)
    0.3
    """

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
        return [bn_scaling_factors(graph.slots[i].module) for i in slots]

    def _choose(
        self, graph: ChannelGraph, groups: list[ChannelGroup], score: FloatArray, weight: IntArray
    ) -> IntArray:
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
        budget = _round_half_up(self.ratio * float(w.sum()))
        return self._take_lowest(comps, score[comps], w, budget, cap, group_of)
