"""Channel dependency graph: which channels of which layers must be removed together.

The graph is built from the model itself.  :func:`build_channel_graph` traces the model
with :mod:`torch.fx` and propagates shapes on the ``meta`` device (no real computation, no
copy of the weights), then gives every channel of every traced tensor an *element* id.
Operations declare relations between elements:

* elementwise ops (``+``, ``*``, activations, BatchNorm, dropout, pooling, interpolation)
  tie channel ``c`` of each input to channel ``c`` of the output (with broadcasting);
* ``torch.cat`` along the channel dimension ties with offsets;
* a flatten of ``C x H x W`` features ties the ``H*W`` consecutive features of channel ``c``
  to channel ``c`` (so a Linear after flatten is updated correctly);
* a depthwise convolution ties input channel ``c`` to output channel ``c``;
* :class:`prunesafe.models.ZeroPadShortcut` ("option A" shortcut) ties output channel
  ``j + pad_front`` to input channel ``j``; its padded channels are constant zeros;
* anything the graph does not understand (unknown functions or modules, reshapes that
  split the channel dimension, channel indexing, grouped convolutions that are not
  depthwise, a raw ``F.pad`` on channels, ...) is a *barrier*: every channel touching
  it is marked unprunable.  So are the model's inputs and outputs.

Elements tied together form a *component*: one channel that exists in several tensors
and must be removed from all of them at once.  Layers own *slots*: the slice of a
parameter that belongs to the channels of one tensor (a conv's filters are a
``"producer"`` slot on its output, its input channels a ``"consumer"`` slot, a BatchNorm a
``"norm"`` slot, a depthwise conv or a zero-pad shortcut a ``"passthrough"`` slot).
Components linked through a common producer form a :class:`ChannelGroup`, the unit a
structured pruner works on.

Custom modules are taught to the graph with :func:`register_channel_rule`; the rule for
``ZeroPadShortcut`` uses this very mechanism.

Examples
--------
>>> import torch
>>> from prunesafe.models import cifar_resnet
>>> graph = build_channel_graph(cifar_resnet(20), torch.rand(1, 3, 32, 32))
>>> groups = graph.groups()
>>> sorted(len(g.producers) for g in groups if g.prunable)[:3]
[1, 1, 1]
>>> max(len(g.producers) for g in groups)  # the residual stream: stem + 9 block outputs
10
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from prunesafe._utils import as_input_tuple
from prunesafe.models.cifar_resnet import ZeroPadShortcut

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "ChannelRule",
    "ChannelSlot",
    "RuleContext",
    "SlotRole",
    "build_channel_graph",
    "register_channel_rule",
]

SlotRole = Literal["producer", "consumer", "norm", "passthrough"]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
Update = Callable[[nn.Module, torch.Tensor], None]


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
    """

    module_name: str
    module: nn.Module
    role: SlotRole
    elements: IntArray
    tensors: tuple[tuple[str, int], ...] = ()
    update: Update | None = None


@dataclass
class ChannelGroup:
    """Channel components linked through their producers: the unit structured pruning acts on.

    Attributes
    ----------
    components : numpy.ndarray
        Component ids (one per removable channel of the group).
    producers, norms, passthroughs : list of int
        Indices into :attr:`ChannelGraph.slots` of the slots touching the group.
    prunable : bool
        False when a channel of the group touches a barrier (unknown op, model output ...).
    reason : str
        Why the group is not prunable ("" when it is).
    """

    components: IntArray
    producers: list[int] = field(default_factory=list)
    norms: list[int] = field(default_factory=list)
    passthroughs: list[int] = field(default_factory=list)
    prunable: bool = True
    reason: str = ""


