"""Tracing: :mod:`torch.fx` symbolic tracing and shape propagation on the ``meta`` device.

Nothing here knows what an operation does to channels (that is :mod:`.rules`); this module
only turns a model into an fx graph and computes the shape of every node without running
real computation:

* :class:`Tracer` keeps every module type or function with a registered channel rule a leaf
  (one node), and turns a submodule whose forward cannot be traced into one *opaque* node;
* :func:`propagate` runs the fx graph on ``meta`` tensors (copies of the weights are never
  made: :func:`meta_shadow` shares the module structure with ``meta`` parameters);
* ``overrides`` let a rule recompute a node's constant arguments (a padding amount, a
  ``normalized_shape``) from the modules at check time, after their attributes changed.

The names are internal to :mod:`prunesafe.pruning.graph`.

Examples
--------
>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
>>> fx_graph = Tracer().trace(model)
>>> env = propagate(model, fx_graph, (torch.empty(1, 3, 8, 8, device="meta"),), {})
>>> [tuple(v.shape) for v in env.values() if isinstance(v, torch.Tensor)][-1]
(1, 4, 6, 6)
"""

from __future__ import annotations

import copy
import inspect
import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from prunesafe.pruning.graph.rules import function_targets, rule_for_call, rule_for_module

#: ``override(model, args, kwargs) -> (args, kwargs)``: a node's arguments recomputed at check time.
ArgOverride = Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]

TRACE_HELP = (
    "the model's forward cannot be analysed by torch.fx symbolic tracing ({err}). Untraceable code "
    "inside a submodule is handled (the submodule becomes an opaque layer that is left unpruned), "
    "but not in the top-level forward: move it into a submodule, or register a channel rule for "
    "the module or function (prunesafe.pruning.graph.register_channel_rule, it then stays a leaf), "
    'or use method="unstructured", which needs no graph.'
)


class PropagationError(RuntimeError):
    """Shape propagation failed at one node (``where``); ``error`` is the original exception."""

    def __init__(self, where: str, error: Exception) -> None:
        super().__init__(f"{where}: {type(error).__name__}: {error}")
        self.where = where
        self.error = error


class Tracer(fx.Tracer):
    """fx tracer: registered module types and functions are leaves; untraceable submodules are opaque.

    When tracing into a submodule fails (data-dependent control flow, ...), the nodes it
    created are erased and the module is recorded as one opaque ``call_module`` node.  It has
    no channel rule, so every channel touching it is a barrier: the rest of the model can
    still be pruned.  A failure in the top-level forward cannot be isolated and propagates.
    Plain Python functions with a registered rule (e.g. ``torchvision.ops.stochastic_depth``)
    are wrapped as one ``call_function`` node wherever a traced forward calls them by a global name.
    """

    def __init__(self) -> None:
        wrap = tuple(f for f in function_targets() if inspect.isfunction(f))
        super().__init__(autowrap_functions=wrap)
        self.opaque: dict[str, str] = {}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            module_qualified_name in self.opaque
            or rule_for_module(m) is not None
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


