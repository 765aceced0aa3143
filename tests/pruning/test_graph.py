"""The channel dependency graph: groups, couplings, barriers, custom rules, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from prunesafe.models import ZeroPadShortcut, cifar_resnet
from prunesafe.pruning.graph import (
    ChannelGraph,
    build_channel_graph,
    register_channel_rule,
    unregister_channel_rule,
)
from prunesafe.pruning.structured import FilterPruner

CIFAR_X = torch.rand(1, 3, 32, 32)


def _producer_names(graph: ChannelGraph, group) -> set[str]:
    return {graph.slots[i].module_name for i in group.producers}


def _eligible_names(model: nn.Module, coupling: str) -> list[set[str]]:
    graph = build_channel_graph(model, CIFAR_X)
    eligible, _ = FilterPruner(0.5, coupling=coupling)._eligible(model, graph)
    return [_producer_names(graph, g) for g in eligible]


def test_resnet20_groups_exclude_vs_together():
    model = cifar_resnet(20)
    exclude = _eligible_names(model, "exclude")
    # only the first conv of each of the 9 residual blocks is free of residual coupling
    expected = {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)}
    assert sorted(n for names in exclude for n in names) == sorted(expected)
    assert all(len(names) == 1 for names in exclude)

    together = _eligible_names(model, "together")
    assert len(together) == 10
    stream = max(together, key=len)
    # stem + every block's second conv share the residual stream, through the option-A shortcuts
    assert stream == {"conv1"} | {f"layer{s}.{b}.conv2" for s in (1, 2, 3) for b in range(3)}


def test_final_layer_is_a_barrier():
    model = cifar_resnet(20)
    graph = build_channel_graph(model, CIFAR_X)
    (linear_group,) = [g for g in graph.groups() if _producer_names(graph, g) == {"linear"}]
    assert not linear_group.prunable
    assert "model output" in linear_group.reason


def test_option_a_zero_pad_mapping():
    model = cifar_resnet(20)
    graph = build_channel_graph(model, CIFAR_X)
    shortcut = model.layer2[0].shortcut
    assert isinstance(shortcut, ZeroPadShortcut)
    (slot,) = [s for s in graph.slots if s.module_name == "layer2.0.shortcut"]
    out_comps = graph.labels[slot.elements]
    # the shortcut's input is the output of layer1 (= layer1.2.conv2's channels through the additions)
    (producer,) = [s for s in graph.slots if s.module_name == "layer1.2.conv2" and s.role == "producer"]
    in_comps = graph.labels[producer.elements]
    front = shortcut.pad_front
    assert len(out_comps) == 32
    assert len(in_comps) == 16
    assert front == 8
    np.testing.assert_array_equal(out_comps[front : front + 16], in_comps)
    pads = np.r_[out_comps[:front], out_comps[front + 16 :]]
    assert not np.isin(pads, in_comps).any()
    assert len(np.unique(out_comps)) == 32


def test_mobilenet_v2_depthwise_follows_its_producer():
    model = torchvision.models.mobilenet_v2(weights=None)
    x = torch.rand(1, 3, 64, 64)
    graph = build_channel_graph(model, x)
    groups = graph.groups()
    (group,) = [g for g in groups if _producer_names(graph, g) == {"features.2.conv.0.0"}]
    assert group.prunable
    assert len(group.producers) == 1
    passthrough = {graph.slots[i].module_name for i in group.passthroughs}
    norms = {graph.slots[i].module_name for i in group.norms}
    assert passthrough == {"features.2.conv.1.0"}  # the depthwise conv
    assert norms == {"features.2.conv.0.1", "features.2.conv.1.1"}
    FilterPruner(0.5, layers=["features.2.conv.0.0"]).prune(model, example_inputs=x)
    dw = model.features[2].conv[1][0]
    assert dw.in_channels == dw.out_channels == dw.groups == 48 == model.features[2].conv[0][0].out_channels
    assert dw.weight.shape == (48, 1, 3, 3)
    assert model.features[2].conv[2].in_channels == 48
    assert model(x).shape == (1, 1000)


class ConcatNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 1)
        self.bn = nn.BatchNorm2d(10)
        self.c = nn.Conv2d(10, 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), F.relu(self.b(x))], dim=1)
        return self.c(F.relu(self.bn(y))).mean((2, 3))


def test_concat_offsets():
    model = ConcatNet()
    graph = build_channel_graph(model, torch.rand(1, 3, 8, 8))
    (bn,) = [s for s in graph.slots if s.module_name == "bn"]
    (a,) = [s for s in graph.slots if s.module_name == "a" and s.role == "producer"]
    (b,) = [s for s in graph.slots if s.module_name == "b" and s.role == "producer"]
    (c_in,) = [s for s in graph.slots if s.module_name == "c" and s.role == "consumer"]
    np.testing.assert_array_equal(
        graph.labels[bn.elements], np.r_[graph.labels[a.elements], graph.labels[b.elements]]
    )
    np.testing.assert_array_equal(graph.labels[c_in.elements], graph.labels[bn.elements])
    prunable = {frozenset(_producer_names(graph, g)) for g in graph.groups() if g.prunable}
    assert prunable == {frozenset({"a"}), frozenset({"b"})}  # c's output is the model output


class FlattenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


def test_linear_after_flatten_maps_hw_features_per_channel():
    model = FlattenNet().eval()
    x = torch.rand(2, 3, 4, 4)
    graph = build_channel_graph(model, x[:1])
    (fc_in,) = [s for s in graph.slots if s.module_name == "fc" and s.role == "consumer"]
    (conv,) = [s for s in graph.slots if s.module_name == "conv" and s.role == "producer"]
    np.testing.assert_array_equal(graph.labels[fc_in.elements], np.repeat(graph.labels[conv.elements], 16))
    with torch.no_grad():
        model.conv.weight[[1, 6]] = 0
        model.conv.bias[[1, 6]] = 0
        expected = model(x)
    comps = graph.labels[conv.elements][[1, 6]]
    assert graph.remove(comps) == ["conv", "fc"]
    assert model.conv.out_channels == 6
    assert model.fc.in_features == 96
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)


class PadChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(6, 4, 3, padding=1)
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.d = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pad(self.a(x), (0, 0, 0, 0, 1, 1))  # raw channel padding: not understood
        return self.b(y) + self.d(self.c(x)).sum() * 0


def test_raw_channel_pad_is_pruned_through_with_an_offset():
    model = PadChannels().eval()
    x = torch.rand(2, 3, 8, 8)
    graph = build_channel_graph(model, x[:1])
    groups = {frozenset(_producer_names(graph, g)): g for g in graph.groups()}
    assert groups[frozenset({"a"})].prunable  # channel j of `a` is input channel j + 1 of `b`
    (a,) = [s for s in graph.slots if s.module_name == "a" and s.role == "producer"]
    (b_in,) = [s for s in graph.slots if s.module_name == "b" and s.role == "consumer"]
    np.testing.assert_array_equal(graph.labels[b_in.elements][1:5], graph.labels[a.elements])
    with torch.no_grad():  # masked == removed: zero a's filters 0 and 2, then remove them
        model.a.weight[[0, 2]] = 0
        model.a.bias[[0, 2]] = 0
        expected = model(x)
    assert graph.remove(graph.labels[a.elements][[0, 2]]) == ["a", "b"]
    assert (model.a.out_channels, model.b.in_channels) == (2, 4)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-5)


class PadInForward(nn.Module):
    """Pads channels by hard-coded numbers on a residual stream: the pad channels stay."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.pad(self.a(x), (0, 0, 0, 0, 1, 1)) + self.b(x))


