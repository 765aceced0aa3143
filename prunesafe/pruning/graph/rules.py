"""Op semantics: the channel rules of modules, functions and tensor methods, in one registry.

A *rule* says how the channels of one traced call relate: ``ctx.tie(a, b)`` (the same channel
in two tensors), ``ctx.barrier(a)`` (these channels cannot be removed), ``ctx.add_slot(...)``
(the slice of a module's parameters that belongs to these channels).  Rules are registered
for a module type (``rule(module, ctx)``; the module is then a leaf of the trace), for a
function such as ``torchvision.ops.stochastic_depth`` or ``torch.cat`` (``rule(function,
ctx)``), or for a tensor method by name (``"view"``, ``rule("view", ctx)``) with
:func:`register_channel_rule`, and removed with :func:`unregister_channel_rule`.  Teaching the
engine a new op is one ``register_channel_rule`` call; the built-in table at the end of this
file is the list of everything the engine understands.  An op without a rule is a *barrier*:
every channel touching it is left unpruned.

The built-in rules cover:

* elementwise ops (activations, dropout, ``+ * - /`` with broadcasting, BatchNorm, LayerNorm
  over the channel dimension, ``stochastic_depth``) and spatial ones (pooling, interpolation);
* convolutions: ordinary (filters are *producers*, input channels *consumers*), depthwise (a
  *passthrough* following its input) and grouped (channels removed at the same index of every
  group, so ``groups`` stays valid); Linear layers on the last dimension (hidden units are
  producers like filters);
* layout ops: flatten / view / reshape decided from the shapes (a size argument matters only
  at the position that carries channels), ``permute``/``transpose`` (the channel dimension is
  tracked, e.g. ConvNeXt's channels-last blocks), channel splits into ``(groups, C/groups)``
  and their merge back (channel shuffle), ``chunk``/``split`` into equal channel pieces,
  ``cat``, channel indexing with full slices;
* channel padding (``F.pad`` or a constant-pad module over the channel dimension): input
  channel ``j`` is output channel ``j + front``; the padded channels are constant zeros and can
  be removed when the pad amounts are attributes of the module that pads (found by perturbing
  its integer attributes), as in option-A ResNet shortcuts;
* squeeze-excitation gating ``x * sigmoid(fc2(...))``: the gate's producer is marked a *gate*
  of the gated channels (one unit with the expand conv).

Examples
--------
Teach the graph a function that :mod:`torch.fx` cannot trace (its branch depends on a shape):

>>> import torch
>>> from torch import nn
>>> from prunesafe.pruning.graph import build_channel_graph
>>> def gate(x):
...     return x if x.shape[1] > 0 else -x
>>> class Net(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 2, 3)
...     def forward(self, x):
...         return self.b(gate(self.a(x)))
>>> def gate_rule(fn, ctx):
...     ctx.tie(ctx.inputs[0], ctx.output)
>>> register_channel_rule(gate, gate_rule, preserves_shape=True)
>>> graph = build_channel_graph(Net(), torch.rand(1, 3, 8, 8))
>>> [g.prunable for g in graph.groups()]  # a's channels flow through gate into b
[True, False]
>>> unregister_channel_rule(gate) is gate_rule
True
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from prunesafe.pruning.graph.channel_graph import ChannelGraph, SlotRole
    from prunesafe.pruning.graph.tracing import ArgOverride

__all__ = ["ChannelRule", "RuleContext", "register_channel_rule", "unregister_channel_rule"]

IntArray = np.ndarray[Any, np.dtype[np.int64]]
Update = Callable[[nn.Module, torch.Tensor], None]
RuleTarget = type[nn.Module] | Callable[..., Any] | str


@dataclass
class BuildState:
    """What the rules share while one traced forward is turned into channel relations (internal)."""

    graph: ChannelGraph
    model: nn.Module
    env: dict[fx.Node, Any] = field(default_factory=dict)
    blocks: dict[fx.Node, IntArray] = field(default_factory=dict)
    #: The dimension of each node's tensor that holds the tracked channels (default 1).
    cdims: dict[fx.Node, int] = field(default_factory=dict)
    #: Channels split into ``(d1, d2)`` at dims 1 and 2 (``view(n, g, c // g, ...)``): element grid.
    grids: dict[fx.Node, IntArray] = field(default_factory=dict)
    #: Elements of each tensor of a tuple output (``chunk``/``split`` over channels).
    pieces: dict[fx.Node, list[IntArray]] = field(default_factory=dict)
    overrides: dict[fx.Node, ArgOverride] = field(default_factory=dict)
    #: ``name -> module`` of the model (cached lookups).
    modules: dict[str, nn.Module] = field(default_factory=dict)

    def module(self, name: str) -> nn.Module:
        """The submodule ``name`` of the model."""
        if not self.modules:
            self.modules = dict(self.model.named_modules(remove_duplicate=False))
        found = self.modules.get(name)
        return found if found is not None else self.model.get_submodule(name)


class RuleContext:
    """What a channel rule sees about one call, and how it declares relations.

    Attributes
    ----------
    name : str
        Qualified module name (module rules) or the traced node's name (function rules).
    inputs : list of numpy.ndarray or None
        Element ids of the channels of each positional argument; ``None`` for arguments that
        are not tensors with at least two dimensions.
    input_shapes : list of torch.Size or None
    input_dims : list of int or None
        The dimension holding each input's channels (1, or e.g. 3 for a channels-last tensor).
    output : numpy.ndarray or None
        Element ids of the output's channels (``None`` when the output is not a tensor).
    output_shape : torch.Size or None
    output_dim : int or None
    args : tuple
        The positional arguments as the call sees them (``meta`` tensors, constants).
    kwargs : dict
    node : torch.fx.Node
        The traced call (advanced use).

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

    def __init__(self, state: BuildState, node: fx.Node, name: str, module: nn.Module | None) -> None:
        self._state = state
        self._graph = state.graph
        self._module_name = name if module is not None else None
        self.node = node
        self.name = name
        env, blocks = state.env, state.blocks
        positional = [a if isinstance(a, fx.Node) else None for a in node.args]
        self._positional = positional
        self.inputs: list[IntArray | None] = [blocks.get(a) if a is not None else None for a in positional]
        self.input_shapes: list[torch.Size | None] = [
            env[a].shape if a is not None and a in blocks else None for a in positional
        ]
        self.input_dims: list[int | None] = [
            state.cdims.get(a, 1) if a is not None and a in blocks else None for a in positional
        ]
        self.output: IntArray | None = blocks.get(node)
        self.output_shape: torch.Size | None = env[node].shape if self.output is not None else None
        self.output_dim: int | None = state.cdims.get(node, 1) if self.output is not None else None
        self.args: tuple[Any, ...] = tuple(fx.node.map_arg(node.args, lambda n: env[n]))
        self.kwargs: dict[str, Any] = dict(fx.node.map_arg(node.kwargs, lambda n: env[n]))

    def tie(self, a: IntArray | None, b: IntArray | None) -> None:
        """Declare ``a[i]`` and ``b[i]`` the same channel (equal lengths; no-op if either is None)."""
        self._graph._tie(a, b)

    def barrier(self, *arrays: IntArray | None, reason: str = "") -> None:
        """Mark the given channels unprunable."""
        for arr in arrays:
            self._graph._barrier(arr, reason or f"{self.name!r} cannot be pruned through")

    def add_slot(
        self,
        role: SlotRole,
        elements: IntArray | None,
        *,
        tensors: Iterable[tuple[str, int]] = (),
        update: Update | None = None,
    ) -> None:
        """Register the module's tensors sliced when channels ``elements`` are removed (module rules)."""
        if elements is None:
            raise ValueError(f"module {self.name!r}: add_slot needs the elements of a channelled tensor")
        if self._module_name is None:
            raise ValueError(f"{self.name!r} is a function call: add_slot is for module rules")
        self._graph._add_slot(self._module_name, role, elements, tuple(tensors), update)

    # --- helpers of the built-in rules -----------------------------------------------------
    def _barrier_all(self, reason: str) -> None:
        for n in _flat_tensor_nodes((self.node.args, self.node.kwargs)):
            self._graph._barrier(self._state.blocks.get(n), reason)
            grid = self._state.grids.get(n)
            if grid is not None:
                self._graph._barrier(grid.ravel(), reason)
        self._graph._barrier(self.output, reason)


