"""Channel importance scores used by the structured pruners.

* :func:`filter_norms` -- the L1 (Li et al. 2017) or L2 norm of each filter of a conv;
* :func:`bn_scaling_factors` -- ``|gamma|`` of a BatchNorm (network slimming, Liu et al. 2017);
* :func:`component_scores` -- aggregate per-slot scores over the channel components of a
  :class:`~prunesafe.pruning.graph.ChannelGraph` (the mean over the layers sharing a
  component, so that coupled channels are comparable with uncoupled ones).

Examples
--------
>>> import torch
>>> from torch import nn
>>> conv = nn.Conv2d(2, 3, 1, bias=False)
>>> with torch.no_grad():
...     _ = conv.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 0.5, 0.0, 3.0]).view(3, 2, 1, 1))
>>> filter_norms(conv.weight)
tensor([3., 1., 3.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from prunesafe.pruning.graph import ChannelGraph

__all__ = ["Norm", "bn_scaling_factors", "component_scores", "filter_norms"]

Norm = Literal["l1", "l2"]


def filter_norms(weight: torch.Tensor, dim: int = 0, norm: Norm = "l1") -> torch.Tensor:
    """Norm of every slice of ``weight`` along ``dim`` (one value per filter).

    Parameters
    ----------
    weight : torch.Tensor
        A conv / Linear weight.
    dim : int, default 0
        The output-channel dimension (0 for ``Conv2d`` and ``Linear``, 1 for ``ConvTranspose2d``).
    norm : {"l1", "l2"}, default "l1"
        ``"l1"``: sum of absolute values, as in Li et al. 2017 ("Pruning Filters for Efficient
        ConvNets"); ``"l2"``: Euclidean norm.

    Returns
    -------
    torch.Tensor
        1-D float tensor of length ``weight.shape[dim]``.

    Examples
    --------
    >>> import torch
    >>> filter_norms(torch.tensor([[3.0, 4.0], [1.0, 0.0]]), norm="l2")
    tensor([5., 1.])
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f'norm must be "l1" or "l2", got {norm!r}')
    w = weight.detach().movedim(dim, 0).reshape(weight.shape[dim], -1).float()
    return w.abs().sum(1) if norm == "l1" else w.pow(2).sum(1).sqrt()


def bn_scaling_factors(bn: nn.Module) -> torch.Tensor:
    """``|gamma|`` of a BatchNorm layer (ones when it has no affine weight).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> bn = nn.BatchNorm2d(2)
    >>> with torch.no_grad():
    ...     _ = bn.weight.copy_(torch.tensor([-0.5, 2.0]))
    >>> bn_scaling_factors(bn)
    tensor([0.5000, 2.0000])
    """
    weight = getattr(bn, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight.detach().abs().float()
    num = getattr(bn, "num_features", None)
    if not isinstance(num, int):
        raise TypeError(f"expected a BatchNorm module, got {type(bn).__name__}")
    return torch.ones(num)


def component_scores(
    graph: ChannelGraph, slots: Sequence[int], scores: Sequence[torch.Tensor]
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.int64]]]:
    """Mean score of every channel component over the given slots.

    Parameters
    ----------
    graph : ChannelGraph
    slots : sequence of int
        Indices into ``graph.slots``.
    scores : sequence of torch.Tensor
        One 1-D tensor per slot with one score per channel of that slot.

    Returns
    -------
    (mean, count) : tuple of numpy.ndarray
        ``mean[c]`` is the mean score of component ``c`` over the slots containing it (NaN
        where none does); ``count[c]`` how many slot channels contributed.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from prunesafe.pruning.graph import build_channel_graph
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1))
    >>> g = build_channel_graph(model, torch.rand(1, 3, 2, 2))
    >>> producer = [i for i, s in enumerate(g.slots) if s.module_name == "0" and s.role == "producer"]
    >>> mean, count = component_scores(g, producer, [torch.arange(4.0)])
    >>> mean[g.slot_components(producer[0])].tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    if len(slots) != len(scores):
        raise ValueError(f"got {len(slots)} slots but {len(scores)} score tensors")
    n = graph.num_components
    comp_parts: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    value_parts: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    for index, score in zip(slots, scores, strict=True):
        comps = graph.slot_components(index)
        values = score.detach().cpu().double().numpy()
        if values.shape != comps.shape:
            raise ValueError(
                f"slot {graph.slots[index].module_name!r} has {len(comps)} channels, "
                f"got {values.shape} scores"
            )
        comp_parts.append(comps)
        value_parts.append(values)
    if comp_parts:
        all_comps = np.concatenate(comp_parts)
        total = np.asarray(
            np.bincount(all_comps, weights=np.concatenate(value_parts), minlength=n), dtype=np.float64
        )
        count = np.bincount(all_comps, minlength=n).astype(np.int64)
    else:
        total, count = np.zeros(n), np.zeros(n, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, count