class RuleContext:
    """What a channel rule sees about one call of its module, and how it declares relations.

    Attributes
    ----------
    name : str
        Qualified module name.
    inputs : list of numpy.ndarray or None
        Element ids of the channels (dim 1) of each positional argument; ``None`` for
        arguments that are not tensors with at least two dimensions.
    input_shapes : list of torch.Size or None
    output : numpy.ndarray or None
        Element ids of the output's channels (``None`` when the output is not a tensor).
    output_shape : torch.Size or None

    Examples
    --------
    A rule for a channel-wise scaling module with a per-channel parameter ``scale``:

    >>> import torch
    >>> from torch import nn
    >>> class Scale(nn.Module):
    ...     def __init__(self, c):
    ...         super().__init__()
    ...         self.scale = nn.Parameter(torch.ones(c, 1, 1))
    ...     def forward(self, x):
    ...         return x * self.scale
    >>> def scale_rule(module, ctx):
    ...     ctx.tie(ctx.inputs[0], ctx.output)
    ...     ctx.add_slot("passthrough", ctx.output, tensors=[("scale", 0)])
    >>> register_channel_rule(Scale, scale_rule, preserves_shape=True)
    """

    def __init__(
        self,
        graph: ChannelGraph,
        name: str,
        inputs: list[IntArray | None],
        input_shapes: list[torch.Size | None],
        output: IntArray | None,
        output_shape: torch.Size | None,
    ) -> None:
        self._graph = graph
        self.name = name
        self.inputs = inputs
        self.input_shapes = input_shapes
        self.output = output
        self.output_shape = output_shape

    def tie(self, a: IntArray | None, b: IntArray | None) -> None:
        """Declare ``a[i]`` and ``b[i]`` the same channel (equal lengths; no-op if either is None)."""
        self._graph._tie(a, b)

    def barrier(self, *arrays: IntArray | None, reason: str = "") -> None:
        """Mark the given channels unprunable."""
        for arr in arrays:
            self._graph._barrier(arr, reason or f"module {self.name!r} cannot be pruned through")

    def add_slot(
        self,
        role: SlotRole,
        elements: IntArray | None,
        *,
        tensors: Iterable[tuple[str, int]] = (),
        update: Update | None = None,
    ) -> None:
        """Register the module's tensors sliced when channels ``elements`` are removed."""
        if elements is None:
            raise ValueError(f"module {self.name!r}: add_slot needs the elements of a channelled tensor")
        self._graph._add_slot(self.name, role, elements, tuple(tensors), update)


ChannelRule = Callable[[nn.Module, RuleContext], None]


@dataclass(frozen=True)
class _RuleEntry:
    rule: ChannelRule
    preserves_shape: bool


_RULES: dict[type[nn.Module], _RuleEntry] = {}