ChannelRule = Callable[[Any, RuleContext], None]


@dataclass(frozen=True)
class RuleEntry:
    """A registered rule and how the engine treats it (internal)."""

    rule: ChannelRule
    preserves_shape: bool
    #: The rule handles every tensor argument itself (nested, keyword, grid, tuple pieces).
    raw: bool = False
    #: The rule accepts channels in any dimension (channels-last tensors), not only dim 1.
    any_dim: bool = False
    #: Module rules: only for classes that keep the registered class's forward (subclasses that
    #: override it are traced into instead).
    same_forward: bool = False


_MODULE_RULES: dict[type[nn.Module], RuleEntry] = {}
_FUNCTION_RULES: dict[Any, RuleEntry] = {}
_METHOD_RULES: dict[str, RuleEntry] = {}


def _target_error(target: Any) -> TypeError:
    return TypeError(
        "module_type must be an nn.Module subclass, a function (e.g. torchvision.ops.stochastic_depth) "
        f"or a tensor method name (e.g. 'view'), got {target!r}"
    )


def register_channel_rule(
    module_type: RuleTarget, rule: ChannelRule, *, preserves_shape: bool = False
) -> None:
    """Teach the dependency graph how channels flow through a module type, a function or a method.

    Modules of a registered type (and subclasses) are not traced into: they appear as one
    call in the graph and ``rule(module, ctx)`` declares their channel relations through the
    :class:`RuleContext` ``ctx`` (``ctx.tie``, ``ctx.barrier``, ``ctx.add_slot``).  For a
    function (or a tensor method given by name) ``rule(function, ctx)`` is called for every
    traced call; a plain Python function is kept as one call in the trace wherever a forward
    calls it through a public global name of its module (``torch.fx`` autowrapping; a name
    starting with ``_`` is not patched, and a call through ``module.function`` is traced into
    unless the function is ``torch.fx.wrap``-ed, as torchvision's ``stochastic_depth`` is).
    A registration replaces an earlier one for the same target (the built-in rules
    included).  An op with no rule is a barrier.

    Parameters
    ----------
    module_type : type, callable or str
        An ``nn.Module`` subclass, a function, or the name of a tensor method.
    rule : callable
        ``rule(module_or_function, ctx) -> None``.
    preserves_shape : bool, default False
        The output has its first input's shape.  Shape propagation then skips running it
        (a speed-up only).

    Examples
    --------
    >>> from torch import nn
    >>> def gelu_rule(module, ctx):
    ...     ctx.tie(ctx.inputs[0], ctx.output)
    >>> register_channel_rule(nn.GELU, gelu_rule, preserves_shape=True)
    """
    if not callable(rule):
        raise TypeError(f"rule must be callable as rule(module, ctx), got {rule!r}")
    _register(module_type, RuleEntry(rule, bool(preserves_shape)))


def unregister_channel_rule(module_type: RuleTarget) -> ChannelRule:
    """Remove the rule registered for a module type, function or method name; return it.

    Parameters
    ----------
    module_type : type, callable or str
        As given to :func:`register_channel_rule`.

    Returns
    -------
    callable
        The rule that was registered.

    Raises
    ------
    KeyError
        Nothing is registered for ``module_type``.

    Examples
    --------
    >>> def twice(x):
    ...     return x + x
    >>> register_channel_rule(twice, lambda fn, ctx: ctx.tie(ctx.inputs[0], ctx.output))
    >>> rule = unregister_channel_rule(twice)
    >>> unregister_channel_rule(twice)
    Traceback (most recent call last):
    ...
    KeyError: 'no channel rule is registered for twice'
    """
    table = _table_for(module_type)
    entry = table.pop(module_type, None)
    if entry is None:
        name = getattr(module_type, "__qualname__", repr(module_type))
        raise KeyError(f"no channel rule is registered for {name}")
    return entry.rule


