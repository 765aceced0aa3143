"""Network-slimming regulariser: penalty, sub-gradient, step hook, and effect on γ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunesafe.models import cifar_resnet
from prunesafe.pruning.slimming import SlimmingRegularizer, bn_scaling_factors_of, slimming_penalty


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.BatchNorm2d(6), nn.ReLU()
    ).append(nn.Flatten()).append(nn.Linear(6 * 4 * 4, 3))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(-1, 1)
    return net


def test_penalty_value() -> None:
    net = _net()
    expected = 1e-2 * (net[1].weight.abs().sum() + net[4].weight.abs().sum())
    assert torch.allclose(slimming_penalty(net, 1e-2), expected)
    assert slimming_penalty(net, 0.0).item() == 0.0
    assert slimming_penalty(net, 1e-2).requires_grad


def test_subgradient_equals_autograd_gradient_of_penalty() -> None:
    net = _net()
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    # loss-term mode
    (nn.functional.cross_entropy(net(x), y) + slimming_penalty(net, 0.3)).backward()
    by_autograd = [g.grad.clone() for g in bn_scaling_factors_of(net)]
    net.zero_grad()
    # gradient-edit mode
    nn.functional.cross_entropy(net(x), y).backward()
    SlimmingRegularizer(0.3)(net)
    for gamma, expected in zip(bn_scaling_factors_of(net), by_autograd, strict=True):
        assert torch.allclose(gamma.grad, expected, atol=1e-7)
    # γ exactly 0: both give 0 (sign(0) = 0)
    with torch.no_grad():
        net[1].weight[0] = 0.0
    net.zero_grad()
    slimming_penalty(net, 0.3).backward()
    assert net[1].weight.grad[0] == 0.0
    net.zero_grad(set_to_none=True)
    SlimmingRegularizer(0.3)(net)  # grads were None: the sub-gradient becomes the gradient
    assert net[1].weight.grad[0] == 0.0
    assert torch.equal(net[4].weight.grad, 0.3 * torch.sign(net[4].weight))


def test_step_hook_drives_gamma_towards_zero() -> None:
    net = _net()
    start = torch.cat([g.detach().abs().clone() for g in bn_scaling_factors_of(net)])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    handle = SlimmingRegularizer(0.5).register_step_hook(optimizer, net)
    for _ in range(5):
        optimizer.zero_grad()
        net(torch.rand(2, 3, 8, 8)).sum().mul(0.0).backward()  # data gradient 0: only the penalty acts
        optimizer.step()
    after = torch.cat([g.detach().abs() for g in bn_scaling_factors_of(net)])
    # each step moves |γ| by lr·λ = 0.025 towards 0 (or oscillates within 0.025 of it)
    expected = torch.clamp(start - 5 * 0.025, min=0)
    assert torch.all(after <= torch.maximum(expected, torch.full_like(expected, 0.025)) + 1e-6)
    assert after.sum() < start.sum() - 0.5
    handle.remove()
    before = torch.cat([g.detach().clone() for g in bn_scaling_factors_of(net)])
    optimizer.zero_grad()
    net(torch.rand(2, 3, 8, 8)).sum().mul(0.0).backward()
    optimizer.step()
    assert torch.equal(torch.cat([g.detach() for g in bn_scaling_factors_of(net)]), before)


def test_works_with_models_fit_params_hook_and_regularizer() -> None:
    import dataclasses

    from prunesafe.models.training import FINETUNE, fit

    rng = np.random.default_rng(0)
    data = (rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 16))
    recipe = dataclasses.replace(FINETUNE, epochs=1, batch_size=8)
    model = cifar_resnet(8)
    before = torch.cat([g.detach().abs().clone() for g in bn_scaling_factors_of(model)]).sum()
    fit(model, data, recipe=recipe, progress=False, params_hook=SlimmingRegularizer(1.0))
    assert torch.cat([g.detach().abs() for g in bn_scaling_factors_of(model)]).sum() < before
    history = fit(model, data, recipe=recipe, progress=False, regularizer=SlimmingRegularizer(1e-4).penalty)
    assert history[0]["train_reg"] > 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="no trainable affine BatchNorm"):
        slimming_penalty(nn.Sequential(nn.Conv2d(1, 1, 1)), 1e-4)
    with pytest.raises(ValueError, match="strength must be a finite float >= 0"):
        SlimmingRegularizer(-1e-4)
    with pytest.raises(ValueError, match="strength"):
        slimming_penalty(_net(), float("nan"))
    with pytest.raises(TypeError, match="strength"):
        SlimmingRegularizer("1e-4")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be"):
        slimming_penalty("net", 1e-4)  # type: ignore[arg-type]
    net = _net()
    with pytest.raises(ValueError, match="not optimised"):
        SlimmingRegularizer(1e-4).register_step_hook(torch.optim.SGD(net[0].parameters(), lr=0.1), net)
    with pytest.raises(TypeError, match="optimizer"):
        SlimmingRegularizer(1e-4).register_step_hook(None, net)  # type: ignore[arg-type]