def register_channel_rule(
    module_type: type[nn.Module], rule: ChannelRule, *, preserves_shape: bool = False
) -> None:
    """Teach the dependency graph how channels flow through ``module_type``.

    Modules of a registered type (and subclasses) are not traced into: they appear as one
    call in the graph and ``rule(module, ctx)`` declares their channel relations through
    the :class:`RuleContext` ``ctx`` (``ctx.tie``, ``ctx.barrier``, ``ctx.add_slot``).  A
    module type with no rule that :mod:`torch.fx` treats as a leaf (most of ``torch.nn``)
    is a barrier.

    Parameters
    ----------
    module_type : type
        An ``nn.Module`` subclass.
    rule : callable
        ``rule(module, ctx) -> None``.
    preserves_shape : bool, default False
        The module's output has its input's shape.  Shape propagation then skips running
        it (a speed-up only).

    Examples
    --------
    >>> from torch import nn
    >>> def gelu_rule(module, ctx):
    ...     ctx.tie(ctx.inputs[0], ctx.output)
    >>> register_channel_rule(nn.GELU, gelu_rule, preserves_shape=True)
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    if not callable(rule):
        raise TypeError(f"rule must be callable as rule(module, ctx), got {rule!r}")
    _RULES[module_type] = _RuleEntry(rule, bool(preserves_shape))


def _rule_for(module: nn.Module) -> _RuleEntry | None:
    for klass in type(module).__mro__:
        entry = _RULES.get(klass)
        if entry is not None:
            return entry
    return None


# ----------------------------------------------------------------------------- built-in rules


def _set_attr(name: str) -> Update:
    def update(module: nn.Module, keep: torch.Tensor) -> None:
        setattr(module, name, int(keep.numel()))

    return update


def _elementwise_rule(module: nn.Module, ctx: RuleContext) -> None:
    ctx.tie(ctx.inputs[0] if ctx.inputs else None, ctx.output)


def _conv_rule(module: nn.Module, ctx: RuleContext) -> None:
    assert isinstance(module, nn.modules.conv._ConvNd)
    x, out = ctx.inputs[0], ctx.output
    transposed = bool(module.transposed)
    in_dim, out_dim = (0, 1) if transposed else (1, 0)
    if module.groups == 1:
        ctx.add_slot("consumer", x, tensors=[("weight", in_dim)], update=_set_attr("in_channels"))
        ctx.add_slot(
            "producer", out, tensors=[("weight", out_dim), ("bias", 0)], update=_set_attr("out_channels")
        )
        return
    if module.groups == module.in_channels == module.out_channels and not transposed:

        def update(m: nn.Module, keep: torch.Tensor) -> None:
            n = int(keep.numel())
            m.in_channels = m.out_channels = m.groups = n  # type: ignore[assignment]

        ctx.tie(x, out)
        ctx.add_slot("passthrough", out, tensors=[("weight", 0), ("bias", 0)], update=update)
        return
    ctx.barrier(x, out, reason=f"grouped convolution {ctx.name!r} (groups={module.groups}) is not depthwise")


def _linear_rule(module: nn.Module, ctx: RuleContext) -> None:
    x, out = ctx.inputs[0], ctx.output
    shape = ctx.input_shapes[0]
    if shape is None or len(shape) != 2:
        ctx.barrier(x, out, reason=f"Linear {ctx.name!r} applied to a tensor that is not (N, features)")
        return
    ctx.add_slot("consumer", x, tensors=[("weight", 1)], update=_set_attr("in_features"))
    ctx.add_slot("producer", out, tensors=[("weight", 0), ("bias", 0)], update=_set_attr("out_features"))


def _batchnorm_rule(module: nn.Module, ctx: RuleContext) -> None:
    ctx.tie(ctx.inputs[0], ctx.output)
    ctx.add_slot(
        "norm",
        ctx.output,
        tensors=[("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)],
        update=_set_attr("num_features"),
    )


def _prelu_rule(module: nn.Module, ctx: RuleContext) -> None:
    assert isinstance(module, nn.PReLU)
    ctx.tie(ctx.inputs[0], ctx.output)
    if module.num_parameters > 1:
        ctx.add_slot("passthrough", ctx.output, tensors=[("weight", 0)], update=_set_attr("num_parameters"))


def _zero_pad_shortcut_rule(module: nn.Module, ctx: RuleContext) -> None:
    assert isinstance(module, ZeroPadShortcut)
    x, out = ctx.inputs[0], ctx.output
    if x is None or out is None:
        ctx.barrier(x, out)
        return
    front = module.pad_front
    ctx.tie(x, out[front : front + len(x)])

    def update(m: nn.Module, keep: torch.Tensor) -> None:
        assert isinstance(m, ZeroPadShortcut)
        n_in = len(x)
        old_front = m.pad_front
        m.pad_front = int((keep < old_front).sum())
        m.pad_back = int((keep >= old_front + n_in).sum())

    # the pad channels are constant-zero sources: nothing to slice, only the counts change
    ctx.add_slot("passthrough", out, update=update)


def _flatten_module_rule(module: nn.Module, ctx: RuleContext) -> None:
    _reshape_like(ctx._graph, ctx.inputs[0], ctx.input_shapes[0], ctx.output, ctx.output_shape, ctx.name)


for _t in (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
):  # fmt: skip
    register_channel_rule(_t, _elementwise_rule, preserves_shape=True)
_SPATIAL: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
)  # fmt: skip
for _s in _SPATIAL:
    register_channel_rule(_s, _elementwise_rule)
register_channel_rule(nn.modules.conv._ConvNd, _conv_rule)
register_channel_rule(nn.Linear, _linear_rule)
register_channel_rule(nn.modules.batchnorm._BatchNorm, _batchnorm_rule, preserves_shape=True)
register_channel_rule(nn.PReLU, _prelu_rule, preserves_shape=True)
register_channel_rule(nn.Flatten, _flatten_module_rule)
register_channel_rule(ZeroPadShortcut, _zero_pad_shortcut_rule)

# functions / tensor methods that act channel-wise on their first argument
_UNARY_FUNCS: set[Any] = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardsigmoid, F.hardtanh, F.softplus, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.interpolate, F.upsample, torch.relu, torch.relu_,
    torch.sigmoid, torch.tanh, torch.nn.functional.sigmoid, torch.nn.functional.tanh, torch.clamp,
    torch.abs, torch.neg, torch.exp, torch.square, torch.sqrt,
}  # fmt: skip
_UNARY_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min", "clamp_max",
    "contiguous", "clone", "detach", "abs", "neg", "exp", "square", "sqrt", "float", "half", "double",
    "to", "type_as",
}  # fmt: skip
_BINARY_FUNCS: set[Any] = {
    operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
    operator.truediv, operator.itruediv, torch.add, torch.mul, torch.sub, torch.div, torch.maximum,
    torch.minimum, torch.where,
}  # fmt: skip
_BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "expand_as"}
_RESHAPE = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
_REDUCE = {torch.mean, torch.sum, torch.amax, torch.amin}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin"}
_NON_TENSOR_METHODS = {"size", "dim", "numel", "type", "__len__"}


def _reshape_like(
    graph: ChannelGraph,
    x: IntArray | None,
    in_shape: torch.Size | None,
    out: IntArray | None,
    out_shape: torch.Size | None,
    what: str,
) -> None:
    """Tie channels through a reshape when it keeps dim 1 or flattens ``(N, C, *S) -> (N, C*prod(S))``."""
    if x is None or in_shape is None or out is None or out_shape is None:
        graph._barrier(x, f"reshape {what!r} leaves the channel layout")
        graph._barrier(out, f"reshape {what!r} creates a channel layout")
        return
    if tuple(out_shape[:2]) == tuple(in_shape[:2]):
        graph._tie(x, out)
        return
    spatial = int(np.prod(in_shape[2:])) if len(in_shape) > 2 else 1
    if len(out_shape) == 2 and out_shape[0] == in_shape[0] and out_shape[1] == in_shape[1] * spatial:
        graph._tie(np.repeat(x, spatial), out)
        return
    reason = f"reshape {what!r} from {tuple(in_shape)} to {tuple(out_shape)} splits the channel dimension"
    graph._barrier(x, reason)
    graph._barrier(out, reason)


# ----------------------------------------------------------------------------- tracing


class _Tracer(fx.Tracer):
    """fx tracer: registered module types are leaves; untraceable submodules become opaque leaves.

    When tracing into a submodule fails (data-dependent control flow, ...), the nodes it
    created are erased and the module is recorded as one opaque ``call_module`` node.  It has
    no channel rule, so every channel touching it is a barrier: the rest of the model can
    still be pruned.  A failure in the top-level forward cannot be isolated and propagates.
    """

    def __init__(self) -> None:
        super().__init__()
        self.opaque: dict[str, str] = {}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            module_qualified_name in self.opaque
            or _rule_for(m) is not None
            or super().is_leaf_module(m, module_qualified_name)
        )

    def call_module(
        self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        name = self.path_of_module(m)
        if self.is_leaf_module(m, name):
            return super().call_module(m, forward, args, kwargs)
        nodes_before = len(self.graph.nodes)
        stack, calls = self.module_stack.copy(), dict(self.num_calls)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as err:
            for node in reversed(list(self.graph.nodes)[nodes_before:]):
                self.graph.erase_node(node)
            self.module_stack.clear()
            self.module_stack.update(stack)
            self.num_calls.clear()
            self.num_calls.update(calls)
            self.opaque[name] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            return super().call_module(m, forward, args, kwargs)


_TRACE_HELP = (
    "the model's forward cannot be analysed by torch.fx symbolic tracing ({err}). Untraceable code "
    "inside a submodule is handled (the submodule becomes an opaque layer that is left unpruned), "
    "but not in the top-level forward: move it into a submodule, or register a channel rule for "
    "the module (prunesafe.pruning.graph.register_channel_rule, it then stays a leaf), or use "
    'method="unstructured", which needs no graph.'
)


def _meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("meta")
    if isinstance(value, (tuple, list)):
        return type(value)(_meta(v) for v in value)
    if isinstance(value, dict):
        return {k: _meta(v) for k, v in value.items()}
    return value


def _as_input_tuple(example_inputs: Any) -> tuple[Any, ...]:
    if example_inputs is None:
        raise TypeError(
            "example_inputs is required for structured pruning (the model is traced with it): pass "
            "example_inputs=torch.rand(1, 3, 32, 32) or a tuple of the forward's positional inputs"
        )
    return as_input_tuple(example_inputs)


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
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> graph = build_channel_graph(model, torch.rand(1, 3, 8, 8))
    >>> [(g.prunable, len(g.components)) for g in graph.groups()]
    [(True, 8), (False, 4)]
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.slots: list[ChannelSlot] = []
        self._slot_index: dict[tuple[str, str], int] = {}
        self._n = 0
        self._ties_a: list[IntArray] = []
        self._ties_b: list[IntArray] = []
        self._barriers: list[tuple[IntArray, str]] = []
        self.labels: IntArray = np.zeros(0, dtype=np.int64)
        self.num_components = 0
        self._comp_reason: dict[int, str] = {}
        #: Submodules fx could not trace (name -> error); they are opaque barriers.
        self.opaque_modules: dict[str, str] = {}
        self._fx_graph: fx.Graph | None = None
        self._meta_inputs: tuple[Any, ...] = ()
        self._output_shapes: list[tuple[int, ...]] = []

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
    ) -> None:
        key = (name, role)
        if key in self._slot_index:  # module called more than once: its channels are shared
            self._tie(self.slots[self._slot_index[key]].elements, elements)
            return
        module = self.model.get_submodule(name)
        self._slot_index[key] = len(self.slots)
        self.slots.append(
            ChannelSlot(name, module, role, np.asarray(elements, dtype=np.int64), tensors, update)
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
        if check and self._fx_graph is not None:
            self._check_plan(plan)
        changed: list[str] = []
        for slot, keep in plan:
            _apply_slot(slot, slot.module, keep)
            if slot.module_name not in changed:
                changed.append(slot.module_name)
        return changed

    def _check_plan(self, plan: list[tuple[ChannelSlot, torch.Tensor]]) -> None:
        """Raise ``ValueError`` if the model would not run (or change its output shapes) after ``plan``."""
        assert self._fx_graph is not None
        shadow = _meta_shadow(self.model, memo={})
        for slot, keep in plan:
            _apply_slot(slot, shadow.get_submodule(slot.module_name), keep)
        try:
            env = _propagate(
                shadow, self._fx_graph, self._meta_inputs, self.opaque_modules, opaque_model=self.model
            )
            problem = ""
            shapes = _output_shapes(self._fx_graph, env)
            if shapes != self._output_shapes:
                problem = f"its output shapes would change from {self._output_shapes} to {shapes}"
        except Exception as err:  # any failure of the pruned forward is the problem reported
            problem = f"it would no longer run on example_inputs ({type(err).__name__}: {err})"
        if problem:
            names = sorted({slot.module_name for slot, _ in plan})
            raise ValueError(
                f"structural check failed, nothing was removed: after removing these channels {problem}. "
                "The channel dependency graph missed a constraint of this model (e.g. a size computed "
                "in the forward from hard-coded numbers). Exclude the affected layers "
                f"({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}) with layers=, teach "
                "the graph the offending module with prunesafe.pruning.register_channel_rule, or use "
                'method="unstructured".'
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


# ----------------------------------------------------------------------------- construction


def _channels(value: Any) -> int | None:
    if isinstance(value, torch.Tensor) and value.dim() >= 2:
        return int(value.shape[1])
    return None


def _flat_tensor_nodes(args: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(args, lambda n: found.append(n) or n)  # type: ignore[func-returns-value]
    return found


def _materialise(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.zeros(value.shape, dtype=value.dtype, device=device) if value.is_meta else value
    if isinstance(value, (tuple, list)):
        return type(value)(_materialise(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _materialise(v, device) for k, v in value.items()}
    return value


def _call_module_meta(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], *, real: bool = False
) -> Any:
    """Run ``module`` for its output shapes: on ``meta`` copies of its tensors, or (``real=True``,
    for untraceable modules whose control flow needs values) for real on zero inputs."""
    if real:
        tensor: torch.Tensor | None = next(iter(module.parameters()), None)
        if tensor is None:
            tensor = next(iter(module.buffers()), None)
        device = tensor.device if tensor is not None else torch.device("cpu")
        return _meta(module(*_materialise(args, device), **_materialise(kwargs, device)))
    return _meta_shadow(module)(*args, **kwargs)


def _meta_shadow(module: nn.Module, memo: dict[int, nn.Module] | None = None) -> nn.Module:
    """A shallow copy of ``module`` (and its children) whose parameters and buffers live on ``meta``.

    ``memo`` (id -> shadow) keeps a submodule registered under several names shared.
    """
    if memo is not None and id(module) in memo:
        return memo[id(module)]
    shadow = copy.copy(module)
    if memo is not None:
        memo[id(module)] = shadow
    shadow._parameters = {
        k: None if v is None else nn.Parameter(v.detach().to("meta"), v.requires_grad)
        for k, v in module._parameters.items()
    }
    shadow._buffers = {k: None if v is None else v.to("meta") for k, v in module._buffers.items()}
    if module._modules:
        shadow._modules = {
            k: None if v is None else _meta_shadow(v, memo) for k, v in module._modules.items()
        }
    return shadow


def build_channel_graph(model: nn.Module, example_inputs: Any) -> ChannelGraph:
    """Trace ``model`` and build its channel dependency graph.

    Parameters
    ----------
    model : nn.Module
        The model to analyse.  It is neither copied nor run on real data.
    example_inputs : torch.Tensor, numpy.ndarray or tuple
        The forward's positional inputs (only their shapes and dtypes matter; a batch of 1
        is enough).

    Returns
    -------
    ChannelGraph

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module`` or ``example_inputs`` is missing / of a wrong type.
    ValueError
        The model cannot be traced (data-dependent control flow, ...).

    Examples
    --------
    >>> import torch
    >>> from prunesafe.models import cifar_vgg
    >>> graph = build_channel_graph(cifar_vgg(11), torch.rand(1, 3, 32, 32))
    >>> sum(g.prunable for g in graph.groups())
    8
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = _as_input_tuple(example_inputs)
    tracer = _Tracer()
    try:
        fx_graph = tracer.trace(model)
        fx_graph.lint()
    except Exception as err:  # fx raises TraceError, TypeError, NotImplementedError, ...
        raise ValueError(_TRACE_HELP.format(err=f"{type(err).__name__}: {err}")) from err
    if tracer.opaque:
        warnings.warn(
            "these submodules could not be traced by torch.fx and are treated as opaque layers whose "
            f"channels are never pruned: {tracer.opaque}. Register a channel rule for them "
            "(prunesafe.pruning.graph.register_channel_rule) to prune through them.",
            UserWarning,
            stacklevel=2,
        )

    graph = ChannelGraph(model)
    graph.opaque_modules = dict(tracer.opaque)
    graph._fx_graph = fx_graph
    graph._meta_inputs = tuple(_meta(inputs))
    blocks: dict[fx.Node, IntArray] = {}

    def visit(node: fx.Node, env: dict[fx.Node, Any]) -> None:
        channels = _channels(env[node]) if node.op != "output" else None
        if channels is not None:
            blocks[node] = graph._alloc(channels)
        _relate(graph, model, node, env, blocks)

    try:
        env = _propagate(model, fx_graph, graph._meta_inputs, graph.opaque_modules, visit)
    except (ValueError, TypeError) as err:
        if "example_inputs" in str(err):
            raise
        raise ValueError(_TRACE_HELP.format(err=f"{type(err).__name__}: {err}")) from err
    except (RuntimeError, NotImplementedError) as err:
        raise ValueError(
            f"shape propagation failed at the traced graph ({type(err).__name__}: {err}); check that "
            "example_inputs matches the forward's inputs, or use method='unstructured'"
        ) from err
    graph._output_shapes = _output_shapes(fx_graph, env)
    graph._finish()
    return graph


