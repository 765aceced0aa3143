"""Small private helpers shared by several subpackages (not public API)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["as_input_tuple", "module_device"]


def module_device(module: nn.Module) -> torch.device:
    """Device of the module's first parameter, else of its first buffer, else the CPU.

    Examples
    --------
    >>> module_device(nn.Linear(2, 2))
    device(type='cpu')
    """
    for param in module.parameters():
        return param.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


def as_input_tuple(example_inputs: Any, device: torch.device | None = None) -> tuple[Any, ...]:
    """Normalise example inputs to a tuple of positional arguments.

    A tensor or numpy array becomes a 1-tuple, a tuple/list stays a tuple; numpy arrays become
    tensors, and tensors move to ``device`` when one is given.  Anything else raises ``TypeError``.

    Examples
    --------
    >>> [x.shape for x in as_input_tuple(np.zeros((1, 3)))]
    [torch.Size([1, 3])]
    """
    if isinstance(example_inputs, (torch.Tensor, np.ndarray)):
        items: list[Any] = [example_inputs]
    elif isinstance(example_inputs, (tuple, list)):
        items = list(example_inputs)
    else:
        raise TypeError(
            "example_inputs must be a tensor, a numpy array or a tuple of the forward's positional inputs, "
            f"got {type(example_inputs).__name__}; pass e.g. example_inputs=torch.randn(1, 3, 32, 32)"
        )
    items = [torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in items]
    if device is not None:
        items = [x.to(device) if isinstance(x, torch.Tensor) else x for x in items]
    return tuple(items)
