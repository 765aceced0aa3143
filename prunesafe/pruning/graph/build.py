"""Building the channel graph: trace the model (eval and train mode), apply the rules node by node.

Examples
--------
>>> import torch
>>> from prunesafe.models import cifar_vgg
>>> graph = build_channel_graph(cifar_vgg(11), torch.rand(1, 3, 32, 32))
>>> sum(g.prunable for g in graph.groups())
8
"""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from prunesafe._utils import as_input_tuple
from prunesafe.pruning.graph import rules
from prunesafe.pruning.graph.channel_graph import ChannelGraph, _Trace
from prunesafe.pruning.graph.rules import (
    NON_TENSOR_METHODS,
    BuildState,
    RuleContext,
    output_channel_dim,
    register_torchvision_rules,
    rule_for_call,
    rule_for_module,
)
from prunesafe.pruning.graph.tracing import (
    TRACE_HELP,
    PropagationError,
    Tracer,
    output_shapes,
    propagate,
    to_meta,
)

__all__ = ["build_channel_graph"]

# built-in rules that look at split channel dimensions (grids) themselves
_GRID_AWARE = {
    rules._unary_rule, rules._elementwise_rule, rules._reshape_rule, rules._permute_rule,
    rules._broadcast_rule, rules._cat_rule, rules._getitem_rule, rules._pad_rule, rules._chunk_rule,
    rules._flatten_module_rule,
}  # fmt: skip


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    return False


def _relate(state: BuildState, node: fx.Node, opaque: dict[str, str]) -> None:
    """Declare the channel relations of one traced node."""
    graph, env, blocks = state.graph, state.env, state.blocks
    op, target = node.op, node.target
    out = blocks.get(node)
    arg_nodes = rules._flat_tensor_nodes((node.args, node.kwargs))
    tensor_args = [n for n in arg_nodes if n in blocks or n in state.grids]

    def barrier_all(reason: str) -> None:
        for n in tensor_args:
            graph._barrier(blocks.get(n), reason)
            if n in state.grids:
                graph._barrier(state.grids[n].ravel(), reason)
        graph._barrier(out, reason)

    if op == "placeholder":
        graph._barrier(out, "model input channels cannot be removed")
        return
    if op == "output":
        barrier_all("channel reaches the model output (its shape must not change)")
        return
    if op == "get_attr":
        graph._barrier(out, f"constant tensor {target!r} has a fixed channel count")
        return

    if op == "call_module":
        module = state.module(str(target))
        entry = rule_for_module(module)
        if entry is None:
            if str(target) in opaque:
                barrier_all(f"module {target!r} cannot be traced ({opaque[str(target)]})")
            else:
                barrier_all(f"no channel rule for module {target!r} ({type(module).__name__}); register one")
            return
        name = str(target)
        call_target: Any = module
    else:
        if op == "call_method" and target in NON_TENSOR_METHODS:
            return
        if op == "call_function" and target is getattr and out is None:
            return
        entry = rule_for_call(op == "call_method", target)
        if entry is None:
            if out is None and not tensor_args and not _holds_tensor(env[node]):
                return  # arithmetic on sizes
            barrier_all(
                f"unknown operation {node.name!r} ({getattr(target, '__name__', target)}): teach it with "
                "prunesafe.pruning.register_channel_rule"
            )
            return
        if (
            out is None
            and not tensor_args
            and not _holds_tensor(env[node])
            and not any(n in state.pieces for n in arg_nodes)
        ):
            return
        name = node.name
        call_target = target
        module = None
    if out is None and _holds_tensor(env[node]) and not (entry.raw and entry.rule is rules._chunk_rule):
        barrier_all(f"{name!r} returns {type(env[node]).__name__} whose channels are not tracked")
        return
    if not entry.any_dim and any(state.cdims.get(n, 1) != 1 for n in tensor_args):
        barrier_all(f"{name!r} receives channels that are not at dimension 1 (e.g. channels-last)")
        return
    if entry.rule not in _GRID_AWARE and any(n in state.grids for n in tensor_args):
        barrier_all(f"{name!r} receives a split channel dimension")
        return
    ctx = RuleContext(state, node, name, module)
    if not entry.raw:
        positional = [a for a in node.args if isinstance(a, fx.Node)]
        for n in tensor_args:  # tensors passed by keyword or nested: the rule cannot see them
            if n not in positional:
                graph._barrier(blocks.get(n), f"{name!r} receives a tensor the rule does not see")
    entry.rule(call_target, ctx)


def _modes(model: nn.Module) -> dict[nn.Module, bool]:
    return {m: m.training for m in model.modules()}


def _set_modes(flags: dict[nn.Module, bool], value: bool | None = None) -> None:
    for m, flag in flags.items():
        m.training = flag if value is None else value


def _trace(model: nn.Module) -> tuple[fx.Graph, dict[str, str]]:
    tracer = Tracer()
    try:
        fx_graph = tracer.trace(model)
        fx_graph.lint()
    except Exception as err:  # fx raises TraceError, TypeError, NotImplementedError, ...
        raise ValueError(TRACE_HELP.format(err=f"{type(err).__name__}: {err}")) from err
    return fx_graph, tracer.opaque


_BRANCHES_ON_MODE = re.compile(r"\bif\b[^\n]*\btraining\b|\btraining\b[^\n]*\belse\b")
_MODE_DEPENDENT: dict[type, bool] = {}


