"""Channel dependency graph: which channels of which layers must be removed together.

The graph is built from the model itself.  :func:`build_channel_graph` traces the model
with :mod:`torch.fx` and propagates shapes on the ``meta`` device (no real computation, no
copy of the weights), then gives every channel of every traced tensor an *element* id.
Registered *rules* declare how each operation relates the channels of its inputs and output
(see :mod:`prunesafe.pruning.graph.rules` for the built-in table); anything without a rule is a
*barrier*: every channel touching it is marked unprunable, and so are the model's inputs and
outputs.  Elements tied together form a *component*: one channel that exists in several
tensors and must be removed from all of them at once.  Components linked through a common
producer form a :class:`ChannelGroup`, the unit a structured pruner works on.

The package is split by concern, so that teaching the engine a new op is one edit in one file:

* :mod:`~prunesafe.pruning.graph.tracing` -- fx tracing and ``meta`` shape propagation;
* :mod:`~prunesafe.pruning.graph.rules` -- op semantics: :func:`register_channel_rule` for
  module types, functions and tensor methods, :func:`unregister_channel_rule`, and the
  built-in rules;
* :mod:`~prunesafe.pruning.graph.channel_graph` -- slots, groups and the atomic removal;
* :mod:`~prunesafe.pruning.graph.build` -- :func:`build_channel_graph`, which traces eval and
  train mode (their union) and applies the rules node by node.

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

from prunesafe.pruning.graph.build import build_channel_graph
from prunesafe.pruning.graph.channel_graph import ChannelGraph, ChannelGroup, ChannelSlot, SlotRole
from prunesafe.pruning.graph.rules import (
    ChannelRule,
    RuleContext,
    register_channel_rule,
    unregister_channel_rule,
)

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "ChannelRule",
    "ChannelSlot",
    "RuleContext",
    "SlotRole",
    "build_channel_graph",
    "register_channel_rule",
    "unregister_channel_rule",
]