def test_hard_coded_channel_pad_on_a_sum_is_a_barrier():
    graph = build_channel_graph(PadInForward(), torch.rand(1, 3, 8, 8))
    (group,) = [g for g in graph.groups() if _producer_names(graph, g) == {"a", "b"}]
    assert not group.prunable
    assert "pads channels by a hard-coded amount" in group.reason


class SharedConv(nn.Module):
    """The same conv applied twice: its channels must be shared by both calls."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 1)
        self.shared = nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.stem(x))
        return self.head(F.relu(self.shared(F.relu(self.shared(y)))))


def test_module_called_twice_is_coupled_with_itself():
    model = SharedConv()
    graph = build_channel_graph(model, torch.rand(1, 3, 4, 4))
    groups = {frozenset(_producer_names(graph, g)): g for g in graph.groups()}
    # the second call consumes the shared conv's own output: stem and shared are one coupled group
    assert frozenset({"stem", "shared"}) in groups
    FilterPruner(0.5, coupling="together").prune(model, example_inputs=torch.rand(1, 3, 4, 4))
    assert model.stem.out_channels == model.shared.in_channels == model.shared.out_channels == 3
    assert model(torch.rand(1, 3, 4, 4)).shape == (1, 2, 4, 4)


class Scale(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.rand(channels, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class ScaleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3)
        self.scale = Scale(8)
        self.b = nn.Conv2d(8, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.scale(self.a(x)))


def test_per_channel_parameter_in_a_traced_forward_is_sliced():
    x = torch.rand(2, 3, 8, 8)
    model = ScaleNet().eval()
    with torch.no_grad():
        model.a.weight[[1, 4, 6]] = 0
        model.a.bias[[1, 4, 6]] = 0
        gain = model.scale.gain.detach().clone()
        expected = model(x)
    FilterPruner(0.375).prune(model, example_inputs=x[:1])
    assert model.scale.gain.shape == (5, 1, 1)  # x * gain: gain's channels follow a's filters
    torch.testing.assert_close(model.scale.gain.detach(), gain[[0, 2, 3, 5, 7]])
    assert model.b.in_channels == 5
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)


def test_untraceable_custom_module_is_barrier_then_rule_makes_it_prunable():
    x = torch.rand(1, 3, 8, 8)

    class RuledScale(Scale):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.dim() != 4:  # fx cannot trace this; a registered rule makes the module a leaf
                raise ValueError("4-D input expected")
            return x * self.gain

    model = ScaleNet()
    model.scale = RuledScale(8)
    with pytest.warns(UserWarning, match="could not be traced"):
        graph = build_channel_graph(model, x)
    (group,) = [g for g in graph.groups() if _producer_names(graph, g) == {"a"}]
    assert not group.prunable
    assert "cannot be traced" in group.reason

    def rule(module: nn.Module, ctx) -> None:
        ctx.tie(ctx.inputs[0], ctx.output)
        ctx.add_slot("passthrough", ctx.output, tensors=[("gain", 0)])

    register_channel_rule(RuledScale, rule, preserves_shape=True)
    try:
        model.eval()
        with torch.no_grad():
            model.a.weight[:3] = 0
            model.a.bias[:3] = 0
            expected = model(x)
        FilterPruner(0.375).prune(model, example_inputs=x)
        assert model.scale.gain.shape == (5, 1, 1)
        assert model.b.in_channels == 5
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)
    finally:
        unregister_channel_rule(RuledScale)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            return y
        return -y


def test_untraceable_model_gives_clear_error():
    with pytest.raises(ValueError, match="unstructured") as info:
        build_channel_graph(DataDependent(), torch.rand(1, 3, 8, 8))
    assert "register_channel_rule" in str(info.value)
    with pytest.raises(ValueError, match="unstructured"):
        FilterPruner(0.5).prune(DataDependent(), example_inputs=torch.rand(1, 3, 8, 8))


def test_wrong_example_inputs_shape_is_reported():
    with pytest.raises(ValueError, match="example_inputs"):
        build_channel_graph(cifar_resnet(20), torch.rand(1, 5, 32, 32))


def test_bad_arguments():
    with pytest.raises(TypeError, match="example_inputs"):
        build_channel_graph(cifar_resnet(20), None)
    with pytest.raises(TypeError, match="example_inputs"):
        build_channel_graph(cifar_resnet(20), "image")
    with pytest.raises(TypeError, match="model"):
        build_channel_graph("resnet", CIFAR_X)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="module_type"):
        register_channel_rule(int, lambda m, c: None)  # type: ignore[arg-type]
    graph = build_channel_graph(cifar_resnet(20), CIFAR_X)
    (linear_group,) = [g for g in graph.groups() if not g.prunable]
    with pytest.raises(ValueError, match="barrier"):
        graph.remove(linear_group.components[:1])


def test_numpy_example_inputs_accepted():
    graph = build_channel_graph(
        cifar_resnet(20), np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    )
    assert len(graph.groups()) == 11


class PoolWithIndices(nn.Module):
    """A module returning a tuple: the channels flowing into it must not be removed on one side only."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.b = nn.Conv2d(4, 2, 1)
        self.c = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled, _ = self.pool(self.a(x))
        return self.b(pooled) + self.c(x)[:, :2, ::2, ::2]


