"""Unstructured L1 pruning: masks identical to torch.nn.utils.prune, fine-tuning keeps them, finalize."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from prunesafe.models import cifar_resnet, cifar_vgg
from prunesafe.pruning import finalize, is_pruned, prune_model, sparsity
from prunesafe.pruning.unstructured import UnstructuredPruner, unstructured_targets


def _masks(model: nn.Module, include_linear: bool = False) -> list[torch.Tensor]:
    return [m.weight_mask for _, m in unstructured_targets(model, include_linear=include_linear)]


def _tied(model: nn.Module) -> nn.Module:
    """Quantise weights to a few values so that many magnitudes tie (tests tie-breaking)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.round(p * 4) / 4)
    return model


@pytest.mark.parametrize(
    ("ratio", "include_linear", "tied"),
    [
        (0.0, False, False),
        (0.37, False, False),
        (0.9, True, False),
        (0.999, False, False),
        (0.37, True, True),
        (0.9, False, True),
    ],
)
def test_global_masks_identical_to_torch(ratio: float, include_linear: bool, tied: bool) -> None:
    torch.manual_seed(0)
    model = cifar_resnet(20)
    if tied:
        model = _tied(model)
    reference = copy.deepcopy(model)
    params = [(m, "weight") for _, m in unstructured_targets(reference, include_linear=include_linear)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=ratio)
    ours = prune_model(model, "unstructured", ratio, include_linear=include_linear)
    for a, b in zip(_masks(ours, include_linear), _masks(reference, include_linear), strict=True):
        assert a.dtype == b.dtype
        assert torch.equal(a, b)
    n = sum(m.numel() for m in _masks(ours, include_linear))
    targets = unstructured_targets(ours, include_linear=include_linear)
    zeros = sum(int((m.weight == 0).sum()) for _, m in targets)
    assert ours.prunesafe_pruning.achieved_ratio == zeros / n
    if not tied:  # random weights are never exactly zero: only the masked ones are
        assert zeros == round(ratio * n)


@pytest.mark.parametrize("ratio", [0.2, 0.75])
def test_layerwise_masks_identical_to_torch_l1_unstructured(ratio: float) -> None:
    torch.manual_seed(1)
    model = _tied(cifar_resnet(20))
    reference = copy.deepcopy(model)
    for _, m in unstructured_targets(reference):
        prune.l1_unstructured(m, "weight", amount=ratio)
    ours = prune_model(model, "unstructured", ratio, scope="layerwise")
    for a, b in zip(_masks(ours), _masks(reference), strict=True):
        assert torch.equal(a, b)
        assert (a == 0).sum() == round(ratio * a.numel())


def test_global_threshold_is_global_not_per_layer() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 2, bias=False), nn.Conv2d(1, 1, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2))
        model[1].weight.copy_(torch.tensor([10.0, 20.0, 30.0, 40.0]).view(1, 1, 2, 2))
    pruned = prune_model(model, "unstructured", 0.5)
    assert pruned[0].weight_mask.sum() == 0
    assert pruned[1].weight_mask.sum() == 4
    layerwise = prune_model(model, "unstructured", 0.5, scope="layerwise")
    assert layerwise[0].weight_mask.flatten().tolist() == [0, 0, 1, 1]
    assert layerwise[1].weight_mask.flatten().tolist() == [0, 0, 1, 1]


def test_targets_conv1d_conv3d_and_linear_only_when_asked() -> None:
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 6, 4))
    pruned = prune_model(model, "unstructured", 0.5)
    assert pruned.prunesafe_pruning.pruned_modules == ["0"]
    assert not hasattr(pruned[2], "weight_mask")
    pruned = prune_model(model, "unstructured", 0.5, include_linear=True)
    assert pruned.prunesafe_pruning.pruned_modules == ["0", "2"]
    conv3d = nn.Sequential(nn.Conv3d(1, 2, 2))
    assert prune_model(conv3d, "unstructured", 0.5).prunesafe_pruning.achieved_ratio == 0.5