def _propagate(
    model: nn.Module,
    fx_graph: fx.Graph,
    meta_inputs: tuple[Any, ...],
    opaque: Mapping[str, str],
    visit: Callable[[fx.Node, dict[fx.Node, Any]], None] | None = None,
    *,
    opaque_model: nn.Module | None = None,
) -> dict[fx.Node, Any]:
    """Run ``fx_graph`` with ``model``'s modules on ``meta`` inputs; the value of every node.

    Untraceable (``opaque``) submodules run for real on zero inputs, taken from
    ``opaque_model`` (default ``model``).  ``visit(node, env)`` is called after each node.
    """
    env: dict[fx.Node, Any] = {}
    placeholder_index = 0

    def load(a: Any) -> Any:
        return fx.node.map_arg(a, lambda n: env[n])

    with torch.no_grad():
        for node in fx_graph.nodes:
            op = node.op
            if op == "placeholder":
                if placeholder_index < len(meta_inputs):
                    value = meta_inputs[placeholder_index]
                elif node.args:
                    value = node.args[0]
                else:
                    raise TypeError(
                        f"example_inputs gives {len(meta_inputs)} input(s) but the forward needs "
                        f"argument {node.target!r} too: pass a tuple of all positional inputs"
                    )
                placeholder_index += 1
            elif op == "get_attr":
                value = _meta(_fetch_attr(model, str(node.target)))
            elif op == "call_function":
                args, kwargs = load(node.args), load(node.kwargs)
                value = _fast_shape(node.target, False, args, kwargs)
                if value is None:
                    value = node.target(*args, **kwargs)
            elif op == "call_method":
                self_obj, *rest = load(node.args)
                kwargs = load(node.kwargs)
                value = _fast_shape(node.target, True, (self_obj, *rest), kwargs)
                if value is None:
                    value = getattr(self_obj, str(node.target))(*rest, **kwargs)
            elif op == "call_module":
                target = str(node.target)
                is_opaque = target in opaque
                module = (opaque_model if is_opaque and opaque_model is not None else model).get_submodule(
                    target
                )
                entry = _rule_for(module)
                args = load(node.args)
                if entry is not None and entry.preserves_shape and args and isinstance(args[0], torch.Tensor):
                    value = args[0]
                else:
                    value = _call_module_meta(module, args, load(node.kwargs), real=is_opaque)
            else:  # output
                value = load(node.args[0]) if node.args else None
            env[node] = value
            if visit is not None:
                visit(node, env)
    return env


