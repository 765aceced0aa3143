"""Temperature scaling: recovers a known T, lowers NLL, matches a brute-force 1-D search."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import minimize_scalar
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunesafe.metrics import (
    TemperatureScaledModel,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)


def _tempered(
    t_true: float, n: int = 20_000, k: int = 10, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(n, k, generator=g) * 2.0
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=g).squeeze(1)
    return true_logits * t_true, labels


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_recovers_known_temperature(t_true: float) -> None:
    logits, labels = _tempered(t_true)
    t = fit_temperature(logits, labels)
    assert t > 0
    assert t == pytest.approx(t_true, rel=0.05)
    before = negative_log_likelihood(logits, labels)
    after = negative_log_likelihood(logits / t, labels)
    assert after <= before + 1e-12
    if t_true != 1.0:
        assert expected_calibration_error(logits / t, labels) < expected_calibration_error(logits, labels)


def test_is_the_exact_minimiser() -> None:
    logits, labels = _tempered(1.7, n=5000, seed=1)
    t = fit_temperature(logits, labels)
    z = logits.double()

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / math.exp(log_t), labels))

    ref = minimize_scalar(nll, bounds=(-3, 3), method="bounded", options={"xatol": 1e-10})
    assert math.log(t) == pytest.approx(ref.x, abs=1e-6)
    assert nll(math.log(t)) <= ref.fun + 1e-12


def test_probs_inputs_and_float64() -> None:
    logits, labels = _tempered(2.0, n=5000, seed=2)
    t_logits = fit_temperature(logits, labels)
    t_probs = fit_temperature(torch.softmax(logits.double(), 1), labels, inputs="probs")
    assert t_probs == pytest.approx(t_logits, rel=1e-6)
    assert fit_temperature(logits.double(), labels) == pytest.approx(t_logits, rel=1e-9)


def test_optimum_outside_bounds_warns() -> None:
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])  # always right: NLL keeps falling as T -> 0
    with pytest.warns(UserWarning, match="T <= T_min"):
        assert fit_temperature(logits, torch.tensor([0, 1]), bounds=(0.1, 10.0)) == 0.1
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(logits, torch.tensor([0, 1]), bounds=(0.0, 10.0))


def test_scaled_model_and_fit_from_loader() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 5))
    with torch.no_grad():
        net[0].weight.mul_(10)  # over-confident
    x = torch.randn(2000, 8)
    y = torch.multinomial(torch.softmax(net(x) / 10, 1), 1).squeeze(1).detach()
    loader = DataLoader(TensorDataset(x, y), batch_size=256)
    scaled = TemperatureScaledModel.fit(net, loader, progress=False)
    assert float(scaled.temperature) == pytest.approx(10.0, rel=0.15)
    with torch.no_grad():
        assert torch.allclose(scaled(x), net(x) / scaled.temperature)
    assert "temperature" in scaled.state_dict()
    with pytest.raises(ValueError, match="temperature"):
        TemperatureScaledModel(net, -1.0)
    with pytest.raises(ValueError, match="no batches"):
        TemperatureScaledModel.fit(net, [], progress=False)


def test_fit_restores_the_models_train_eval_mode() -> None:
    # regression: fit left the wrapped model in eval mode
    torch.manual_seed(0)
    data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    model[1].eval()  # a frozen BN inside a training model keeps its own flag
    running = model[1].running_mean.clone()
    TemperatureScaledModel.fit(model, data, progress=False)
    assert [m.training for m in model.modules()] == [True, True, False, True, True]
    assert torch.equal(model[1].running_mean, running)

    # fit itself must switch to eval mode: a BN left in *train* mode would update its running stats and
    # a Dropout would randomise the logits (the frozen BN above proves nothing about that)
    class Probe(nn.Module):
        seen: list[bool]

        def __init__(self) -> None:
            super().__init__()
            self.seen = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(self.training)
            return x

    probe = Probe()
    live = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), probe, nn.Dropout(0.5), nn.Linear(8, 3))
    live.train()
    live_running = live[1].running_mean.clone()
    TemperatureScaledModel.fit(live, data, progress=False)
    assert probe.seen == [False, False]  # every batch ran in eval mode
    assert torch.equal(live[1].running_mean, live_running)  # train-mode BN did not update
    assert all(m.training for m in live.modules())  # and train mode is back
    model.eval()
    TemperatureScaledModel.fit(model, data, progress=False)
    assert not any(m.training for m in model.modules())
    model.train()
    with pytest.raises(TypeError, match=r"\(inputs, labels\) pairs"):
        TemperatureScaledModel.fit(model, [torch.randn(2, 4)], progress=False)
    assert all(m.training for m in model.modules())  # restored after an error too