def test_layers_selection_by_name_and_predicate() -> None:
    model = cifar_resnet(20)
    pruned = prune_model(model, "unstructured", 0.5, layers=["conv1", "layer1.0.conv1"])
    assert pruned.prunesafe_pruning.pruned_modules == ["conv1", "layer1.0.conv1"]
    assert not hasattr(pruned.layer2[0].conv1, "weight_mask")
    pruned = prune_model(model, "unstructured", 0.5, layers=lambda name, m: name.startswith("layer3"))
    assert all(n.startswith("layer3") for n in pruned.prunesafe_pruning.pruned_modules)
    with pytest.raises(ValueError, match="not prunable"):
        prune_model(model, "unstructured", 0.5, layers=["nope"])
    with pytest.raises(TypeError, match="layers"):
        prune_model(model, "unstructured", 0.5, layers="conv1")


def test_masks_survive_fine_tuning_and_finalize_folds_them() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.Flatten()
    ).append(nn.Linear(1024, 10))
    model(torch.rand(1, 3, 12, 12))
    model = prune_model(model, "unstructured", 0.8)
    zero_before = [m.weight_mask == 0 for _, m in unstructured_targets(model)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(torch.rand(8, 3, 12, 12)), torch.randint(0, 10, (8,)))
        loss.backward()
        optimizer.step()
    # weight_orig moved (including masked entries' originals), yet the effective weight stays zero
    for (_, m), zero in zip(unstructured_targets(model), zero_before, strict=True):
        assert (m.weight[zero] == 0).all()
    assert sparsity(model) >= 0.8
    x = torch.rand(4, 3, 12, 12)
    model.eval()
    expected = model(x)
    assert finalize(model) is model
    assert not is_pruned(model)
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())
    assert torch.equal(model(x), expected)
    assert sparsity(model) >= 0.8
    finalize(model)  # idempotent
    assert torch.equal(model(x), expected)


def test_ratio_zero_gives_identical_outputs() -> None:
    model = cifar_vgg(11).eval()
    x = torch.rand(2, 3, 32, 32)
    pruned = prune_model(model, "unstructured", 0.0)
    assert torch.equal(pruned(x), model(x))
    assert pruned.prunesafe_pruning.achieved_ratio == 0.0


def test_repruning_composes_as_total_sparsity() -> None:
    torch.manual_seed(0)
    model = cifar_resnet(20)
    first = prune_model(model, "unstructured", 0.5)
    pruned_first = [m.weight_mask == 0 for _, m in unstructured_targets(first)]
    second = prune_model(first, "unstructured", 0.75)
    n = sum(m.weight_mask.numel() for _, m in unstructured_targets(second))
    assert second.prunesafe_pruning.achieved_ratio == round(0.75 * n) / n
    for (_, m), before in zip(unstructured_targets(second), pruned_first, strict=True):
        assert (m.weight_mask[before] == 0).all()  # previously pruned stay pruned
        # the pruning hook is updated, not nested
        assert sum(isinstance(h, prune.BasePruningMethod) for h in m._forward_pre_hooks.values()) == 1
    assert len(second.prunesafe_pruning.history) == 1
    assert second.prunesafe_pruning.history[0]["ratio"] == 0.5
    # equivalent to torch pruning the remaining weights by an absolute count
    reference = copy.deepcopy(first)
    params = [(m, "weight") for _, m in unstructured_targets(reference)]
    already = round(0.5 * n)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=round(0.75 * n) - already)
    for a, (_, b) in zip(_masks(second), unstructured_targets(reference), strict=True):
        assert torch.equal(a, b.weight_mask)
    # asking for less than the current sparsity removes nothing more and reports the truth
    third = prune_model(second, "unstructured", 0.25)
    assert third.prunesafe_pruning.achieved_ratio == second.prunesafe_pruning.achieved_ratio
    # zeros folded in by finalize count too, and are pruned first when pruning again
    fourth = prune_model(finalize(copy.deepcopy(first)), "unstructured", 0.25)
    assert fourth.prunesafe_pruning.achieved_ratio == first.prunesafe_pruning.achieved_ratio
    fifth = prune_model(finalize(copy.deepcopy(first)), "unstructured", 0.75)
    assert fifth.prunesafe_pruning.achieved_ratio == round(0.75 * n) / n


def test_prunes_on_top_of_torch_pruning_masks() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3))
    prune.random_unstructured(model[0], "weight", amount=0.5)
    masked = model[0].weight_mask == 0
    pruned = prune_model(model, "unstructured", 0.6)
    assert (pruned[0].weight_mask[masked] == 0).all()
    assert pruned.prunesafe_pruning.achieved_ratio == round(0.6 * 72) / 72