def _output_shapes(fx_graph: fx.Graph, env: dict[fx.Node, Any]) -> list[tuple[int, ...]]:
    flat: list[Any] = []
    for node in fx_graph.nodes:
        if node.op == "output":
            fx.node.map_aggregate(env[node], lambda v: flat.append(v) or v)  # type: ignore[func-returns-value]
    return [tuple(v.shape) for v in flat if isinstance(v, torch.Tensor)]


# shape-preserving elementwise ops: shape propagation skips running them on meta tensors (the
# meta implementations of several are Python decompositions, ~1 ms per call)
_SAME_SHAPE_FUNCS: set[Any] = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid,
    F.hardtanh, F.softplus, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, torch.relu, torch.relu_,
    torch.sigmoid, torch.tanh, F.sigmoid, F.tanh,
}  # fmt: skip
_SAME_SHAPE_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "contiguous",
    "clone",
    "detach",
}
_BROADCAST_FUNCS: set[Any] = {
    operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
    torch.add, torch.mul, torch.sub,
}  # fmt: skip
_BROADCAST_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_"}


def _fast_shape(target: Any, is_method: bool, args: Any, kwargs: dict[str, Any]) -> torch.Tensor | None:
    """The meta output of a few frequent elementwise ops, without dispatching them (None: run the op)."""
    first = args[0] if args else None
    if not isinstance(first, torch.Tensor):
        return None
    if (is_method and target in _SAME_SHAPE_METHODS) or (not is_method and target in _SAME_SHAPE_FUNCS):
        return first
    if ((is_method and target in _BROADCAST_METHODS) or (not is_method and target in _BROADCAST_FUNCS)) and (
        len(args) == 2 and not kwargs
    ):
        other = args[1]
        if isinstance(other, torch.Tensor):
            shape = torch.broadcast_shapes(first.shape, other.shape)  # type: ignore[no-untyped-call]
        elif isinstance(other, (int, float, bool)):
            shape = first.shape
        else:
            return None
        in_place = (is_method and str(target).endswith("_")) or target in (
            operator.iadd,
            operator.imul,
            operator.isub,
        )
        if in_place and shape == first.shape:
            return first
        return torch.empty(shape, dtype=torch.result_type(first, other), device="meta")
    return None


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    return False