def test_tuple_outputs_and_channel_slicing_are_barriers():
    model = PoolWithIndices()
    x = torch.rand(1, 3, 8, 8)
    graph = build_channel_graph(model, x)
    groups = {frozenset(_producer_names(graph, g)): g for g in graph.groups()}
    assert not groups[frozenset({"a"})].prunable
    assert "tuple" in groups[frozenset({"a"})].reason
    assert not groups[frozenset({"c"})].prunable  # x[:, :2] indexes channels
    with pytest.raises(ValueError, match="no prunable layers"):
        FilterPruner(0.5).prune(model, example_inputs=x)


class Gate(nn.Module):
    """Data-dependent control flow: fx cannot trace it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.mean() > 1e6:
            return -y
        return y


class NestedUntraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = Gate(8)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.b(self.gate(F.relu(self.a(x))))))


def test_untraceable_submodule_becomes_an_opaque_barrier():
    model = NestedUntraceable().eval()
    x = torch.rand(2, 3, 8, 8)
    with pytest.warns(UserWarning, match="gate"):
        graph = build_channel_graph(model, x[:1])
    assert set(graph.opaque_modules) == {"gate"}
    groups = {frozenset(_producer_names(graph, g)): g for g in graph.groups()}
    assert not groups[frozenset({"a"})].prunable
    assert "cannot be traced" in groups[frozenset({"a"})].reason
    assert groups[frozenset({"b"})].prunable
    with torch.no_grad():
        model.b.weight[:4] = 0
        model.b.bias[:4] = 0
        expected = model(x)
    with pytest.warns(UserWarning, match="opaque"):
        FilterPruner(0.5).prune(model, example_inputs=x[:1])
    assert model.a.out_channels == 8
    assert model.gate.conv.weight.shape == (8, 8, 1, 1)
    assert model.b.out_channels == 4
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)


class LeNet(nn.Module):
    """LeNet-5 style: ``view`` to a hard-coded ``16 * 5 * 5`` or to ``(x.size(0), -1)``."""

    def __init__(self, hard_coded: bool) -> None:
        super().__init__()
        self.hard_coded = hard_coded
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 16 * 5 * 5) if self.hard_coded else x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(x)))


def test_view_to_hard_coded_size_is_a_barrier():
    x = torch.rand(2, 3, 32, 32)
    model = LeNet(hard_coded=True).eval()
    why = FilterPruner(0.5).explain(model, example_inputs=x[:1])
    assert "hard-coded size(s) [400]" in why["conv2"]
    assert why["conv1"] == ""
    FilterPruner(0.5).prune(model, example_inputs=x[:1])
    # conv2's channels feed the hard-coded view: left alone, and the pruned model runs
    assert (model.conv1.out_channels, model.conv2.in_channels) == (3, 3)
    assert (model.conv2.out_channels, model.fc1.in_features) == (16, 400)
    assert model(x).shape == (2, 10)


def test_view_with_sizes_from_the_input_is_pruned_through():
    x = torch.rand(2, 3, 32, 32)
    model = LeNet(hard_coded=False).eval()
    with torch.no_grad():  # the 8 filters filter pruning removes are zero: masked == removed
        model.conv2.weight[::2] = 0
        model.conv2.bias[::2] = 0
        expected = model(x)
    FilterPruner(0.5, layers=["conv2"]).prune(model, example_inputs=x[:1])
    assert (model.conv2.out_channels, model.fc1.in_features) == (8, 200)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)


class FixedBias(nn.Module):
    """Adds a bias of a fixed channel count; its (deliberately wrong) rule forgets to slice it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