def test_no_prunable_layers() -> None:
    with pytest.raises(ValueError, match=r"no prunable layers.*include_linear=True"):
        prune_model(nn.Sequential(nn.Linear(3, 2)), "unstructured", 0.5)
    with pytest.raises(ValueError, match="no prunable layers"):
        prune_model(nn.Sequential(nn.BatchNorm2d(3)), "unstructured", 0.5, include_linear=True)


def test_bad_options() -> None:
    model = cifar_resnet(20)
    with pytest.raises(ValueError, match="scope"):
        prune_model(model, "unstructured", 0.5, scope="local")
    with pytest.raises(ValueError, match="norm"):
        prune_model(model, "unstructured", 0.5, norm="l2")
    with pytest.raises(TypeError, match="include_linear"):
        prune_model(model, "unstructured", 0.5, include_linear="yes")


def test_float64_and_device_of_masks() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3)).double()
    pruned = UnstructuredPruner(0.5).prune(model)
    assert pruned[0].weight_mask.dtype == torch.float64
    assert pruned[0](torch.rand(1, 2, 5, 5, dtype=torch.float64)).dtype == torch.float64


def test_sparsity_counts_effective_weights() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2))
    assert sparsity(model) == 0.25
    assert not is_pruned(model)


@settings(max_examples=30, deadline=None)
@given(
    channels=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    kernel=st.integers(1, 3),
    ratio=st.floats(0.0, 0.999),
    levels=st.sampled_from([0, 2, 8]),
    seed=st.integers(0, 2**16),
    layerwise=st.booleans(),
)
def test_property_masks_identical_to_torch(
    channels: list[int], kernel: int, ratio: float, levels: int, seed: int, layerwise: bool
) -> None:
    """Random small conv stacks, ratios and (with ``levels``) heavily tied magnitudes."""
    torch.manual_seed(seed)
    widths = [3, *channels]
    model = nn.Sequential(*[nn.Conv2d(widths[i], widths[i + 1], kernel) for i in range(len(channels))])
    if levels:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.round(p * levels) / levels)
    reference = copy.deepcopy(model)
    params = [(m, "weight") for m in reference]
    if layerwise:
        for m, name in params:
            prune.l1_unstructured(m, name, amount=ratio)
    else:
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=ratio)
    ours = prune_model(model, "unstructured", ratio, scope="layerwise" if layerwise else "global")
    for a, b in zip(ours, reference, strict=True):
        assert torch.equal(a.weight_mask, b.weight_mask)
        assert torch.equal(a.weight, b.weight)


@pytest.mark.filterwarnings("ignore:The tensor attributes .* were assigned during export")
def test_masked_and_finalized_models_export() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    x = torch.rand(2, 3, 8, 8)
    masked = prune_model(model, "unstructured", 0.5)
    exported = torch.export.export(masked, (x,))
    assert torch.allclose(exported.module()(x), masked(x))
    finalized = finalize(prune_model(model, "unstructured", 0.5))
    assert torch.allclose(torch.export.export(finalized, (x,)).module()(x), finalized(x))


def _rethinking_weight_level_masks(model: nn.Module, percent: float) -> list[torch.Tensor]:
    """Transcribed from rethinking-network-pruning cifar/weight-level/prune.py (one threshold)."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            total += m.weight.data.numel()
    conv_weights = torch.zeros(total)
    index = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            size = m.weight.data.numel()
            conv_weights[index : (index + size)] = m.weight.data.view(-1).abs().clone()
            index += size
    y, _ = torch.sort(conv_weights)
    thre_index = int(total * percent)
    thre = y[thre_index]
    return [m.weight.data.abs().gt(thre).float() for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("percent", [0.3, 0.7])
@pytest.mark.parametrize("tied", [False, True])
def test_threshold_selection_is_the_weight_level_code(percent: float, tied: bool) -> None:
    torch.manual_seed(0)
    model = cifar_resnet(8)
    if tied:
        with torch.no_grad():  # few distinct magnitudes: ties straddle the threshold
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.copy_((m.weight * 20).round() / 20)
    expected = _rethinking_weight_level_masks(model, percent)
    pruned = prune_model(model, "unstructured", percent, selection="threshold")
    got = [m.weight_mask for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)
    record = pruned.prunesafe_pruning
    assert record.achieved_ratio >= percent
    if tied:
        assert record.achieved_ratio > percent + 0.01  # ties at the threshold are pruned too