def _table_for(target: Any) -> dict[Any, RuleEntry]:
    if isinstance(target, str):
        if not target.isidentifier():
            raise _target_error(target)
        return _METHOD_RULES
    if isinstance(target, type):
        if not issubclass(target, nn.Module):
            raise _target_error(target)
        return _MODULE_RULES
    if callable(target):
        return _FUNCTION_RULES
    raise _target_error(target)


def _register(target: Any, entry: RuleEntry) -> None:
    _table_for(target)[target] = entry


def rule_for_module(module: nn.Module) -> RuleEntry | None:
    """The rule of ``module``'s class or nearest registered base class (internal)."""
    for klass in type(module).__mro__:
        entry = _MODULE_RULES.get(klass)
        if entry is not None:
            own_forward = getattr(type(module), "forward", None)
            if entry.same_forward and own_forward is not getattr(klass, "forward", None):
                return None  # a subclass with its own forward: trace into it
            return entry
    return None


def rule_for_call(is_method: bool, target: Any) -> RuleEntry | None:
    """The rule of a traced function / method call (internal)."""
    if is_method:
        return _METHOD_RULES.get(str(target))
    try:
        return _FUNCTION_RULES.get(target)
    except TypeError:  # unhashable target
        return None


def function_targets() -> list[Any]:
    """Every function with a registered rule (internal: the tracer keeps them leaves)."""
    return list(_FUNCTION_RULES)


# ----------------------------------------------------------------------------- helpers