def _branches_on_mode(model: nn.Module) -> bool:
    """Whether a traced (non-leaf) module class branches on ``training`` (in any of its methods).

    Classes whose source cannot be read count as branching (the other mode is traced).
    """
    for module in model.modules():
        klass = type(module)
        if rule_for_module(module) is not None:
            continue  # a leaf: its forward is not traced
        found = _MODE_DEPENDENT.get(klass)
        if found is None:
            try:
                found = bool(_BRANCHES_ON_MODE.search(inspect.getsource(klass)))
            except (OSError, TypeError):
                found = True
            _MODE_DEPENDENT[klass] = found
        if found:
            return True
    return False


def _signature(fx_graph: fx.Graph) -> list[tuple[str, str]]:
    return [(n.op, str(n.target)) for n in fx_graph.nodes]


def _propagation_error(model: nn.Module, inputs: tuple[Any, ...], err: PropagationError) -> ValueError:
    """Blame example_inputs only when the model itself does not run on them."""
    flags = _modes(model)
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    except Exception as eager:  # the inputs do not fit the model
        return ValueError(
            f"the model does not run on example_inputs ({type(eager).__name__}: {eager}); pass inputs of "
            "the shape and dtype the forward expects, e.g. example_inputs=torch.rand(1, 3, H, W)"
        )
    finally:
        _set_modes(flags)
    return ValueError(
        f"the model runs on example_inputs, but the channel graph's shape propagation failed at {err.where} "
        f"({type(err.error).__name__}: {err.error}). This is a limitation of the channel graph, not of "
        "your inputs: register a channel rule for that module or function "
        "(prunesafe.pruning.register_channel_rule), or use method='unstructured'."
    )


def build_channel_graph(model: nn.Module, example_inputs: Any) -> ChannelGraph:
    """Trace ``model`` and build its channel dependency graph.

    The model is traced in its current mode and, when the forward of one of its (traced)
    module classes branches on ``training`` (``if self.training:`` such as GoogLeNet's
    auxiliary heads, or a conditional expression on it), in the other mode too: the graph is
    the union, so a pruned model runs in ``train()`` and ``eval()`` alike.  The module flags
    are restored afterwards.

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
        The model cannot be traced (data-dependent control flow, ...), or does not run on
        ``example_inputs``.

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
    if example_inputs is None:
        raise TypeError(
            "example_inputs is required for structured pruning (the model is traced with it): pass "
            "example_inputs=torch.rand(1, 3, 32, 32) or a tuple of the forward's positional inputs"
        )
    inputs = as_input_tuple(example_inputs)
    register_torchvision_rules()
    flags = _modes(model)
    current = "train" if model.training else "eval"
    traces: list[tuple[str, fx.Graph, dict[str, str]]] = [(current, *_trace(model))]
    other = "eval" if current == "train" else "train"
    other_trace: tuple[fx.Graph, dict[str, str]] | None = None
    try:
        if _branches_on_mode(model):
            _set_modes(flags, not model.training)
            other_trace = _trace(model)
    except ValueError as err:
        cause = err.__cause__ or err
        warnings.warn(
            f"the model cannot be traced in {other} mode ({type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else ''}); its channel graph covers {current} mode "
            f"only, so code that runs only in {other} mode is not resized",
            UserWarning,
            stacklevel=2,
        )
    finally:
        _set_modes(flags)
    if other_trace is not None and _signature(other_trace[0]) != _signature(traces[0][1]):
        traces.append((other, *other_trace))
    opaque_all: dict[str, str] = {}
    for _, _, opaque in traces:
        opaque_all.update(opaque)
    if opaque_all:
        warnings.warn(
            "these submodules could not be traced by torch.fx and are treated as opaque layers whose "
            f"channels are never pruned: {opaque_all}. Register a channel rule for them "
            "(prunesafe.pruning.graph.register_channel_rule) to prune through them.",
            UserWarning,
            stacklevel=2,
        )

    graph = ChannelGraph(model)
    graph.opaque_modules = opaque_all
    meta_inputs = tuple(to_meta(inputs))
    for mode, fx_graph, opaque in traces:
        state = BuildState(graph, model)

        def visit(node: fx.Node, env: dict[fx.Node, Any], state: BuildState = state,
                  opaque: dict[str, str] = opaque) -> None:  # fmt: skip
            state.env = env
            value = env[node]
            if node.op != "output" and isinstance(value, torch.Tensor) and value.dim() >= 2:
                cdim = output_channel_dim(state, node) if node.op not in ("placeholder", "get_attr") else 1
                state.cdims[node] = cdim
                state.blocks[node] = graph._alloc(int(value.shape[cdim]))
            _relate(state, node, opaque)

        try:
            env = propagate(model, fx_graph, meta_inputs, opaque, visit)
        except PropagationError as err:
            raise _propagation_error(model, inputs, err) from err.error
        except (ValueError, TypeError) as err:
            if "example_inputs" in str(err):
                raise
            raise ValueError(TRACE_HELP.format(err=f"{type(err).__name__}: {err}")) from err
        graph._traces.append(_Trace(fx_graph, meta_inputs, output_shapes(fx_graph, env), mode,
                                    state.overrides, opaque))  # fmt: skip
    graph._finish()
    return graph
