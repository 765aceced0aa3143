"""Liu et al.'s channel selection: prune a pre-activation BatchNorm for its branch only.

In a pre-activation ResNet (``x + F(x)`` with ``F = conv(relu(bn(x)))``) the first BatchNorm
of every unit normalises the residual stream ``x`` itself, so removing its channels would
remove them from the stream.  Network slimming (Liu et al. 2017, their ``channel_selection``
layer) instead keeps that BN whole and selects, after it, the channels the branch still uses.
:class:`ChannelSelectionBatchNorm2d` is that BN plus selection in one module: a
``BatchNorm2d`` over all stream channels whose output keeps only the channels listed in its
``indices`` buffer.  The channel graph treats its *output* channels as prunable units scored by
the BN's ``|gamma|`` at ``indices`` (the stream side is left intact, as in Liu et al.), so
:class:`~prunesafe.pruning.ChannelPruner` removes them under the same global threshold as every
other BN channel.

:func:`add_channel_selection` converts a model's pre-activation BNs in place (module names,
parameters and ``state_dict`` keys stay; the new buffer is ``<name>.indices``).

Examples
--------
>>> import torch
>>> from prunesafe.models import cifar_preact_resnet
>>> model = cifar_preact_resnet(20)
>>> names = add_channel_selection(model, torch.rand(1, 3, 32, 32))
>>> names[:3]
['layer1.0.bn1', 'layer1.1.bn1', 'layer1.2.bn1']
>>> model.layer1[0].bn1.indices[:4]
tensor([0, 1, 2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunesafe.pruning.graph import RuleContext, build_channel_graph, register_channel_rule
from prunesafe.pruning.graph.channel_graph import ChannelSlot

__all__ = ["ChannelSelectionBatchNorm2d", "add_channel_selection", "slot_scaling_factors"]


class ChannelSelectionBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` over all input channels, then the channels in ``indices`` only.

    Parameters
    ----------
    num_features : int
        Channels of the input (the residual stream).
    **kwargs
        As for :class:`torch.nn.BatchNorm2d`.

    Attributes
    ----------
    indices : torch.Tensor
        Sorted int64 buffer of the selected input channels (all of them at first).  Pruning
        slices it; it is saved in the ``state_dict``.

    Examples
    --------
    >>> import torch
    >>> bn = ChannelSelectionBatchNorm2d(4).eval()
    >>> bn.indices = torch.tensor([0, 2])
    >>> bn(torch.rand(1, 4, 3, 3)).shape
    torch.Size([1, 2, 3, 3])
    """

    indices: torch.Tensor

    def __init__(self, num_features: int, **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        self.register_buffer("indices", torch.arange(num_features, dtype=torch.int64))

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> ChannelSelectionBatchNorm2d:
        """A selection BN that shares ``bn``'s parameters and statistics (all channels selected)."""
        if not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"bn must be an nn.BatchNorm2d, got {type(bn).__name__}")
        weight = bn.weight if bn.weight is not None else bn.running_mean
        new = cls(
            bn.num_features,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
            device=weight.device if weight is not None else None,
        )
        for name, param in bn._parameters.items():
            new._parameters[name] = param
        for name, buf in bn._buffers.items():
            new._buffers[name] = buf
        new.train(bn.training)
        return new

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        out = super().forward(input)
        return out.index_select(1, self.indices)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, selected={self.indices.numel()}"  # type: ignore[no-untyped-call]


def _selection_rule(module: nn.Module, ctx: RuleContext) -> None:
    x, out = ctx.inputs[0], ctx.output
    ctx.barrier(x, reason=f"{ctx.name!r} selects channels for its branch: the stream it reads stays intact")
    if out is None:
        return
    # the selected channels are the unit: scored by gamma[indices], removed by slicing indices
    ctx.add_slot("producer", out)
    ctx._graph._add_slot(ctx.name, "norm", out, (("indices", 0),), None, mask=_mask_selected)


def _mask_selected(module: nn.Module, idx: torch.Tensor) -> None:
    """Masked reference of removing selected channels ``idx``: zero the BN's gamma/beta there."""
    assert isinstance(module, ChannelSelectionBatchNorm2d)
    channels = module.indices.index_select(0, idx.to(module.indices.device))
    for tensor in (module.weight, module.bias):
        if tensor is not None:
            tensor.data.index_fill_(0, channels.to(tensor.device), 0.0)


register_channel_rule(ChannelSelectionBatchNorm2d, _selection_rule)


def slot_scaling_factors(slot: ChannelSlot) -> torch.Tensor:
    """``|gamma|`` of the channels of a BatchNorm slot (the selected ones for a selection BN).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from prunesafe.pruning.graph import build_channel_graph
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    >>> graph = build_channel_graph(model, torch.rand(1, 3, 2, 2))
    >>> slot_scaling_factors(next(s for s in graph.slots if s.role == "norm")).shape
    torch.Size([4])
    """
    module = slot.module
    weight = getattr(module, "weight", None)
    gamma = (
        weight.detach().abs().float()
        if isinstance(weight, torch.Tensor)
        else torch.ones(int(getattr(module, "num_features")))  # noqa: B009
    )
    if isinstance(module, ChannelSelectionBatchNorm2d) and slot.tensors == (("indices", 0),):
        return gamma.index_select(0, module.indices.to(gamma.device))
    return gamma


def add_channel_selection(
    model: nn.Module, example_inputs: Any, *, layers: Sequence[str] | None = None
) -> list[str]:
    """Turn pre-activation BatchNorms into :class:`ChannelSelectionBatchNorm2d`, in place.

    Parameters
    ----------
    model : nn.Module
        Modified in place: each converted BN is replaced by a selection BN sharing its
        parameters (same name, same ``state_dict`` keys plus ``<name>.indices``).
    example_inputs : torch.Tensor, numpy.ndarray or tuple
        Used to trace the model (as for pruning).
    layers : list of str, optional
        BatchNorm2d names to convert.  Default: every BatchNorm2d that reads a tensor shared
        by several producing layers (a residual stream) -- in a pre-activation ResNet the first
        BN of every unit and the final BN, the layers Liu et al. follow with a selection.

    Returns
    -------
    list of str
        The converted module names, in model order.

    Raises
    ------
    ValueError
        ``layers`` names a module that is not a BatchNorm2d.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.models import cifar_preact_resnet
    >>> from prunesafe.pruning import prune_model
    >>> model = cifar_preact_resnet(20)
    >>> x = torch.rand(1, 3, 32, 32)
    >>> _ = add_channel_selection(model, x)
    >>> pruned = prune_model(model, "channel", 0.3, example_inputs=x, inplace=True)
    >>> bn = pruned.layer2[0].bn1
    >>> bn.num_features, bn.indices.numel() == pruned.layer2[0].conv1.in_channels
    (16, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    bns = {n: m for n, m in model.named_modules() if type(m) is nn.BatchNorm2d}
    if layers is not None:
        if isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
            raise TypeError(f"layers must be a list of BatchNorm2d names, got {layers!r}")
        unknown = [n for n in layers if n not in bns]
        if unknown:
            raise ValueError(
                f"layers: {unknown} are not nn.BatchNorm2d modules of the model; valid: {sorted(bns)}"
            )
        chosen = set(layers)
    else:
        graph = build_channel_graph(model, example_inputs)
        chosen = set()
        for group in graph.groups():
            if len(group.producers) > 1:
                chosen.update(graph.slots[i].module_name for i in group.norms)
        chosen &= set(bns)
    names = [n for n in bns if n in chosen]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, attr, ChannelSelectionBatchNorm2d.from_batchnorm(bns[name]))
    return names