def _fetch_attr(model: nn.Module, target: str) -> Any:
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _relate(
    graph: ChannelGraph,
    model: nn.Module,
    node: fx.Node,
    env: dict[fx.Node, Any],
    blocks: dict[fx.Node, IntArray],
) -> None:
    """Declare the channel relations of one traced node."""
    op, target = node.op, node.target
    out = blocks.get(node)
    out_shape = env[node].shape if out is not None else None
    tensor_args = [n for n in _flat_tensor_nodes((node.args, node.kwargs)) if n in blocks]
    name = node.name

    def barrier_all(reason: str) -> None:
        for n in tensor_args:
            graph._barrier(blocks[n], reason)
        graph._barrier(out, reason)

    if op == "placeholder":
        graph._barrier(out, "model input channels cannot be removed")
        return
    if op == "output":
        for n in tensor_args:
            graph._barrier(blocks[n], "channel reaches the model output (its shape must not change)")
        return
    if op == "get_attr":
        graph._barrier(out, f"constant tensor {target!r} has a fixed channel count")
        return
    if out is None and _holds_tensor(env[node]):
        # several tensors (or one without a channel dimension) come out: their channels are not tracked
        barrier_all(f"{name!r} returns {type(env[node]).__name__} whose channels are not tracked")
        return
    if op == "call_module":
        module = model.get_submodule(str(target))
        entry = _rule_for(module)
        if entry is None:
            if str(target) in graph.opaque_modules:
                barrier_all(f"module {target!r} cannot be traced ({graph.opaque_modules[str(target)]})")
            else:
                barrier_all(f"no channel rule for module {target!r} ({type(module).__name__}); register one")
            return
        positional = [a if isinstance(a, fx.Node) else None for a in node.args]
        ctx = RuleContext(
            graph,
            str(target),
            [blocks.get(a) if a is not None else None for a in positional],
            [env[a].shape if a is not None and a in blocks else None for a in positional],
            out,
            out_shape,
        )
        extra = [n for n in tensor_args if n not in positional]
        for n in extra:  # tensors passed by keyword or nested: the rule cannot see them
            graph._barrier(blocks[n], f"module {target!r} receives a tensor the rule does not see")
        entry.rule(module, ctx)
        return

    is_method = op == "call_method"
    first = node.args[0] if node.args else None
    first_block = blocks.get(first) if isinstance(first, fx.Node) else None
    first_shape = env[first].shape if first_block is not None and isinstance(first, fx.Node) else None

    if is_method and target in _NON_TENSOR_METHODS:
        return
    if not is_method and target is getattr and out is None:
        return
    if out is None and not tensor_args:
        return

    if (not is_method and target in _UNARY_FUNCS) or (is_method and target in _UNARY_METHODS):
        graph._tie(first_block, out)
        for n in tensor_args:
            if n is not first:
                graph._barrier(blocks[n], f"extra tensor argument of {name!r}")
        if out is not None and first_block is None:
            graph._barrier(out, f"{name!r} creates channels from a non-channelled tensor")
        return
    if (not is_method and target in _BINARY_FUNCS) or (is_method and target in _BINARY_METHODS):
        _broadcast_tie(graph, node, env, blocks, out, out_shape, name)
        return
    if (not is_method and target in _RESHAPE) or (is_method and target in _RESHAPE_METHODS):
        if (target is torch.reshape or target in ("view", "reshape")) and isinstance(first, fx.Node):
            fixed = _fixed_sizes(node, first)
            if fixed:
                barrier_all(
                    f"{name!r} reshapes to hard-coded size(s) {fixed} (not -1 and not derived from the "
                    "input's size()/shape), which would no longer fit once channels are removed"
                )
                return
        _reshape_like(graph, first_block, first_shape, out, out_shape, name)
        return
    if (not is_method and target in _REDUCE) or (is_method and target in _REDUCE_METHODS):
        dims = _arg(node, 1, "dim")
        keepdim = bool(_arg(node, 2, "keepdim", False))
        ndim = len(first_shape) if first_shape is not None else 0
        if dims is not None and first_shape is not None:
            dim_list = [int(d) % ndim for d in (dims if isinstance(dims, (tuple, list)) else [dims])]
            if (
                0 not in dim_list
                and 1 not in dim_list
                and out is not None
                and (keepdim or len(dim_list) < ndim - 1)
            ):
                graph._tie(first_block, out)
                return
        barrier_all(f"reduction {name!r} over the channel dimension")
        return
    if not is_method and target in (torch.cat, torch.concat, torch.concatenate):
        _cat(graph, node, env, blocks, out, name)
        return
    if not is_method and target is operator.getitem:
        index = node.args[1] if len(node.args) > 1 else None
        idx = index if isinstance(index, tuple) else (index,)
        full = slice(None, None, None)
        if (
            first_block is not None
            and out is not None
            and len(idx) >= 2
            and idx[0] == full
            and idx[1] == full
            and Ellipsis not in idx[:2]
        ):
            graph._tie(first_block, out)
            return
        barrier_all(f"indexing {name!r} touches the channel dimension")
        return
    barrier_all(f"unknown operation {name!r} ({getattr(target, '__name__', target)})")


