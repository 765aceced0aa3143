"""Sweep: {CIFAR VGG-16, CIFAR ResNet-20, tv ResNet-18} × {unstructured, filter, channel} × {0, .5, .9}.

Every combination must run without a shape error, keep every layer non-empty, reach the asked
ratio within a stated tolerance and leave outputs identical at ratio 0; at ratio 0.5 the
pruned VGG-16 must equal independent references: the half-width VGG-16 architecture (filter), the
BN channels above the global k-th smallest |gamma| (channel), torch's count of masked weights.

Tolerances on ``achieved_ratio``:
* unstructured -- exact: ``round(ratio · n) / n`` of the targeted conv weights (|diff| ≤ 1/n);
* filter / channel -- ≤ 0.07: whole channels are removed, ``round(ratio · c)`` per layer (filter)
  or per global threshold (channel) with at least one channel kept per layer, so layers of 16
  channels at ratio 0.9 keep 2 (0.875) and rounding costs up to ``0.5 / c`` per layer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from prunesafe.models import cifar_resnet, cifar_vgg
from prunesafe.models.cifar_vgg import VGG_CONFIGS, CifarVGG
from prunesafe.pruning import prune_model, pruning_report
from prunesafe.pruning.unstructured import unstructured_targets

X = torch.rand(2, 3, 32, 32)
BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "cifar_vgg16": lambda: cifar_vgg(16),
    "cifar_resnet20": lambda: cifar_resnet(20),
    "tv_resnet18": lambda: torchvision.models.resnet18(weights=None, num_classes=10),
}
TOLERANCE = {"filter": 0.07, "channel": 0.07}


@functools.cache
def _original(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    with torch.no_grad():  # spread BN γ so that network slimming has something to rank
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.1, 1.0)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("method", ["unstructured", "filter", "channel"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_sweep(name: str, method: str, ratio: float) -> None:
    original = _original(name)
    pruned = prune_model(original, method, ratio, example_inputs=X[:1]).eval()
    with torch.no_grad():
        expected, out = original(X), pruned(X)
    assert out.shape == expected.shape
    assert torch.isfinite(out).all()
    record = pruned.prunesafe_pruning

    for module_name, module in pruned.named_modules():  # never an empty layer
        for attr in ("out_channels", "in_channels", "num_features", "in_features", "out_features"):
            assert getattr(module, attr, 1) > 0, f"{module_name}.{attr} is 0"
    if method == "unstructured":
        n = sum(m.weight_mask.numel() for _, m in unstructured_targets(pruned))
        assert abs(record.achieved_ratio - ratio) <= 1 / n
        for module_name, module in unstructured_targets(pruned):
            assert module.weight_mask.any(), f"{module_name} lost every weight"
    else:
        assert abs(record.achieved_ratio - ratio) <= TOLERANCE[method], record.achieved_ratio

    if ratio == 0.0:
        assert torch.equal(out, expected)

    if ratio != 0.5:
        return
    report = pruning_report(original, pruned, X[:1])
    assert report.params_after == sum(p.numel() for p in pruned.parameters())
    if method == "unstructured":
        n = sum(m.weight_mask.numel() for _, m in unstructured_targets(pruned))
        masked = sum(int((m.weight_mask == 0).sum()) for _, m in unstructured_targets(pruned))
        assert masked == round(0.5 * n)  # torch.nn.utils.prune's count
        assert report.nonzero_params_before - report.nonzero_params_after == masked
        return
    assert report.macs_after < report.macs_before
    if name != "cifar_vgg16":
        assert report.params_after < report.params_before
        return
    if method == "filter":
        # every conv of a plain VGG is prunable: each keeps half its filters, i.e. VGG-16 at half width
        half = [c if c == "M" else c // 2 for c in VGG_CONFIGS[16]]
        reference = CifarVGG(half, 10)
        reference.load_state_dict(pruned.state_dict(), strict=True)
        assert report.params_after == sum(p.numel() for p in reference.parameters())
    else:
        # network slimming: the BN channels above the k-th smallest |gamma| of ALL BN channels stay
        gammas = [m.weight.detach().abs() for m in original.modules() if isinstance(m, nn.BatchNorm2d)]
        everything = torch.cat(gammas)
        cut = everything.sort().values[round(0.5 * len(everything)) - 1]
        kept = [m.num_features for m in pruned.modules() if isinstance(m, nn.BatchNorm2d)]
        assert kept == [max(int((g > cut).sum()), 1) for g in gammas]