def _flat_tensor_nodes(args: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(args, lambda n: found.append(n) or n)  # type: ignore[func-returns-value]
    return found


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _set_attr(name: str) -> Update:
    def update(module: nn.Module, keep: torch.Tensor) -> None:
        setattr(module, name, int(keep.numel()))

    return update


def _first(ctx: RuleContext) -> tuple[fx.Node | None, IntArray | None]:
    first = ctx.node.args[0] if ctx.node.args else None
    if not isinstance(first, fx.Node):
        return None, None
    return first, ctx._state.blocks.get(first)


def _owner_of_attr(model: nn.Module, target: str) -> tuple[str, str] | None:
    """``(module name, attribute)`` of a ``get_attr`` target that is a parameter or buffer."""
    owner, _, attr = target.rpartition(".")
    try:
        module = model.get_submodule(owner)
    except AttributeError:
        return None
    if attr in module._parameters or attr in module._buffers:
        return owner, attr
    return None


# ----------------------------------------------------------------------------- module rules


def _elementwise_rule(module: nn.Module, ctx: RuleContext) -> None:
    first, block = _first(ctx)
    ctx.tie(block, ctx.output)
    if first is not None and first in ctx._state.grids and ctx.output is not None:
        ctx._state.grids[ctx.node] = ctx._state.grids[first]
        ctx.barrier(ctx.output, reason=f"{ctx.name!r}: a split channel dimension")


def _conv_rule(module: nn.Module, ctx: RuleContext) -> None:
    assert isinstance(module, nn.modules.conv._ConvNd)
    x, out = ctx.inputs[0], ctx.output
    transposed = bool(module.transposed)
    in_dim, out_dim = (0, 1) if transposed else (1, 0)
    groups = int(module.groups)
    if groups == 1:
        ctx.add_slot("consumer", x, tensors=[("weight", in_dim)], update=_set_attr("in_channels"))
        ctx.add_slot(
            "producer", out, tensors=[("weight", out_dim), ("bias", 0)], update=_set_attr("out_channels")
        )
        return
    if groups == module.in_channels == module.out_channels and not transposed:

        def update(m: nn.Module, keep: torch.Tensor) -> None:
            n = int(keep.numel())
            m.in_channels = m.out_channels = m.groups = n  # type: ignore[assignment]

        ctx.tie(x, out)
        ctx.add_slot("passthrough", out, tensors=[("weight", 0), ("bias", 0)], update=update)
        return
    in_per, out_per = module.in_channels // groups, module.out_channels // groups
    if x is None or out is None or transposed or in_per < 2 or out_per < 2:
        ctx.barrier(
            x,
            out,
            reason=f"grouped convolution {ctx.name!r} (groups={groups}, {in_per} input and {out_per} "
            "output channels per group) cannot keep equal groups when pruned",
        )
        return
    # channel i of every group goes together: groups keep equal sizes and stay aligned
    x_grid, out_grid = x.reshape(groups, in_per), out.reshape(groups, out_per)
    for j in range(1, groups):
        ctx.tie(x_grid[0], x_grid[j])
        ctx.tie(out_grid[0], out_grid[j])

    def update_in(m: nn.Module, keep: torch.Tensor) -> None:
        setattr(m, "in_channels", int(keep.numel()) * int(getattr(m, "groups")))  # noqa: B009, B010

    ctx.add_slot("consumer", x_grid[0], tensors=[("weight", 1)], update=update_in)
    ctx.add_slot("producer", out, tensors=[("weight", 0), ("bias", 0)], update=_set_attr("out_channels"))


def _linear_rule(module: nn.Module, ctx: RuleContext) -> None:
    x, out = ctx.inputs[0], ctx.output
    shape, dim = ctx.input_shapes[0], ctx.input_dims[0]
    if shape is None or dim is None or dim != len(shape) - 1:
        ctx.barrier(x, out, reason=f"Linear {ctx.name!r} applied to a tensor whose last dim is not tracked")
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


def _layernorm_update(module: nn.Module, keep: torch.Tensor) -> None:
    module.normalized_shape = (int(keep.numel()),)  # type: ignore[assignment]


def _layernorm_rule(module: nn.Module, ctx: RuleContext) -> None:
    assert isinstance(module, nn.LayerNorm)
    x, shape, dim = ctx.inputs[0], ctx.input_shapes[0], ctx.input_dims[0]
    norm_shape = tuple(module.normalized_shape)
    if x is None or shape is None or dim != len(shape) - 1 or norm_shape != (shape[-1],):
        ctx._barrier_all(f"LayerNorm {ctx.name!r} normalises over more than the channel dimension")
        return
    ctx.tie(x, ctx.output)
    tensors = [(t, 0) for t in ("weight", "bias") if getattr(module, t, None) is not None]
    ctx.add_slot("passthrough", ctx.output, tensors=tensors, update=_layernorm_update)


def _prelu_rule(module: nn.Module, ctx: RuleContext) -> None:
    assert isinstance(module, nn.PReLU)
    ctx.tie(ctx.inputs[0], ctx.output)
    if module.num_parameters > 1:
        ctx.add_slot("passthrough", ctx.output, tensors=[("weight", 0)], update=_set_attr("num_parameters"))


def _flatten_module_rule(module: nn.Module, ctx: RuleContext) -> None:
    _reshape_like(ctx, ctx.inputs[0], ctx.input_shapes[0], ctx.output, ctx.output_shape)


def _channel_pad(shape: Sequence[int], pad: Sequence[Any], cdim: int) -> tuple[int, int, int] | None:
    """``(k, front, back)``: position of the channel dim in ``pad`` pairs, and its amounts."""
    k = len(shape) - 1 - cdim
    if len(pad) <= 2 * k + 1:
        return k, 0, 0
    front, back = pad[2 * k], pad[2 * k + 1]
    if not (isinstance(front, int) and isinstance(back, int)):
        return None
    return k, front, back


def _constant_pad_module_rule(module: nn.Module, ctx: RuleContext) -> None:
    x, out, shape = ctx.inputs[0], ctx.output, ctx.input_shapes[0]
    padding = tuple(getattr(module, "padding", ()))
    found = _channel_pad(shape, padding, 1) if shape is not None else None
    if x is None or out is None or shape is None or found is None:
        ctx._barrier_all(f"padding {ctx.name!r}")
        return
    k, front, back = found
    if front == back == 0:
        ctx.tie(x, out)
        return
    if front < 0 or back < 0:
        ctx._barrier_all(f"{ctx.name!r} crops channels")
        return
    ctx.tie(x, out[front : front + len(x)])
    n_in = len(x)

    def update(m: nn.Module, keep: torch.Tensor) -> None:
        new = list(getattr(m, "padding"))  # noqa: B009
        new[2 * k] = int((keep < front).sum())
        new[2 * k + 1] = int((keep >= front + n_in).sum())
        m.padding = tuple(new)  # type: ignore[assignment]

    ctx.add_slot("passthrough", out, update=update)


# ----------------------------------------------------------------------------- function rules


def _unary_rule(fn: Any, ctx: RuleContext) -> None:
    """Channel-wise on the first argument; any other tensor argument is a barrier."""
    first, block = _first(ctx)
    out = ctx.output
    ctx.tie(block, out)
    for n in _flat_tensor_nodes((ctx.node.args, ctx.node.kwargs)):
        if n is not first:
            ctx._graph._barrier(ctx._state.blocks.get(n), f"extra tensor argument of {ctx.name!r}")
    if first is not None and first in ctx._state.grids and out is not None:
        ctx._state.grids[ctx.node] = ctx._state.grids[first]
        ctx.barrier(out, reason=f"{ctx.name!r}: a split channel dimension")
    elif out is not None and block is None:
        ctx.barrier(out, reason=f"{ctx.name!r} creates channels from a non-channelled tensor")


_GATE_ACTIVATIONS: set[Any] = {torch.sigmoid, F.sigmoid, F.hardsigmoid, "sigmoid", "hardsigmoid"}
_GATE_MODULES: tuple[type[nn.Module], ...] = (nn.Sigmoid, nn.Hardsigmoid)


def _mark_gate(state: BuildState, gate: fx.Node) -> None:
    """``gate`` scales channels after a sigmoid: mark the conv / Linear producing it as a gate."""
    node, seen_activation = gate, False
    while True:
        if len(node.users) != 1:
            return
        if node.op == "call_module":
            module = state.module(str(node.target))
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                if seen_activation:
                    state.graph.gate_modules.add(str(node.target))
                return
            if isinstance(module, _GATE_MODULES):
                seen_activation = True
            elif rule_for_module(module) is None or rule_for_module(module).rule is not _elementwise_rule:  # type: ignore[union-attr]
                return
        elif node.op in ("call_function", "call_method") and node.target in _GATE_ACTIVATIONS:
            seen_activation = True
        else:
            return
        nxt = node.args[0] if node.args else None
        if not isinstance(nxt, fx.Node):
            return
        node = nxt


def _broadcast_rule(fn: Any, ctx: RuleContext) -> None:
    state, node, out = ctx._state, ctx.node, ctx.output
    out_shape, cdim = ctx.output_shape, ctx.output_dim
    is_mul = node.target in (operator.mul, operator.imul, torch.mul, "mul", "mul_")
    for n in _flat_tensor_nodes((node.args, node.kwargs)):
        value = state.env[n]
        if not isinstance(value, torch.Tensor):
            continue
        if out is None or out_shape is None or cdim is None:
            ctx._graph._barrier(state.blocks.get(n), f"{ctx.name!r} output has no channel dimension")
            continue
        axis = cdim - (len(out_shape) - value.dim())
        if axis < 0 or value.shape[axis] == 1:
            continue  # broadcast along channels: no per-channel dependence
        if n in state.grids:
            ctx._graph._barrier(state.grids[n].ravel(), f"{ctx.name!r}: a split channel dimension")
            ctx.barrier(out, reason=f"{ctx.name!r}: a split channel dimension")
        elif n in state.blocks and state.cdims.get(n, 1) == axis:
            ctx.tie(state.blocks[n], out)
            spatial = value.shape[axis + 1 :]
            if (
                is_mul
                and len(spatial)
                and all(s == 1 for s in spatial)
                and any(s > 1 for s in out_shape[cdim + 1 :])
            ):
                _mark_gate(state, n)
        elif n.op == "get_attr" and (owner := _owner_of_attr(state.model, str(n.target))) is not None:
            # a per-channel parameter of a module (e.g. ConvNeXt's layer_scale): sliced with the channels
            ctx._graph._add_slot(owner[0], "passthrough", out, ((owner[1], axis),), None, tag="param")
        else:  # e.g. a constant (C, 1, 1) tensor: its channels are not a traced block
            ctx.barrier(
                out, reason=f"{ctx.name!r} combines channels with a tensor whose channels are not tracked"
            )


_SIZE_ARITHMETIC: set[Any] = {operator.mul, operator.floordiv, operator.add, operator.sub}


def _size_derived(value: Any) -> bool:
    """Whether ``value`` is computed from some tensor's ``size()`` / ``shape`` (not a literal)."""
    if not isinstance(value, fx.Node):
        return False
    if value.op == "call_method" and value.target == "size":
        return True
    if value.op != "call_function":
        return False
    if value.target is getattr:
        return len(value.args) == 2 and str(value.args[1]) == "shape"
    if value.target is operator.getitem:
        return _size_derived(value.args[0])
    if value.target in _SIZE_ARITHMETIC:
        return any(_size_derived(a) for a in value.args)
    return False


def _size_args(node: fx.Node) -> list[Any] | None:
    """The size arguments of a ``view``/``reshape`` call (None for flatten-like calls)."""
    if node.target not in ("view", "reshape", torch.reshape):
        return None
    sizes: list[Any] = list(node.args[1:])
    for key in ("shape", "size"):
        if key in node.kwargs:
            sizes.append(node.kwargs[key])
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = list(sizes[0])
    return sizes


def _fixed(sizes: list[Any] | None, positions: Iterable[int]) -> list[Any]:
    """Size arguments at ``positions`` that are neither ``-1`` nor derived from a tensor's size."""
    if sizes is None:
        return []
    out = []
    for p in positions:
        if p < len(sizes):
            s = sizes[p]
            if not (isinstance(s, int) and s == -1) and not _size_derived(s):
                out.append(s)
    return out


def _hard_coded(ctx: RuleContext, fixed: list[Any]) -> None:
    ctx._barrier_all(
        f"{ctx.name!r} reshapes to hard-coded size(s) {fixed} (not -1 and not derived from a tensor's "
        "size()/shape) at the dimension holding channels, which would no longer fit once channels "
        "are removed"
    )


def _reshape_like(
    ctx: RuleContext,
    x: IntArray | None,
    in_shape: torch.Size | None,
    out: IntArray | None,
    out_shape: torch.Size | None,
) -> None:
    """Tie channels through a reshape, deciding from the shapes which size argument carries channels.

    Kept channel dim ``(N, C, ...) -> (N, C, ...)``; flatten ``(N, C, *S) -> (N, C*prod(S))``;
    split ``(N, C, *S) -> (N, g, C/g, *S)``; merge of a split ``(N, a, b, *S) -> (N, a*b, *S)``.
    """
    state, node, what = ctx._state, ctx.node, ctx.name
    first, _ = _first(ctx)
    sizes = _size_args(node)
    grid = state.grids.get(first) if first is not None else None
    in_dim = state.cdims.get(first, 1) if first is not None else 1
    if grid is not None and in_shape is not None and out is not None and out_shape is not None:
        if (
            len(out_shape) == len(in_shape) - 1
            and tuple(out_shape[:1]) == tuple(in_shape[:1])
            and out_shape[1] == in_shape[1] * in_shape[2]
            and tuple(out_shape[2:]) == tuple(in_shape[3:])
        ):
            fixed = _fixed(sizes, [1])
            if fixed:
                _hard_coded(ctx, fixed)
                return
            ctx.tie(grid.ravel(), out)
            return
        ctx._barrier_all(f"reshape {what!r} of a split channel dimension")
        return
    if x is None or in_shape is None or out is None or out_shape is None or in_dim != 1:
        ctx._barrier_all(f"reshape {what!r} leaves or creates a channel layout")
        return
    if tuple(out_shape[:2]) == tuple(in_shape[:2]):
        fixed = _fixed(sizes, [1])
        if fixed:
            _hard_coded(ctx, fixed)
            return
        ctx.tie(x, out)
        return
    spatial = int(np.prod(in_shape[2:])) if len(in_shape) > 2 else 1
    if len(out_shape) == 2 and out_shape[0] == in_shape[0] and out_shape[1] == in_shape[1] * spatial:
        fixed = _fixed(sizes, [1])
        if fixed:
            _hard_coded(ctx, fixed)
            return
        ctx.tie(np.repeat(x, spatial), out)
        return
    if (
        len(out_shape) == len(in_shape) + 1
        and out_shape[0] == in_shape[0]
        and out_shape[1] * out_shape[2] == in_shape[1]
        and tuple(out_shape[3:]) == tuple(in_shape[2:])
        and out_shape[1] > 1
        and out_shape[2] > 1
    ):
        fixed = _fixed(sizes, [2])
        if fixed:
            _hard_coded(ctx, fixed)
            return
        g, per = int(out_shape[1]), int(out_shape[2])
        split = x.reshape(g, per)
        for j in range(1, g):  # channel i of every part goes together: the parts stay equal
            ctx.tie(split[0], split[j])
        state.grids[node] = split
        ctx.barrier(out, reason=f"{what!r}: a split channel dimension")
        return
    ctx._barrier_all(
        f"reshape {what!r} from {tuple(in_shape)} to {tuple(out_shape)} splits the channel dimension"
    )


def _reshape_rule(fn: Any, ctx: RuleContext) -> None:
    _reshape_like(ctx, ctx.inputs[0] if ctx.inputs else None, ctx.input_shapes[0] if ctx.inputs else None,
                  ctx.output, ctx.output_shape)  # fmt: skip


def _reduce_rule(fn: Any, ctx: RuleContext) -> None:
    node = ctx.node
    _, block = _first(ctx)
    first_shape = ctx.input_shapes[0] if ctx.inputs else None
    dims = _arg(node, 1, "dim")
    keepdim = bool(_arg(node, 2, "keepdim", False))
    ndim = len(first_shape) if first_shape is not None else 0
    if dims is not None and first_shape is not None and ctx.input_dims[0] == 1:
        dim_list = [int(d) % ndim for d in (dims if isinstance(dims, (tuple, list)) else [dims])]
        if (
            0 not in dim_list
            and 1 not in dim_list
            and ctx.output is not None
            and (keepdim or len(dim_list) < ndim - 1)
        ):
            ctx.tie(block, ctx.output)
            return
    ctx._barrier_all(f"reduction {ctx.name!r} over the channel dimension")


def _cat_rule(fn: Any, ctx: RuleContext) -> None:
    state, node, out = ctx._state, ctx.node, ctx.output
    tensors = _arg(node, 0, "tensors")
    dim = _arg(node, 1, "dim", 0)
    parts: Sequence[Any] = tensors if isinstance(tensors, (tuple, list)) else []
    if (
        out is None
        or not parts
        or not all(isinstance(p, fx.Node) and p in state.blocks and state.cdims.get(p, 1) == 1 for p in parts)
        or any(p in state.grids for p in parts)
    ):
        ctx._barrier_all(f"concatenation {ctx.name!r}")
        return
    ndim = state.env[node].dim()
    if int(dim) % ndim == 1:
        offset = 0
        for p in parts:
            block = state.blocks[p]
            ctx.tie(block, out[offset : offset + len(block)])
            offset += len(block)
    else:  # another dimension: every part has the output's channels
        for p in parts:
            ctx.tie(state.blocks[p], out)


def _chunk_rule(fn: Any, ctx: RuleContext) -> None:
    """``chunk`` / ``split`` into equal pieces: along channels, channel i of every piece goes together."""
    state, node = ctx._state, ctx.node
    first, block = _first(ctx)
    value = state.env[node]
    dim = _arg(node, 2, "dim", 0)
    if node.target in ("chunk", torch.chunk):
        count = _arg(node, 1, "chunks")
    else:
        count = None
        size = _arg(node, 1, "split_size_or_sections", _arg(node, 1, "split_size"))
        if isinstance(size, int) and block is not None and len(block) % size == 0:
            count = len(block) // size
    shape = ctx.input_shapes[0] if ctx.inputs else None
    if (
        first is None
        or block is None
        or shape is None
        or not isinstance(value, (tuple, list))
        or not isinstance(count, int)
        or ctx.input_dims[0] != 1
        or first in state.grids
    ):
        ctx._barrier_all(f"{ctx.name!r} splits channels into pieces whose sizes are not tracked")
        return
    d = int(dim) % len(shape)
    if d != 1:
        state.pieces[node] = [block] * len(value)
        return
    if len(block) % count != 0 or len(value) != count:
        ctx._barrier_all(f"{ctx.name!r} splits {len(block)} channels into unequal pieces")
        return
    parts = block.reshape(count, -1)
    for j in range(1, count):
        ctx.tie(parts[0], parts[j])
    state.pieces[node] = [parts[j] for j in range(count)]


def _getitem_rule(fn: Any, ctx: RuleContext) -> None:
    state, node, out = ctx._state, ctx.node, ctx.output
    first, block = _first(ctx)
    index = node.args[1] if len(node.args) > 1 else None
    if first is not None and first in state.pieces:
        pieces = state.pieces[first]
        if isinstance(index, int) and out is not None and -len(pieces) <= index < len(pieces):
            ctx.tie(pieces[index], out)
            return
        ctx._barrier_all(f"indexing {ctx.name!r} of split channel pieces")
        return
    if first is not None and first not in state.blocks:
        # a tuple / list / size: only its tensors' channels matter
        if out is not None:
            ctx.barrier(
                out, reason=f"{ctx.name!r} takes a tensor out of a container whose channels are not tracked"
            )
        return
    idx = index if isinstance(index, tuple) else (index,)
    full = slice(None, None, None)
    if (
        block is not None
        and out is not None
        and len(idx) >= 2
        and idx[0] == full
        and idx[1] == full
        and Ellipsis not in idx[:2]
        and ctx.input_dims[0] == 1
        and first not in state.grids
    ):
        ctx.tie(block, out)
        return
    ctx._barrier_all(f"indexing {ctx.name!r} touches the channel dimension")


def _permute_rule(fn: Any, ctx: RuleContext) -> None:
    """``permute`` / ``transpose``: the channels move to another dimension (tracked)."""
    state, node, out = ctx._state, ctx.node, ctx.output
    first, block = _first(ctx)
    if first is not None and first in state.grids and out is not None:
        perm = _permutation(node, state.env[first].dim())
        if perm is not None and perm[:3] == [0, 2, 1]:
            state.grids[node] = np.ascontiguousarray(state.grids[first].T)
            ctx.barrier(out, reason=f"{ctx.name!r}: a split channel dimension")
            return
        ctx._barrier_all(f"{ctx.name!r} permutes a split channel dimension")
        return
    ctx.tie(block, out)
    if out is not None and block is None:
        ctx.barrier(out, reason=f"{ctx.name!r} creates channels from a non-channelled tensor")


def _permutation(node: fx.Node, ndim: int) -> list[int] | None:
    """The dimension order of a ``permute`` / ``transpose`` node (None: not one)."""
    target = node.target
    if target in ("permute", torch.permute):
        dims = list(node.args[1:]) if target == "permute" else list(node.args[1:2])
        if "dims" in node.kwargs:
            dims = [node.kwargs["dims"]]
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        if len(dims) != ndim or not all(isinstance(d, int) for d in dims):
            return None
        return [int(d) % ndim for d in dims]  # type: ignore[arg-type]
    if target in ("transpose", torch.transpose):
        a, b = _arg(node, 1, "dim0"), _arg(node, 2, "dim1")
        if not (isinstance(a, int) and isinstance(b, int)):
            return None
        perm = list(range(ndim))
        perm[a % ndim], perm[b % ndim] = perm[b % ndim], perm[a % ndim]
        return perm
    return None


def output_channel_dim(state: BuildState, node: fx.Node) -> int:
    """The dimension of ``node``'s output tensor that holds the channels its first input tracks."""
    value = state.env[node]
    first = node.args[0] if node.args else None
    if not isinstance(first, fx.Node) or first not in state.blocks or not isinstance(value, torch.Tensor):
        return 1
    in_dim = state.cdims.get(first, 1)
    perm = _permutation(node, value.dim()) if node.op != "call_module" else None
    if perm is not None and first not in state.grids:
        return perm.index(in_dim)
    if in_dim != 1 and value.dim() == state.env[first].dim():
        return in_dim
    return 1


def _layer_norm_fn_rule(fn: Any, ctx: RuleContext) -> None:
    """``F.layer_norm`` over the channel dimension (traced ``LayerNorm`` subclasses, e.g. LayerNorm2d)."""
    state, node = ctx._state, ctx.node
    _, block = _first(ctx)
    shape, dim = (ctx.input_shapes[0], ctx.input_dims[0]) if ctx.inputs else (None, None)
    norm_shape = _arg(node, 1, "normalized_shape")
    weight, bias = _arg(node, 2, "weight"), _arg(node, 3, "bias")
    owners = []
    for t in (weight, bias):
        if t is None:
            continue
        owner = (
            _owner_of_attr(state.model, str(t.target))
            if isinstance(t, fx.Node) and t.op == "get_attr"
            else None
        )
        owners.append(owner)
    ok = (
        block is not None
        and shape is not None
        and dim == len(shape) - 1
        and isinstance(norm_shape, (tuple, list))
        and tuple(norm_shape) == (shape[-1],)
        and all(o is not None for o in owners)
        and len({o[0] for o in owners if o is not None}) <= 1
    )
    if not ok:
        ctx._barrier_all(f"layer_norm {ctx.name!r} normalises over more than the channel dimension")
        return
    ctx.tie(block, ctx.output)
    if owners:
        name = owners[0][0]  # type: ignore[index]
        module = state.module(name)
        tensors = tuple((o[1], 0) for o in owners if o is not None)
        update = _layernorm_update if hasattr(module, "normalized_shape") else None
        ctx._graph._add_slot(name, "passthrough", ctx.output, tensors, update, tag="layer_norm")  # type: ignore[arg-type]

    def override(
        model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        x = args[0]
        rest = list(args)
        if len(rest) > 1:
            rest[1] = (int(x.shape[-1]),)
        else:
            kwargs = {**kwargs, "normalized_shape": (int(x.shape[-1]),)}
        return tuple(rest), kwargs

    state.overrides[node] = override


def _owner_path(node: fx.Node) -> str | None:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    return str(path) if path else None


def _pad_attributes(model: nn.Module, path: str, node: fx.Node, k: int) -> tuple[str | None, str | None]:
    """Integer attributes of module ``path`` that set the front / back channel padding of ``node``.

    Found by perturbation: each integer attribute equal to one of the two amounts is increased
    by one in a copy of the module, the copy is traced, and the padding of the same ``F.pad``
    call is compared.  Results are cached by class, attribute values and call.
    """
    from prunesafe.pruning.graph.tracing import Tracer

    module = model.get_submodule(path)
    graph = node.graph
    calls = [
        n for n in graph.nodes if n.op == "call_function" and n.target is F.pad and _owner_path(n) == path
    ]
    base = _arg(node, 1, "pad")
    ints = {a: v for a, v in vars(module).items() if not a.startswith("_") and type(v) is int}
    key = (type(module), tuple(sorted(ints.items())), calls.index(node), tuple(base), k)
    cached = _PAD_ATTRIBUTES.get(key)
    if cached is not None:
        return cached
    front_attr: str | None = None
    back_attr: str | None = None
    for attr, value in ints.items():
        if value not in (base[2 * k], base[2 * k + 1]):
            continue
        probe = copy.copy(module)
        setattr(probe, attr, value + 1)
        try:
            traced = Tracer().trace(probe)
        except Exception:
            continue
        pads = [n for n in traced.nodes if n.op == "call_function" and n.target is F.pad]
        if not pads or len(calls) % len(pads) != 0:
            continue
        pad = _arg(pads[calls.index(node) % len(pads)], 1, "pad")
        if not isinstance(pad, (tuple, list)) or len(pad) != len(base):
            continue
        diff = [int(a) - int(b) for a, b in zip(pad, base, strict=True)]
        if (
            diff[2 * k] == 1
            and diff[2 * k + 1] == 0
            and all(d == 0 for i, d in enumerate(diff) if i != 2 * k)
        ):
            front_attr = attr if front_attr is None else ""
        elif diff[2 * k + 1] == 1 and all(d == 0 for i, d in enumerate(diff) if i != 2 * k + 1):
            back_attr = attr if back_attr is None else ""
    _PAD_ATTRIBUTES[key] = (front_attr or None, back_attr or None)
    return _PAD_ATTRIBUTES[key]


_PAD_ATTRIBUTES: dict[tuple[Any, ...], tuple[str | None, str | None]] = {}


def _pad_rule(fn: Any, ctx: RuleContext) -> None:
    """``F.pad`` of the channel dimension: input channel j is output channel j + front."""
    state, node = ctx._state, ctx.node
    first, block = _first(ctx)
    out, shape = ctx.output, ctx.input_shapes[0] if ctx.inputs else None
    pad = _arg(node, 1, "pad")
    mode = _arg(node, 2, "mode", "constant")
    if (
        block is None
        or out is None
        or shape is None
        or not isinstance(pad, (tuple, list))
        or first in state.grids
    ):
        ctx._barrier_all(f"padding {ctx.name!r}")
        return
    found = _channel_pad(shape, pad, int(ctx.input_dims[0] or 1))
    if found is None:
        ctx._barrier_all(f"padding {ctx.name!r} with amounts computed in the forward")
        return
    k, front, back = found
    if front == back == 0:
        ctx.tie(block, out)
        return
    if mode != "constant" or front < 0 or back < 0:
        ctx._barrier_all(f"padding {ctx.name!r} of the channel dimension (mode {mode!r}, {front}, {back})")
        return
    n_in = len(block)
    ctx.tie(block, out[front : front + n_in])
    path = _owner_path(node)
    front_attr, back_attr = _pad_attributes(state.model, path, node, k) if path else (None, None)
    if front and front_attr is None:
        ctx.barrier(out[:front], reason=f"{ctx.name!r} pads channels by a hard-coded amount")
    if back and back_attr is None:
        ctx.barrier(out[front + n_in :], reason=f"{ctx.name!r} pads channels by a hard-coded amount")
    if path is None or (front_attr is None and back_attr is None):
        return

    def update(m: nn.Module, keep: torch.Tensor) -> None:
        if front_attr is not None:
            setattr(m, front_attr, getattr(m, front_attr) - front + int((keep < front).sum()))
        if back_attr is not None:
            setattr(m, back_attr, getattr(m, back_attr) - back + int((keep >= front + n_in).sum()))

    # the pad channels are constant-zero sources: nothing to slice, only the amounts change
    ctx._graph._add_slot(path, "passthrough", out, (), update, tag=f"pad:{node.name}")
    base = list(pad)
    attr_values = {a: getattr(state.model.get_submodule(path), a) for a in (front_attr, back_attr) if a}

    def override(
        model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        m = model.get_submodule(path)
        new = list(base)
        if front_attr is not None:
            new[2 * k] = base[2 * k] + getattr(m, front_attr) - attr_values[front_attr]
        if back_attr is not None:
            new[2 * k + 1] = base[2 * k + 1] + getattr(m, back_attr) - attr_values[back_attr]
        rest = list(args)
        if len(rest) > 1:
            rest[1] = tuple(new)
        else:
            kwargs = {**kwargs, "pad": tuple(new)}
        return tuple(rest), kwargs

    state.overrides[node] = override


# ----------------------------------------------------------------------------- the built-in table


def _builtin(targets: Iterable[Any], rule: ChannelRule, *, preserves_shape: bool = False,
             raw: bool = True, any_dim: bool = False, same_forward: bool = False) -> None:  # fmt: skip
    for t in targets:
        _register(t, RuleEntry(rule, preserves_shape, raw=raw, any_dim=any_dim, same_forward=same_forward))


_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)  # fmt: skip
_SPATIAL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
)  # fmt: skip
_ELEMENTWISE_FUNCS: tuple[Any, ...] = (
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardsigmoid, F.hardtanh, F.softplus, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, torch.clamp,
    torch.abs, torch.neg, torch.exp, torch.square, torch.sqrt,
)  # fmt: skip
_SPATIAL_FUNCS: tuple[Any, ...] = (
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.interpolate, F.upsample,
)  # fmt: skip
_ELEMENTWISE_METHODS = (
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min", "clamp_max",
    "contiguous", "clone", "detach", "abs", "neg", "exp", "square", "sqrt", "float", "half", "double",
    "to", "type_as",
)  # fmt: skip
_BROADCAST_FUNCS: tuple[Any, ...] = (
    operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
    operator.truediv, operator.itruediv, torch.add, torch.mul, torch.sub, torch.div, torch.maximum,
    torch.minimum, torch.where,
)  # fmt: skip
_BROADCAST_METHODS = ("add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "expand_as")

_builtin(_ELEMENTWISE_MODULES, _elementwise_rule, preserves_shape=True, any_dim=True)
_builtin(_SPATIAL_MODULES, _elementwise_rule)
_builtin([nn.modules.conv._ConvNd], _conv_rule)
_builtin([nn.Linear], _linear_rule, any_dim=True)
_builtin([nn.modules.batchnorm._BatchNorm], _batchnorm_rule, preserves_shape=True)
_builtin([nn.LayerNorm], _layernorm_rule, preserves_shape=True, any_dim=True, same_forward=True)
_builtin([nn.PReLU], _prelu_rule, preserves_shape=True)
_builtin([nn.Flatten], _flatten_module_rule)
_builtin([nn.modules.padding._ConstantPadNd], _constant_pad_module_rule)
_builtin(_ELEMENTWISE_FUNCS, _unary_rule, any_dim=True)
_builtin(_ELEMENTWISE_METHODS, _unary_rule, any_dim=True)
_builtin(_SPATIAL_FUNCS, _unary_rule)
_builtin(_BROADCAST_FUNCS, _broadcast_rule, any_dim=True)
_builtin(_BROADCAST_METHODS, _broadcast_rule, any_dim=True)
_builtin([torch.flatten, torch.reshape, "flatten", "view", "reshape", "squeeze", "unsqueeze"], _reshape_rule)
_builtin([torch.mean, torch.sum, torch.amax, torch.amin, "mean", "sum", "amax", "amin"], _reduce_rule)
_builtin([torch.cat, torch.concat, torch.concatenate], _cat_rule)
_builtin([torch.chunk, "chunk", torch.split, "split"], _chunk_rule)
_builtin([operator.getitem], _getitem_rule, any_dim=True)
_builtin([torch.permute, "permute", torch.transpose, "transpose"], _permute_rule, any_dim=True)
_builtin([F.layer_norm], _layer_norm_fn_rule, any_dim=True)
_builtin([F.pad], _pad_rule, any_dim=True)


def register_torchvision_rules() -> None:
    """Rules for torchvision's pure functions (``stochastic_depth``); called once when a graph is built."""
    if _TORCHVISION_DONE:
        return
    _TORCHVISION_DONE.append(True)
    try:
        from torchvision.ops import stochastic_depth
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return
    if stochastic_depth not in _FUNCTION_RULES:
        _builtin([stochastic_depth], _unary_rule, preserves_shape=True, any_dim=True)


_TORCHVISION_DONE: list[bool] = []

NON_TENSOR_METHODS = {"size", "dim", "numel", "type", "__len__"}
