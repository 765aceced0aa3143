"""pruning_report: MAC counting, parameter counts, per-layer table, serialisation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from prunesafe.models import cifar_resnet, cifar_vgg
from prunesafe.pruning import prune_model
from prunesafe.pruning.report import count_macs, pruning_report


def test_conv_macs_by_hand_with_stride_padding_groups_and_dilation() -> None:
    model = nn.Sequential(
        nn.Conv2d(4, 8, kernel_size=3, stride=2, padding=1),  # out 8x5x5
        nn.Conv2d(8, 8, kernel_size=3, padding=2, dilation=2, groups=4),  # out 8x5x5
    )
    macs = count_macs(model, torch.rand(3, 4, 10, 10))
    assert macs["0"][0] == 8 * 5 * 5 * 4 * 3 * 3
    assert macs["1"][0] == 8 * 5 * 5 * (8 // 4) * 3 * 3


def test_linear_and_conv1d_conv3d_macs() -> None:
    assert count_macs(nn.Linear(7, 5), torch.rand(4, 7)) == {"": (35, 35)}
    assert count_macs(nn.Linear(7, 5), torch.rand(4, 6, 7)) == {"": (6 * 35, 6 * 35)}  # per token
    assert count_macs(nn.Conv1d(2, 3, 3), torch.rand(2, 2, 10))[""][0] == 3 * 8 * 2 * 3
    assert count_macs(nn.Conv3d(2, 3, 2), torch.rand(1, 2, 3, 3, 3))[""][0] == 3 * 8 * 2 * 8


def test_nonzero_macs_follow_zero_weights() -> None:
    conv = nn.Conv2d(1, 1, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[0.0, 1.0], [0.0, 2.0]]]]))
    assert count_macs(conv, torch.rand(1, 1, 3, 3)) == {"": (4 * 4, 4 * 2)}


def test_module_called_twice_is_counted_twice() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x))

    assert count_macs(Twice(), torch.rand(2, 3)) == {"fc": (18, 18)}


def test_cifar_resnet20_reference_numbers() -> None:
    model = cifar_resnet(20)
    report = pruning_report(model, model, torch.rand(1, 3, 32, 32))
    assert report.params_before == 269_722  # the published 0.27M
    assert report.macs_before == 40_551_040  # the published 40.55M (41M) MACs
    assert report.ratio_asked is None
    assert report.method is None


def test_unstructured_report() -> None:
    torch.manual_seed(0)
    model = cifar_resnet(20)
    pruned = prune_model(model, "unstructured", 0.8)
    report = pruning_report(model, pruned, torch.rand(2, 3, 32, 32))
    assert report.ratio_asked == 0.8
    assert report.ratio_achieved == pytest.approx(round(0.8 * 267696) / 267696)  # 19 convs of ResNet-20
    assert report.ratio_achieved_of_all == report.ratio_achieved  # every conv is targeted
    assert report.unit == "weights"
    assert report.params_after == report.params_before  # masks do not shrink tensors
    assert report.macs_after == report.macs_before
    conv_weights = sum(m.weight_orig.numel() for m in pruned.modules() if isinstance(m, nn.Conv2d))
    masked = sum(int((m.weight_mask == 0).sum()) for m in pruned.modules() if isinstance(m, nn.Conv2d))
    assert report.nonzero_params_before - report.nonzero_params_after == masked
    assert masked == round(0.8 * conv_weights)
    assert report.nonzero_macs_after < 0.5 * report.macs_before
    for layer in report.layers:
        assert layer.channels_after == layer.channels_before
        if layer.type == "Conv2d":
            assert 0.0 < layer.sparsity < 1.0
    assert report.layers[-1].sparsity == 0.0  # the Linear layer is not targeted


def _shrink_first_conv(model: nn.Module, keep: int) -> nn.Module:
    """Physically remove output channels of the first conv of a CIFAR VGG (and its consumers)."""
    conv, bn, next_conv = model.features[0], model.features[1], model.features[4]
    with torch.no_grad():
        conv.weight = nn.Parameter(conv.weight[:keep].clone())
        conv.out_channels = keep
        for name in ("weight", "bias"):
            setattr(bn, name, nn.Parameter(getattr(bn, name)[:keep].clone()))
        bn.running_mean = bn.running_mean[:keep].clone()
        bn.running_var = bn.running_var[:keep].clone()
        bn.num_features = keep
        next_conv.weight = nn.Parameter(next_conv.weight[:, :keep].clone())
        next_conv.in_channels = keep
    return model


def test_structural_change_is_reported_per_layer_and_in_totals() -> None:
    model = cifar_vgg(11)
    shrunk = _shrink_first_conv(cifar_vgg(11), 16)
    report = pruning_report(model, shrunk, np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32))
    actual_drop = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in shrunk.parameters())
    assert report.params_before - report.params_after == actual_drop
    assert actual_drop == 48 * 3 * 9 + 2 * 48 + 128 * 48 * 9
    first, second = report.layers[0], report.layers[1]
    assert (first.channels_before, first.channels_after, first.kept) == (64, 16, "16/64")
    assert (second.in_channels_before, second.in_channels_after) == (64, 16)
    assert first.macs_after * 4 == first.macs_before
    assert report.mac_reduction > 1.0
    assert report.param_reduction > 1.0


def test_models_are_left_unchanged() -> None:
    model = cifar_resnet(20).train()
    pruned = prune_model(model, "unstructured", 0.5).train()
    pruned.layer1.eval()
    stats = {k: v.clone() for k, v in pruned.state_dict().items()}
    pruning_report(model, pruned, torch.rand(4, 3, 32, 32) * 5)
    assert model.training
    assert pruned.training
    assert not pruned.layer1.training
    assert all(torch.equal(v, pruned.state_dict()[k]) for k, v in stats.items())  # BN stats untouched


def test_to_dict_records_and_table() -> None:
    model = cifar_resnet(20)
    report = pruning_report(model, prune_model(model, "unstructured", 0.5), torch.rand(1, 3, 32, 32))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["params_before"] == report.params_before
    assert data["ratio_asked"] == 0.5
    assert len(data["layers"]) == len(report.layers) == 20  # 19 convs + linear
    frame = pd.DataFrame(report.to_records())
    assert list(frame["name"][:2]) == ["conv1", "layer1.0.conv1"]
    assert frame["sparsity"].between(0, 1).all()
    text = str(report)
    assert "ratio asked: 0.5" in text
    assert "MACs" in text
    assert "FLOPs" not in text
    lines = text.splitlines()
    table = lines[lines.index("") + 1 :]
    assert len({len(line) for line in table}) == 1  # aligned columns
    assert any(line.startswith("layer3.2.conv2") for line in table)


def test_structured_report_shows_the_fraction_of_all_units_removed() -> None:
    model, x = cifar_resnet(56), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.1, 1.0)
    pruned = prune_model(model, "channel", 0.5, threshold_scope="eligible", example_inputs=x)
    report = pruning_report(model, pruned, x)
    assert report.ratio_achieved == pytest.approx(0.5)
    assert report.ratio_achieved_of_all == pytest.approx(504 / 2032)
    assert report.eligible_fraction == pytest.approx(1008 / 2032)
    assert (report.units_before, report.units_after) == (2032, 2032 - 504)
    lines = str(report).splitlines()
    assert lines[0] == "fraction of ALL channels in the model removed: 0.2480   (2,032 -> 1,528)"
    assert "those layers hold = 49.61% of all" in lines[1]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ratio_achieved_of_all"] == pytest.approx(504 / 2032)
    unstructured = str(pruning_report(model, prune_model(model, "unstructured", 0.5), x))
    assert unstructured.startswith("fraction of ALL weights in the model removed: 0.5000")


def test_repeated_pruning_is_reported_against_the_original() -> None:
    model, x = cifar_resnet(20).eval(), torch.rand(1, 3, 32, 32)
    pruned = model
    for ratio in (0.5, 0.5, 0.75):
        pruned = prune_model(pruned, "filter", ratio, example_inputs=x)
    report = pruning_report(model, pruned, x)
    # every block's first conv: 16 -> 8 -> 4 -> 1 (32 -> 2, 64 -> 4): 1 - 1/16 of those filters are gone;
    # ResNet-20 has 16 + 6 * (16 + 32 + 64) = 688 filters, 336 of them in first convs: 315 / 688
    assert report.ratio_achieved == pytest.approx(0.9375)
    assert report.ratio_achieved_of_all == pytest.approx(315 / 688)
    assert report.ratio_achieved_of_all == pytest.approx(0.458, abs=5e-4)
    assert report.calls == 3
    assert pruned.prunesafe_pruning.achieved_ratio == pytest.approx(0.75)  # the record keeps the last call
    assert "over 3 prune_model calls" in str(report).splitlines()[0]


def test_unmatched_layers_are_listed() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1))
    other = nn.Sequential(nn.Conv2d(3, 4, 3))
    report = pruning_report(model, other, torch.rand(1, 3, 8, 8))
    assert report.unmatched == ["1"]
    assert "missing in the pruned model: 1" in str(report)


def test_bad_input() -> None:
    model = cifar_vgg(11)
    with pytest.raises(TypeError, match=r"original must be a torch\.nn\.Module"):
        pruning_report(model.state_dict(), model, torch.rand(1, 3, 32, 32))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"pruned must be a torch\.nn\.Module"):
        pruning_report(model, None, torch.rand(1, 3, 32, 32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="example_inputs is required"):
        pruning_report(model, model, None)
    with pytest.raises(TypeError, match="example_inputs must be"):
        pruning_report(model, model, "image.png")


def test_filter_pruned_report_matches_the_modules() -> None:
    model = cifar_resnet(20)
    x = torch.rand(1, 3, 32, 32)
    pruned = prune_model(model, "filter", 0.5, example_inputs=x)
    report = pruning_report(model, pruned, x)
    # by hand: each block's conv1 keeps half its filters, so conv1 and conv2 weights halve and bn1 loses
    # half its gamma/beta: stage 1 3*(1152+16+1152), stage 2 (2304+32+4608) + 2*(4608+32+4608),
    # stage 3 (9216+64+18432) + 2*(18432+64+18432) = 133,968 of 269,722 parameters
    assert report.params_before == 269_722
    assert report.params_after == 269_722 - 133_968
    # MACs: every block conv's MACs halve; 40,551,040 - 20,054,016
    assert report.macs_after == 20_497_024
    assert report.layers[1].kept == "8/16"  # layer1.0.conv1
    assert report.unit == "filters"
    assert report.nonzero_params_after <= report.params_after
    # conv MACs scale with kept in × out channels: a block's two convs each lose half
    assert report.layers[1].macs_after * 2 == report.layers[1].macs_before