def to_meta(value: Any) -> Any:
    """``value`` with every tensor moved to the ``meta`` device (detached)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("meta")
    if isinstance(value, (tuple, list)):
        return type(value)(to_meta(v) for v in value)
    if isinstance(value, dict):
        return {k: to_meta(v) for k, v in value.items()}
    return value


def _materialise(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.zeros(value.shape, dtype=value.dtype, device=device) if value.is_meta else value
    if isinstance(value, (tuple, list)):
        return type(value)(_materialise(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _materialise(v, device) for k, v in value.items()}
    return value


def call_module_meta(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], *, real: bool = False
) -> Any:
    """Run ``module`` for its output shapes: on ``meta`` copies of its tensors, or (``real=True``,
    for untraceable modules whose control flow needs values) for real on zero inputs."""
    if real:
        tensor: torch.Tensor | None = next(iter(module.parameters()), None)
        if tensor is None:
            tensor = next(iter(module.buffers()), None)
        device = tensor.device if tensor is not None else torch.device("cpu")
        return to_meta(module(*_materialise(args, device), **_materialise(kwargs, device)))
    shadow = meta_shadow(module)
    for m in shadow.modules():  # shapes do not depend on the mode; eval avoids batch-size checks
        m.training = False
    return shadow(*args, **kwargs)


def meta_shadow(module: nn.Module, memo: dict[int, nn.Module] | None = None) -> nn.Module:
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
        shadow._modules = {k: None if v is None else meta_shadow(v, memo) for k, v in module._modules.items()}
    return shadow


def fetch_attr(model: nn.Module, target: str) -> Any:
    """``model.<a>.<b>...`` for a dotted ``target``."""
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def propagate(
    model: nn.Module,
    fx_graph: fx.Graph,
    meta_inputs: tuple[Any, ...],
    opaque: Mapping[str, str],
    visit: Callable[[fx.Node, dict[fx.Node, Any]], None] | None = None,
    *,
    opaque_model: nn.Module | None = None,
    overrides: Mapping[fx.Node, ArgOverride] | None = None,
) -> dict[fx.Node, Any]:
    """Run ``fx_graph`` with ``model``'s modules on ``meta`` inputs; the value of every node.

    Untraceable (``opaque``) submodules run for real on zero inputs, taken from
    ``opaque_model`` (default ``model``).  ``visit(node, env)`` is called after each node.
    ``overrides[node](model, args, kwargs)`` replaces a node's (loaded) arguments.
    """
    env: dict[fx.Node, Any] = {}
    placeholder_index = 0
    modules = dict(model.named_modules(remove_duplicate=False))

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
                env[node] = value
                if visit is not None:
                    visit(node, env)
                continue
            try:
                value = _evaluate(node, model, modules, env, load, opaque, opaque_model, overrides)
            except Exception as err:
                stack = node.meta.get("nn_module_stack")
                path = list(stack.values())[-1][0] if stack else ""
                where = f"node {node.name!r} ({getattr(node.target, '__name__', node.target)})" + (
                    f" in module {path!r}" if path else ""
                )
                raise PropagationError(where, err) from err
            env[node] = value
            if visit is not None:
                visit(node, env)
    return env


def _evaluate(
    node: fx.Node,
    model: nn.Module,
    modules: dict[str, nn.Module],
    env: dict[fx.Node, Any],
    load: Callable[[Any], Any],
    opaque: Mapping[str, str],
    opaque_model: nn.Module | None,
    overrides: Mapping[fx.Node, ArgOverride] | None,
) -> Any:
    op = node.op
    if op == "get_attr":
        value = to_meta(fetch_attr(model, str(node.target)))
    elif op in ("call_function", "call_method"):
        args, kwargs = load(node.args), load(node.kwargs)
        if overrides and node in overrides:
            args, kwargs = overrides[node](model, tuple(args), dict(kwargs))
        is_method = op == "call_method"
        entry = rule_for_call(is_method, node.target)
        value = None
        if entry is not None and entry.preserves_shape and args and isinstance(args[0], torch.Tensor):
            value = args[0]
        if value is None:
            value = _fast_shape(node.target, is_method, args, kwargs)
        if value is None:
            if is_method:
                self_obj, *rest = args
                value = getattr(self_obj, str(node.target))(*rest, **kwargs)
            else:
                value = node.target(*args, **kwargs)  # type: ignore[operator]
    elif op == "call_module":
        target = str(node.target)
        is_opaque = target in opaque
        source = opaque_model if is_opaque and opaque_model is not None else model
        module = modules.get(target) if source is model else None
        if module is None:
            module = source.get_submodule(target)
        module_entry = rule_for_module(module)
        args = load(node.args)
        value = None
        if module_entry is not None and args and isinstance(args[0], torch.Tensor) and not node.kwargs:
            if module_entry.preserves_shape:
                value = args[0]
            elif len(args) == 1 and not is_opaque:
                value = _module_fast_shape(module, args[0])
        if value is None:
            value = call_module_meta(module, args, load(node.kwargs), real=is_opaque)
    else:  # output
        value = load(node.args[0]) if node.args else None
    return value


def _module_fast_shape(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The meta output of a conv / Linear / adaptive pool from the formulas (None: run the module)."""
    shape: list[int] | None = None
    if type(module) in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        assert isinstance(module, nn.modules.conv._ConvNd)
        n = len(module.kernel_size)
        padding = module.padding
        if isinstance(padding, str) or x.dim() != n + 2 or x.shape[1] != module.in_channels:
            return None
        spatial = []
        for i in range(n):
            size = x.shape[2 + i] + 2 * padding[i] - module.dilation[i] * (module.kernel_size[i] - 1) - 1
            if size < 0:
                return None
            spatial.append(size // module.stride[i] + 1)
        shape = [x.shape[0], module.out_channels, *spatial]
    elif type(module) is nn.Linear:
        assert isinstance(module, nn.Linear)
        if x.dim() < 1 or x.shape[-1] != module.in_features:
            return None
        shape = [*x.shape[:-1], module.out_features]
    elif type(module) in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d) and x.dim() == 4:
        if getattr(module, "return_indices", False):
            return None
        size = getattr(module, "output_size")  # noqa: B009
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        shape = [
            x.shape[0],
            x.shape[1],
            *(x.shape[2 + i] if s is None else int(s) for i, s in enumerate(sizes)),
        ]
    if shape is None:
        return None
    return torch.empty(shape, dtype=x.dtype, device="meta")


def output_shapes(fx_graph: fx.Graph, env: dict[fx.Node, Any]) -> list[tuple[int, ...]]:
    """Shapes of the tensors the traced forward returns, in order."""
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
# ``contiguous`` is not here: on a transposed tensor it changes the strides, and a later ``view``
# depends on them (channel shuffle)
_SAME_SHAPE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clone", "detach"}
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
    if is_method and target == "contiguous" and first.is_contiguous():
        return first
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
