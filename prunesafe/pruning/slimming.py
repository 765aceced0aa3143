"""Sparsity regulariser for the training phase of network slimming (Liu et al. 2017).

Network slimming trains with an L1 penalty ``λ Σ |γ|`` on the BatchNorm scaling factors γ,
which drives the γ of unimportant channels towards zero; ``prune_model(model, "channel",
ratio)`` then removes the channels with the smallest ``|γ|``.  Liu et al. use ``λ = 1e-4``
(VGG, ResNet on CIFAR) and apply the penalty as the sub-gradient ``λ sign(γ)`` added to
``γ.grad`` after ``backward()``.

Two equivalent ways to apply it:

* as a loss term -- ``loss = criterion(...) + slimming_penalty(model, 1e-4)`` (autograd gives
  exactly ``λ sign(γ)``, with ``sign(0) = 0``);
* as a gradient edit -- ``SlimmingRegularizer(1e-4)(model)`` between ``loss.backward()`` and
  ``optimizer.step()``, or registered once with
  :meth:`SlimmingRegularizer.register_step_hook`, which is cheaper (no extra autograd graph).

Examples
--------
>>> import torch
>>> from prunesafe.models import cifar_vgg
>>> model = cifar_vgg(11)
>>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
>>> handle = SlimmingRegularizer(1e-4).register_step_hook(optimizer, model)
>>> loss = model(torch.rand(4, 3, 32, 32)).logsumexp(1).mean()
>>> loss.backward()
>>> optimizer.step()   # γ.grad got + 1e-4 · sign(γ) just before the update
>>> handle.remove()
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["SlimmingRegularizer", "bn_scaling_factors_of", "slimming_penalty"]


def _check_strength(strength: Any) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise TypeError(f"strength must be a float >= 0 (λ, e.g. 1e-4), got {type(strength).__name__}")
    value = float(strength)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"strength must be a finite float >= 0 (λ, e.g. 1e-4), got {value}")
    return value


def bn_scaling_factors_of(model: nn.Module) -> list[torch.Tensor]:
    """The trainable BatchNorm weights γ of ``model`` (affine ``BatchNorm1d/2d/3d`` layers).

    Raises ``ValueError`` when there are none: network slimming needs BatchNorm layers.

    Examples
    --------
    >>> from prunesafe.models import cifar_resnet
    >>> len(bn_scaling_factors_of(cifar_resnet(20)))
    19
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    gammas: list[torch.Tensor] = [
        m.weight
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and isinstance(m.weight, torch.Tensor)
        and m.weight.requires_grad
    ]
    if not gammas:
        raise ValueError(
            f"{type(model).__name__} has no trainable affine BatchNorm layers; network slimming penalises "
            "BN scaling factors, so build the model with BatchNorm (e.g. cifar_vgg(16, batch_norm=True))"
        )
    return gammas


def slimming_penalty(model: nn.Module, strength: float) -> torch.Tensor:
    """``strength · Σ |γ|`` over all BatchNorm scaling factors, differentiable (add it to the loss).

    Parameters
    ----------
    model : nn.Module
        A model with affine BatchNorm layers.
    strength : float
        λ ≥ 0 (Liu et al. use 1e-4 on CIFAR; 1e-5 for VGG without pre-training sparsity).

    Returns
    -------
    torch.Tensor
        A scalar on the device and dtype of the γ tensors.

    Examples
    --------
    >>> from torch import nn
    >>> bn = nn.BatchNorm2d(4)
    >>> slimming_penalty(nn.Sequential(bn), 0.5)
    tensor(2., grad_fn=<MulBackward0>)
    """
    strength = _check_strength(strength)
    gammas = bn_scaling_factors_of(model)
    total = torch.stack([g.abs().sum() for g in gammas]).sum()
    return total * strength


class SlimmingRegularizer:
    """Adds the slimming sub-gradient ``strength · sign(γ)`` to every BatchNorm ``γ.grad``.

    Parameters
    ----------
    strength : float
        λ ≥ 0.

    Notes
    -----
    Call it as ``regularizer(model)`` after ``loss.backward()`` and before ``optimizer.step()``
    (``prunesafe.models.fit(..., params_hook=SlimmingRegularizer(1e-4))`` does exactly
    that), or register it once with :meth:`register_step_hook`.  :meth:`penalty` gives the
    equivalent loss term for code that only accepts a loss regulariser
    (``fit(..., regularizer=SlimmingRegularizer(1e-4).penalty)``).  A γ without a gradient
    (its layer did not take part in the forward) gets ``strength · sign(γ)`` as its gradient.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> bn = nn.BatchNorm1d(3)
    >>> with torch.no_grad():
    ...     _ = bn.weight.copy_(torch.tensor([0.5, -2.0, 0.0]))
    >>> SlimmingRegularizer(0.1)(nn.Sequential(bn))
    >>> bn.weight.grad
    tensor([ 0.1000, -0.1000,  0.0000])
    """

    def __init__(self, strength: float) -> None:
        self.strength = _check_strength(strength)

    def __call__(self, model: nn.Module) -> None:
        """Add ``strength · sign(γ)`` to the gradient of every BatchNorm γ of ``model``."""
        with torch.no_grad():
            for gamma in bn_scaling_factors_of(model):
                step = torch.sign(gamma) * self.strength
                if gamma.grad is None:
                    gamma.grad = step
                else:
                    gamma.grad.add_(step)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """The equivalent loss term, :func:`slimming_penalty` ``(model, strength)``."""
        return slimming_penalty(model, self.strength)

    def register_step_hook(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> RemovableHandle:
        """Apply the regulariser automatically before every ``optimizer.step()``.

        Returns the handle of :meth:`torch.optim.Optimizer.register_step_pre_hook`; call
        ``handle.remove()`` to stop.  The γ of ``model`` must be among the optimizer's
        parameters, otherwise ``ValueError``.
        """
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        gammas = bn_scaling_factors_of(model)
        optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = sum(id(g) not in optimized for g in gammas)
        if missing:
            raise ValueError(
                f"{missing} of the model's {len(gammas)} BatchNorm weights are not optimised by this "
                "optimizer; build it from model.parameters()"
            )

        def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self(model)

        return optimizer.register_step_pre_hook(hook)

    def __repr__(self) -> str:
        return f"SlimmingRegularizer(strength={self.strength})"