def test_structural_check_refuses_a_broken_removal_and_leaves_the_model_untouched():
    def wrong_rule(module: nn.Module, ctx) -> None:
        ctx.tie(ctx.inputs[0], ctx.output)  # no slot for `bias`: the graph misses a constraint

    register_channel_rule(FixedBias, wrong_rule)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), FixedBias(8), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    x = torch.rand(1, 3, 8, 8)
    expected = model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"structural check failed, nothing was removed.*layers=") as info:
        FilterPruner(0.5).prune(model, example_inputs=x)
    assert "no longer run on example_inputs" in str(info.value)
    assert (model[0].out_channels, model[3].in_channels) == (8, 8)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_remove_is_atomic_when_a_layer_would_be_emptied():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3), nn.ReLU(), nn.Conv2d(2, 3, 3))
    x = torch.rand(1, 3, 10, 10)
    expected = model(x)
    graph = build_channel_graph(model, x)
    first, second = (g for g in graph.groups() if g.prunable)
    assert (len(first.components), len(second.components)) == (4, 2)
    # one channel of the first conv (fine) and both of the second (empties it): nothing may change
    with pytest.raises(ValueError, match=r"would leave '2' empty; nothing was removed"):
        graph.remove(np.r_[first.components[:1], second.components])
    shapes = [tuple(m.weight.shape) for m in model if isinstance(m, nn.Conv2d)]
    assert shapes == [(4, 3, 3, 3), (2, 4, 3, 3), (3, 2, 3, 3)]
    assert (model[0].out_channels, model[2].in_channels) == (4, 4)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    assert graph.remove(first.components[:1]) == ["0", "2"]
    assert model[0].out_channels == model[2].in_channels == 3
