"""Pruning: unstructured (masks), filter and channel (structural) pruning behind one call.

Examples
--------
>>> from prunesafe.models import cifar_resnet
>>> from prunesafe.pruning import prune_model, registered_pruners
>>> "unstructured" in registered_pruners()
True
>>> pruned = prune_model(cifar_resnet(20), "unstructured", 0.5)
"""

from prunesafe.pruning.api import PruningRecord, get_record, prune_model
from prunesafe.pruning.base import Pruner, get_pruner, register_pruner, registered_pruners, unregister_pruner
from prunesafe.pruning.graph import (
    ChannelGraph,
    ChannelGroup,
    build_channel_graph,
    register_channel_rule,
    unregister_channel_rule,
)
from prunesafe.pruning.report import LayerReport, PruningReport, count_macs, pruning_report
from prunesafe.pruning.selection import ChannelSelectionBatchNorm2d, add_channel_selection
from prunesafe.pruning.serialization import describe_architecture, load_pruned, save_pruned
from prunesafe.pruning.slimming import SlimmingRegularizer, slimming_penalty
from prunesafe.pruning.structured import ChannelPruner, FilterPruner, PruningVerificationError
from prunesafe.pruning.unstructured import UnstructuredPruner, finalize, is_pruned, sparsity

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "ChannelPruner",
    "ChannelSelectionBatchNorm2d",
    "FilterPruner",
    "LayerReport",
    "Pruner",
    "PruningRecord",
    "PruningReport",
    "PruningVerificationError",
    "SlimmingRegularizer",
    "UnstructuredPruner",
    "add_channel_selection",
    "build_channel_graph",
    "count_macs",
    "describe_architecture",
    "finalize",
    "get_pruner",
    "get_record",
    "is_pruned",
    "load_pruned",
    "prune_model",
    "pruning_report",
    "register_channel_rule",
    "register_pruner",
    "registered_pruners",
    "save_pruned",
    "slimming_penalty",
    "sparsity",
    "unregister_channel_rule",
    "unregister_pruner",
]
