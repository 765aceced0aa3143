"""The channel graph: slots, groups, and the atomic removal of channel components.

A :class:`ChannelGraph` gives every channel of every traced tensor an *element* id; the
rules (:mod:`prunesafe.pruning.graph.rules`) tie elements that must be removed together and
register the *slots* of layers (the slice of a parameter that belongs to the channels of one
tensor).  Tied elements form *components*; components linked through a common producer form a
:class:`ChannelGroup`, the unit a structured pruner works on.  :meth:`ChannelGraph.remove`
validates a removal on ``meta`` copies of the model before slicing anything, so a removal is
all or nothing.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from prunesafe.pruning.graph import build_channel_graph
>>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
>>> graph = build_channel_graph(model, torch.rand(1, 3, 8, 8))
>>> [(g.prunable, len(g.components)) for g in graph.groups()]
[(True, 8), (False, 4)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.fx as fx
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from prunesafe.pruning.graph.tracing import ArgOverride, meta_shadow, output_shapes, propagate

__all__ = ["ChannelGraph", "ChannelGroup", "ChannelSlot", "SlotRole"]

SlotRole = Literal["producer", "consumer", "norm", "passthrough"]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
Update = Callable[[nn.Module, torch.Tensor], None]


@dataclass
class _Trace:
    """One traced forward (eval or train mode) the removal check re-runs."""

    fx_graph: fx.Graph
    meta_inputs: tuple[Any, ...]
    output_shapes: list[tuple[int, ...]]
    mode: str
    overrides: dict[fx.Node, ArgOverride] = field(default_factory=dict)
    opaque: dict[str, str] = field(default_factory=dict)


@dataclass
class ChannelSlot:
    """The slice of one module's tensors that belongs to the channels of one traced tensor.

    Attributes
    ----------
    module_name : str
        Qualified name of the module (as in ``model.named_modules()``).
    module : nn.Module
        The module itself.
    role : {"producer", "consumer", "norm", "passthrough"}
        ``"producer"``: output channels computed from all input channels (conv filters,
        Linear rows) -- these carry filter importance.  ``"consumer"``: input channels of a
        conv / Linear.  ``"norm"``: a BatchNorm (its ``|gamma|`` drives network slimming).
        ``"passthrough"``: channel-wise layers with state (depthwise conv, zero-pad shortcut).
    elements : numpy.ndarray
        Element id of each channel index of the slot (``len(elements)`` = channel count).
    tensors : tuple of (str, int)
        ``(attribute, dim)`` pairs sliced along ``dim`` when channels are removed.
    update : callable or None
        ``update(module, keep)`` fixes the module's attributes (``out_channels`` ...) after
        slicing; ``keep`` is the sorted LongTensor of kept channel indices.
    mask : callable or None
        ``mask(module, idx)`` zeroes the channels ``idx`` of the slot at their source, for a
        masked reference of a removal (verification); ``None``: zero ``tensors`` at ``idx``.
    """

    module_name: str
    module: nn.Module
    role: SlotRole
    elements: IntArray
    tensors: tuple[tuple[str, int], ...] = ()
    update: Update | None = None
    mask: Update | None = None


@dataclass
class ChannelGroup:
    """Channel components linked through their producers: the unit structured pruning acts on.

    Attributes
    ----------
    components : numpy.ndarray
        Component ids (one per removable channel of the group).
    producers, norms, passthroughs : list of int
        Indices into :attr:`ChannelGraph.slots` of the slots touching the group.
    gates : list of int
        Producer slots whose output only *gates* the group's channels (the last layer of a
        squeeze-excitation block, ``x * sigmoid(fc2(...))``): they are sliced with the group
        but are not independent producers (no coupling, no filter importance).
    prunable : bool
        False when a channel of the group touches a barrier (unknown op, model output ...).
    reason : str
        Why the group is not prunable ("" when it is).
    """

    components: IntArray
    producers: list[int] = field(default_factory=list)
    norms: list[int] = field(default_factory=list)
    passthroughs: list[int] = field(default_factory=list)
    gates: list[int] = field(default_factory=list)
    prunable: bool = True
    reason: str = ""


class ChannelGraph:
    """Channel-level dependency graph of a model (build it with :func:`build_channel_graph`).

    Attributes
    ----------
    model : nn.Module
        The analysed model (not copied; :meth:`remove` modifies it in place).
    slots : list of ChannelSlot
    labels : numpy.ndarray
        Component id of every element.
    num_components : int

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from prunesafe.pruning.graph import build_channel_graph
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> graph = build_channel_graph(model, torch.rand(1, 3, 8, 8))
    >>> [(g.prunable, len(g.components)) for g in graph.groups()]
    [(True, 8), (False, 4)]
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.slots: list[ChannelSlot] = []
        self._slot_index: dict[tuple[Any, ...], int] = {}
        self._modules: dict[str, nn.Module] = {}
        self._n = 0
        self._ties_a: list[IntArray] = []
        self._ties_b: list[IntArray] = []
        self._barriers: list[tuple[IntArray, str]] = []
        self.labels: IntArray = np.zeros(0, dtype=np.int64)
        self.num_components = 0
        self._comp_reason: dict[int, str] = {}
        #: Submodules fx could not trace (name -> error); they are opaque barriers.
        self.opaque_modules: dict[str, str] = {}
        #: The traced forwards (eval mode, and train mode when it differs) the check re-runs.
        self._traces: list[_Trace] = []
        #: Modules whose output gates channels (squeeze-excitation), see :attr:`ChannelGroup.gates`.
        self.gate_modules: set[str] = set()

    # --- building -------------------------------------------------------------------------
    def _alloc(self, count: int) -> IntArray:
        block = np.arange(self._n, self._n + count, dtype=np.int64)
        self._n += count
        return block

    def _tie(self, a: IntArray | None, b: IntArray | None) -> None:
        if a is None or b is None:
            return
        if len(a) != len(b):
            raise RuntimeError(f"internal error: tying {len(a)} to {len(b)} channels")
        self._ties_a.append(a)
        self._ties_b.append(b)

    def _barrier(self, a: IntArray | None, reason: str) -> None:
        if a is not None and len(a):
            self._barriers.append((a, reason))

    def _add_slot(
        self,
        name: str,
        role: SlotRole,
        elements: IntArray,
        tensors: tuple[tuple[str, int], ...],
        update: Update | None,
        *,
        tag: str = "",
        mask: Update | None = None,
    ) -> None:
        key = (name, role, tuple(attr for attr, _ in tensors), tag)
        if key in self._slot_index:  # module called more than once: its channels are shared
            self._tie(self.slots[self._slot_index[key]].elements, elements)
            return
        if not self._modules:
            self._modules = dict(self.model.named_modules(remove_duplicate=False))
        module = self._modules.get(name) or self.model.get_submodule(name)
        self._slot_index[key] = len(self.slots)
        self.slots.append(
            ChannelSlot(name, module, role, np.asarray(elements, dtype=np.int64), tensors, update, mask)
        )

    def _finish(self) -> None:
        n = self._n
        if self._ties_a:
            a = np.concatenate(self._ties_a)
            b = np.concatenate(self._ties_b)
            adj = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
            self.num_components, labels = connected_components(adj, directed=False)
            self.labels = labels.astype(np.int64)
        else:
            self.num_components, self.labels = n, np.arange(n, dtype=np.int64)
        for elems, reason in reversed(self._barriers):  # first reason wins
            for comp in np.unique(self.labels[elems]).tolist():
                self._comp_reason[comp] = reason
        self._ties_a, self._ties_b = [], []

    # --- queries ------------------------------------------------------------------------
    def component_barrier(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Boolean array: component touches a barrier (cannot be removed)."""
        mask = np.zeros(self.num_components, dtype=bool)
        if self._comp_reason:
            mask[np.fromiter(self._comp_reason, dtype=np.int64)] = True
        return mask

    def slot_components(self, slot: ChannelSlot | int) -> IntArray:
        """Component id of each channel index of ``slot``."""
        s = self.slots[slot] if isinstance(slot, int) else slot
        return self.labels[s.elements]

    def groups(self) -> list[ChannelGroup]:
        """Components linked through common producers, with the slots touching each group.

        Returns
        -------
        list of ChannelGroup
            One group per set of producer-linked components (components touched by no
            producer -- e.g. the model's input channels -- belong to no group).
        """
        ncomp = self.num_components
        producers = [i for i, s in enumerate(self.slots) if s.role == "producer"]
        a_parts: list[IntArray] = []
        b_parts: list[IntArray] = []
        has_producer = np.zeros(ncomp, dtype=bool)
        for i in producers:
            comps = self.slot_components(i)
            has_producer[comps] = True
            a_parts.append(np.full(len(comps), comps[0]))
            b_parts.append(comps)
        if a_parts:
            a, b = np.concatenate(a_parts), np.concatenate(b_parts)
            adj = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(ncomp, ncomp))
            _, glabels = connected_components(adj, directed=False)
        else:
            glabels = np.arange(ncomp)
        comp_ids = np.nonzero(has_producer)[0]
        uniq, inverse = np.unique(glabels[comp_ids], return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
        groups = [ChannelGroup(comp_ids[order[bounds[k] : bounds[k + 1]]]) for k in range(len(uniq))]
        group_of_label = {int(g): k for k, g in enumerate(uniq.tolist())}
        for i, slot in enumerate(self.slots):
            if slot.role == "consumer":
                continue
            for g in np.unique(glabels[self.slot_components(i)]).tolist():
                k = group_of_label.get(int(g))
                if k is None:
                    continue
                if slot.role == "producer" and slot.module_name in self.gate_modules:
                    target = groups[k].gates
                else:
                    target = {"producer": groups[k].producers, "norm": groups[k].norms}.get(
                        slot.role, groups[k].passthroughs
                    )
                target.append(i)
        barrier = self.component_barrier()
        for group in groups:
            blocked = group.components[barrier[group.components]]
            if len(blocked):
                group.prunable = False
                group.reason = self._comp_reason[int(blocked[0])]
        return groups

    # --- removal ------------------------------------------------------------------------
    @torch.no_grad()
    def remove(self, components: Iterable[int] | np.ndarray[Any, Any], *, check: bool = True) -> list[str]:
        """Physically remove the given components from every tensor and module holding them.

        The removal is atomic: every slot is validated first (and, with ``check``, the
        pruned shapes are verified by re-running shape propagation on ``meta`` copies of the
        sliced modules), so on any error the model is left untouched.

        Parameters
        ----------
        components : iterable of int
            Component ids; barrier components are refused with ``ValueError``.
        check : bool, default True
            Before touching the model, run the traced graph on ``meta`` copies of the modules
            with the new shapes and refuse (``ValueError``) a removal after which the model
            would no longer run on the example inputs or would change its output shapes.

        Returns
        -------
        list of str
            Qualified names of the modules that changed, in graph order.

        Raises
        ------
        ValueError
            A component touches a barrier, the removal would empty a layer, or (``check``)
            the pruned model would not run / would change its output shape.  The model is
            not modified in any of these cases.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from prunesafe.pruning.graph import build_channel_graph
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
        >>> graph = build_channel_graph(model, torch.rand(1, 3, 8, 8))
        >>> group = next(g for g in graph.groups() if g.prunable)
        >>> graph.remove(group.components[:2])
        ['0', '2']
        >>> model[0].out_channels, model[2].in_channels
        (2, 2)
        """
        comps = np.asarray(list(components) if not isinstance(components, np.ndarray) else components)
        removed = np.zeros(self.num_components, dtype=bool)
        if comps.size == 0:
            return []
        removed[comps.astype(np.int64)] = True
        bad = removed & self.component_barrier()
        if bad.any():
            raise ValueError(
                "cannot remove channel components touching a barrier: "
                f"{self._comp_reason[int(np.argmax(bad))]}"
            )
        plan: list[tuple[ChannelSlot, torch.Tensor]] = []
        for slot in self.slots:  # validate every slot before slicing anything
            drop = removed[self.labels[slot.elements]]
            if not drop.any():
                continue
            keep_np = np.nonzero(~drop)[0]
            if keep_np.size == 0:
                raise ValueError(
                    f"removing these channels would leave {slot.module_name!r} empty; nothing was removed"
                )
            plan.append((slot, torch.from_numpy(keep_np)))
        if check and self._traces:
            self._check_plan(plan)
        changed: list[str] = []
        for slot, keep in plan:
            _apply_slot(slot, slot.module, keep)
            if slot.module_name not in changed:
                changed.append(slot.module_name)
        return changed

    def _check_plan(self, plan: list[tuple[ChannelSlot, torch.Tensor]]) -> None:
        """Raise ``ValueError`` if the model would not run (or change its output shapes) after ``plan``."""
        shadow = meta_shadow(self.model, memo={})
        for m in shadow.modules():  # shapes do not depend on the mode; eval avoids batch-size checks
            m.training = False
        shadows = dict(shadow.named_modules(remove_duplicate=False))
        for slot, keep in plan:
            _apply_slot(slot, shadows[slot.module_name], keep)
        problem = ""
        for trace in self._traces:
            try:
                env = propagate(
                    shadow,
                    trace.fx_graph,
                    trace.meta_inputs,
                    trace.opaque,
                    opaque_model=self.model,
                    overrides=trace.overrides,
                )
                shapes = output_shapes(trace.fx_graph, env)
                if shapes != trace.output_shapes:
                    problem = f"its output shapes would change from {trace.output_shapes} to {shapes}"
            except Exception as err:  # any failure of the pruned forward is the problem reported
                problem = f"it would no longer run on example_inputs ({type(err).__name__}: {err})"
            if problem:
                if len(self._traces) > 1:
                    problem += f" (in {trace.mode} mode)"
                break
        if problem:
            names = sorted({slot.module_name for slot, _ in plan})
            raise ValueError(
                f"structural check failed, nothing was removed: after removing these channels {problem}. "
                "The channel dependency graph missed a constraint of this model (e.g. a size computed "
                "in the forward from hard-coded numbers). Exclude the affected layers "
                f"({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}) with layers=, teach "
                "the graph the offending module or function with "
                'prunesafe.pruning.register_channel_rule, or use method="unstructured".'
            )


def _apply_slot(slot: ChannelSlot, module: nn.Module, keep: torch.Tensor) -> None:
    for attr, dim in slot.tensors:
        _slice_tensor(module, attr, dim, keep)
    if slot.update is not None:
        slot.update(module, keep)


def _slice_tensor(module: nn.Module, attr: str, dim: int, keep: torch.Tensor) -> None:
    """Slice ``module.<attr>`` along ``dim`` (and its ``torch.nn.utils.prune`` orig/mask pair)."""
    registered = False
    for name in (attr, f"{attr}_orig", f"{attr}_mask"):
        if name in module._parameters:
            registered = True
            param = module._parameters[name]
            if param is not None:
                new = param.detach().index_select(dim, keep.to(param.device))
                module._parameters[name] = nn.Parameter(new, requires_grad=param.requires_grad)
        elif name in module._buffers:
            registered = True
            buf = module._buffers[name]
            if buf is not None:
                module._buffers[name] = buf.index_select(dim, keep.to(buf.device))
    if attr not in module._parameters and attr not in module._buffers:
        # plain tensor attribute, e.g. the weight torch.nn.utils.prune recomputes before each forward
        value = module.__dict__.get(attr)
        if isinstance(value, torch.Tensor):
            setattr(module, attr, value.detach().index_select(dim, keep.to(value.device)))
        elif not registered and value is not None:
            raise TypeError(f"cannot slice {type(module).__name__}.{attr}: not a tensor")