_SIZE_ARITHMETIC: set[Any] = {operator.mul, operator.floordiv, operator.add, operator.sub}


def _size_of(node: Any, source: fx.Node) -> bool:
    """Whether ``node`` is computed only from ``source``'s ``size()`` / ``shape`` (no literal numbers)."""
    if not isinstance(node, fx.Node):
        return False
    if node.op == "call_method" and node.target == "size":
        return bool(node.args) and node.args[0] is source
    if node.op != "call_function":
        return False
    if node.target is getattr:
        return len(node.args) == 2 and node.args[0] is source and str(node.args[1]) == "shape"
    if node.target is operator.getitem:
        return len(node.args) == 2 and _size_of(node.args[0], source)
    if node.target in _SIZE_ARITHMETIC:
        return bool(node.args) and all(_size_of(a, source) for a in node.args) and not node.kwargs
    return False


def _fixed_sizes(node: fx.Node, source: fx.Node) -> list[Any]:
    """Size arguments of a ``view``/``reshape`` that are neither ``-1`` nor taken from ``source``'s size."""
    sizes: list[Any] = list(node.args[1:])
    for key in ("shape", "size"):
        if key in node.kwargs:
            sizes.append(node.kwargs[key])
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = list(sizes[0])
    return [s for s in sizes if not (isinstance(s, int) and s == -1) and not _size_of(s, source)]


def _broadcast_tie(
    graph: ChannelGraph,
    node: fx.Node,
    env: dict[fx.Node, Any],
    blocks: dict[fx.Node, IntArray],
    out: IntArray | None,
    out_shape: torch.Size | None,
    name: str,
) -> None:
    for n in _flat_tensor_nodes((node.args, node.kwargs)):
        value = env[n]
        if not isinstance(value, torch.Tensor):
            continue
        if out is None or out_shape is None:
            graph._barrier(blocks.get(n), f"{name!r} output has no channel dimension")
            continue
        axis = 1 - (len(out_shape) - value.dim())
        if axis < 0 or value.shape[axis] == 1:
            continue  # broadcast along channels: no per-channel dependence
        if axis == 1 and n in blocks:
            graph._tie(blocks[n], out)
        else:  # e.g. a (C, 1, 1) tensor: its channels are not a traced block
            graph._barrier(out, f"{name!r} combines channels with a tensor whose channels are not tracked")


def _cat(
    graph: ChannelGraph,
    node: fx.Node,
    env: dict[fx.Node, Any],
    blocks: dict[fx.Node, IntArray],
    out: IntArray | None,
    name: str,
) -> None:
    tensors = _arg(node, 0, "tensors")
    dim = _arg(node, 1, "dim", 0)
    parts: Sequence[Any] = tensors if isinstance(tensors, (tuple, list)) else []
    if out is None or not parts or not all(isinstance(p, fx.Node) and p in blocks for p in parts):
        for p in _flat_tensor_nodes(tensors):
            graph._barrier(blocks.get(p), f"concatenation {name!r}")
        graph._barrier(out, f"concatenation {name!r}")
        return
    ndim = env[node].dim()
    if int(dim) % ndim == 1:
        offset = 0
        for p in parts:
            block = blocks[p]
            graph._tie(block, out[offset : offset + len(block)])
            offset += len(block)
    else:  # another dimension: every part has the output's channels
        for p in parts:
            graph._tie(blocks[p], out)
