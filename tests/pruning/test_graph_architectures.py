"""Architectures the channel graph prunes through: grouped convs, SE gating, channel shuffle,
train-only branches, shape-decided views, channel padding, hidden Linear units, ConvNeXt blocks,
function rules (``stochastic_depth``), and a handful of torchvision models per family.

Where removal must equal masking (zeroing the removed channels' filters / BN affine), the
reference is the masked original model run in eager mode: independent of the graph.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.ops import SqueezeExcitation, StochasticDepth, stochastic_depth

from prunesafe.pruning import prune_model
from prunesafe.pruning.graph import (
    ChannelGraph,
    build_channel_graph,
    register_channel_rule,
    unregister_channel_rule,
)
from prunesafe.pruning.structured import FilterPruner


def _names(graph: ChannelGraph, slots: list[int]) -> set[str]:
    return {graph.slots[i].module_name for i in slots}


def _group_of(graph: ChannelGraph, producer: str):
    (group,) = [g for g in graph.groups() if producer in _names(graph, g.producers)]
    return group


@torch.no_grad()
def _zero(model: nn.Module, graph: ChannelGraph, comps: np.ndarray) -> None:
    """Mask (zero) the channels of ``comps`` in every producer and norm of ``model``."""
    removed = np.zeros(graph.num_components, dtype=bool)
    removed[comps] = True
    for slot in graph.slots:
        idx = torch.from_numpy(np.nonzero(removed[graph.labels[slot.elements]])[0])
        if not len(idx) or slot.role not in ("producer", "norm"):
            continue
        module = model.get_submodule(slot.module_name)
        for attr, dim in slot.tensors:
            tensor = getattr(module, attr, None)
            if isinstance(tensor, torch.Tensor) and attr in ("weight", "bias"):
                tensor.index_fill_(dim, idx, 0.0)


def _check_masked_equals_removed(
    model: nn.Module, x: torch.Tensor, producer: str, count: int
) -> ChannelGraph:
    """Remove the first ``count`` components of ``producer``'s group; compare with the masked model."""
    model.eval()
    graph = build_channel_graph(model, x[:1])
    group = _group_of(graph, producer)
    assert group.prunable, group.reason
    comps = group.components[:count]
    masked = copy.deepcopy(model)
    _zero(masked, graph, comps)
    with torch.no_grad():
        expected = masked(x)
    graph.remove(comps)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    return graph


def _train_step(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    out = model(x)
    outs = out if isinstance(out, tuple) else (out,)
    sum(o.float().sum() for o in outs).backward()


# ----------------------------------------------------------------------------- function rules


class DepthBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.depth = StochasticDepth(0.2, "row")  # calls torchvision's fx-wrapped stochastic_depth
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return self.head(y + self.depth(self.conv(y)))


def test_stochastic_depth_is_a_registered_function_rule():
    x = torch.rand(1, 3, 8, 8)
    graph = build_channel_graph(DepthBlock(), x)
    group = _group_of(graph, "stem")
    assert _names(graph, group.producers) == {"stem", "conv"}
    assert group.prunable
    from prunesafe.pruning.graph import rules as rule_table

    entry = rule_table._FUNCTION_RULES[stochastic_depth]
    unregister_channel_rule(stochastic_depth)
    try:
        graph = build_channel_graph(DepthBlock(), x)
        group = _group_of(graph, "stem")
        assert not group.prunable
        assert "unknown operation" in group.reason
        assert "register_channel_rule" in group.reason
    finally:
        rule_table._FUNCTION_RULES[stochastic_depth] = entry  # the built-in entry, restored as it was
    assert _group_of(build_channel_graph(DepthBlock(), x), "stem").prunable
    model = nn.Sequential(nn.Conv2d(3, 8, 3), StochasticDepth(0.5, "row"), nn.Conv2d(8, 2, 3))
    FilterPruner(0.5).prune(model, example_inputs=x)
    assert model[0].out_channels == 4
    _train_step(model, torch.rand(2, 3, 8, 8))


def double_channels(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] > 0:  # data-dependent branch: fx cannot trace it
        return x * 2
    return x


class DoubleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3)
        self.b = nn.Conv2d(6, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(double_channels(self.a(x)))


def test_user_function_rule_makes_an_untraceable_function_a_leaf_and_unregister_restores():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="symbolic tracing"):
        build_channel_graph(DoubleNet(), x[:1])
    seen: list[str] = []

    def rule(fn, ctx) -> None:
        seen.append(fn.__name__)
        ctx.tie(ctx.inputs[0], ctx.output)

    register_channel_rule(double_channels, rule, preserves_shape=True)
    try:
        _check_masked_equals_removed(DoubleNet(), x, "a", 3)
        assert seen
        assert seen[0] == "double_channels"
    finally:
        assert unregister_channel_rule(double_channels) is rule
    with pytest.raises(KeyError, match="no channel rule is registered for double_channels"):
        unregister_channel_rule(double_channels)
    with pytest.raises(TypeError, match="module_type"):
        register_channel_rule(3, rule)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="module_type"):
        register_channel_rule("not a name", rule)
    with pytest.raises(TypeError, match="rule must be callable"):
        register_channel_rule(double_channels, "rule")  # type: ignore[arg-type]


def halve_channels(x: torch.Tensor) -> torch.Tensor:
    return x[:, : x.shape[1] // 2]


class HalveNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(4, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(halve_channels(self.a(x)))


def test_a_wrong_rule_is_reported_as_a_graph_limitation_not_as_bad_inputs():
    def wrong(fn, ctx) -> None:
        ctx.tie(ctx.inputs[0], ctx.output)

    assert HalveNet()(torch.rand(1, 3, 8, 8)).shape == (1, 2, 4, 4)
    register_channel_rule(halve_channels, wrong, preserves_shape=True)  # claims the shape is kept
    try:
        with pytest.raises(ValueError, match="runs on example_inputs, but the channel graph") as info:
            build_channel_graph(HalveNet(), torch.rand(1, 3, 8, 8))
        assert "in module 'b'" in str(info.value)
    finally:
        unregister_channel_rule(halve_channels)
    with pytest.raises(ValueError, match="does not run on example_inputs"):
        build_channel_graph(HalveNet(), torch.rand(1, 4, 8, 8))


# ----------------------------------------------------------------------------- grouped convs


class GroupedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.g = nn.Conv2d(16, 12, 3, padding=1, groups=4)
        self.head = nn.Conv2d(12, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.g(F.relu(self.a(x)))))


def test_grouped_conv_removes_the_same_index_of_every_group():
    x = torch.rand(2, 3, 6, 6)
    graph = build_channel_graph(GroupedNet(), x[:1])
    (a,) = [s for s in graph.slots if s.module_name == "a" and s.role == "producer"]
    labels = graph.labels[a.elements].reshape(4, 4)  # 4 groups of 4 input channels of g
    assert (labels == labels[0]).all()  # channel i of every group is one component
    model = GroupedNet()
    _check_masked_equals_removed(model, x, "a", 1)
    assert (model.a.out_channels, model.g.in_channels, model.g.groups) == (12, 12, 4)
    assert model.g.weight.shape == (12, 3, 3, 3)
    model = GroupedNet()
    _check_masked_equals_removed(model, x, "g", 2)
    assert (model.g.out_channels, model.head.in_channels, model.g.groups) == (4, 4, 4)


def test_grouped_conv_with_one_channel_per_group_is_a_barrier_with_a_reason():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 8, 3, groups=4), nn.Conv2d(8, 2, 1))
    graph = build_channel_graph(model, torch.rand(1, 3, 6, 6))
    group = _group_of(graph, "0")
    assert not group.prunable
    assert "cannot keep equal groups" in group.reason


# ----------------------------------------------------------------------------- SE gating


class SEBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(3, 16, 1)
        self.bn = nn.BatchNorm2d(16)
        self.se = SqueezeExcitation(16, 4)
        self.project = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(F.relu(self.bn(self.expand(x)))))


def test_squeeze_excitation_is_one_unit_with_its_expand_conv():
    x = torch.rand(2, 3, 6, 6)
    model = SEBlock()
    graph = build_channel_graph(model, x[:1])
    group = _group_of(graph, "expand")
    assert _names(graph, group.producers) == {"expand"}
    assert _names(graph, group.gates) == {"se.fc2"}
    why = FilterPruner(0.5).explain(model, example_inputs=x[:1])  # coupling="exclude"
    assert why["expand"] == ""
    assert why["se.fc1"] == ""
    with torch.no_grad():
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.5, 0.5)
    _check_masked_equals_removed(model, x, "expand", 6)
    assert (model.expand.out_channels, model.bn.num_features, model.se.fc1.in_channels) == (10, 10, 10)
    assert (model.se.fc2.out_channels, model.project.in_channels) == (10, 10)


# ----------------------------------------------------------------------------- channel shuffle


def _shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, c, h, w)


class ShuffleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(_shuffle(torch.cat([self.a(x), self.b(x)], 1), 2))


def test_channel_shuffle_traces_and_prunes_matching_channels_of_both_halves():
    x = torch.rand(2, 3, 5, 5)
    graph = build_channel_graph(ShuffleNet(), x[:1])  # failed before: meta contiguous kept strides
    (a,) = [s for s in graph.slots if s.module_name == "a" and s.role == "producer"]
    (b,) = [s for s in graph.slots if s.module_name == "b" and s.role == "producer"]
    (head,) = [s for s in graph.slots if s.module_name == "head" and s.role == "consumer"]
    # shuffle: output channel 2i is a's channel i, 2i + 1 is b's channel i; i goes as one unit
    np.testing.assert_array_equal(graph.labels[a.elements], graph.labels[b.elements])
    np.testing.assert_array_equal(graph.labels[head.elements], np.repeat(graph.labels[a.elements], 2))
    model = ShuffleNet()
    _check_masked_equals_removed(model, x, "a", 2)
    assert (model.a.out_channels, model.b.out_channels, model.head.in_channels) == (2, 2, 4)


def test_shufflenet_v2_prunes_and_trains():
    model = torchvision.models.shufflenet_v2_x0_5(weights=None)
    x = torch.rand(2, 3, 64, 64)
    before = sum(p.numel() for p in model.parameters())
    pruned = prune_model(model, "filter", 0.5, example_inputs=x[:1], coupling="together")
    assert sum(p.numel() for p in pruned.parameters()) < 0.75 * before
    pruned.eval()
    assert pruned(x).shape == (2, 1000)
    _train_step(pruned, x)


# ----------------------------------------------------------------------------- train-only branches


class AuxNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.aux = nn.Linear(8, 3)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        y = F.relu(self.a(x))
        aux = self.aux(y.mean((2, 3))) if self.training else None
        out = self.head(F.relu(self.b(y)).mean((2, 3)))
        if aux is not None:
            return out, aux
        return out


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_training_only_branch_is_pruned_too(mode: str):
    """The aux head runs only in train mode: traced in both modes, it is resized whatever the mode."""
    model = AuxNet()
    getattr(model, mode)()
    x = torch.rand(2, 3, 6, 6)
    FilterPruner(0.5).prune(model, example_inputs=x[:1])
    assert model.training == (mode == "train")  # the mode is restored after tracing both
    assert model.a.out_channels == 4
    assert model.aux.in_features == 4  # only reached in train mode
    _train_step(model, x)
    model.eval()
    assert model(x).shape == (2, 3)


@pytest.mark.slow
def test_googlenet_with_aux_heads_runs_in_train_mode_after_pruning():
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    x = torch.rand(2, 3, 96, 96)
    pruned = prune_model(model.eval(), "filter", 0.5, example_inputs=x[:1], coupling="together")
    _train_step(pruned, x)
    assert pruned.aux1.conv.conv.in_channels < 512


# ----------------------------------------------------------------------------- views from shapes


class BatchFromInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.size(0)  # taken from the input, not from the viewed tensor
        y = F.relu(self.conv(x))
        return self.fc(y.view(n, -1))


def test_view_with_batch_size_taken_earlier_is_pruned_through():
    model = BatchFromInput()
    x = torch.rand(2, 3, 6, 6)
    why = FilterPruner(0.5).explain(model, example_inputs=x[:1])
    assert why["conv"] == ""
    _check_masked_equals_removed(model, x, "conv", 3)
    assert (model.conv.out_channels, model.fc.in_features) == (5, 80)


# ----------------------------------------------------------------------------- channel padding


def test_constant_pad_module_on_channels_updates_its_padding():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ConstantPad3d((0, 0, 0, 0, 2, 1), 0.0), nn.Conv2d(7, 2, 1))
    x = torch.rand(2, 3, 4, 4)
    _check_masked_equals_removed(model, x, "0", 2)
    assert model[0].out_channels == 2
    assert model[2].in_channels == 5
    assert model[1].padding == (0, 0, 0, 0, 2, 1)


def test_option_a_shortcut_pad_amounts_are_found_by_perturbation():
    from prunesafe.models import cifar_resnet

    model = cifar_resnet(20)
    x = torch.rand(2, 3, 32, 32)
    FilterPruner(0.5, coupling="together").prune(model.eval(), example_inputs=x[:1])
    sc = model.layer2[0].shortcut
    assert (
        sc.pad_front + model.layer1[2].conv2.out_channels + sc.pad_back == model.layer2[0].conv2.out_channels
    )
    assert model(x).shape == (2, 10)


def test_the_graph_package_does_not_import_the_model_zoo():
    from pathlib import Path

    import prunesafe.pruning.graph as graph_pkg

    files = sorted(Path(graph_pkg.__path__[0]).glob("*.py"))
    assert len(files) >= 4
    for f in files:
        text = f.read_text()
        assert "prunesafe.models" not in text.replace(">>> from prunesafe.models", ""), f.name


# ----------------------------------------------------------------------------- hidden Linear units


class MLPHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 2 * 2, 16)
        self.fc2 = nn.Linear(16, 8)
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.adaptive_avg_pool2d(F.relu(self.conv(x)), 2).flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(y)))))


def test_hidden_linear_units_are_pruned_but_never_the_classifier_outputs():
    x = torch.rand(2, 3, 6, 6)
    model = MLPHead()
    _check_masked_equals_removed(model, x, "fc1", 5)
    assert (model.fc1.out_features, model.fc2.in_features) == (11, 11)
    model = MLPHead()
    FilterPruner(0.5).prune(model, example_inputs=x[:1])
    assert (model.conv.out_channels, model.fc1.out_features, model.fc2.out_features) == (2, 8, 4)
    assert model.fc3.out_features == 3
    kept = MLPHead()
    pruner = FilterPruner(0.5, prune_linear=False)
    pruner.prune(kept, example_inputs=x[:1])
    assert (kept.conv.out_channels, kept.fc1.out_features, kept.fc2.out_features) == (2, 16, 8)
    with pytest.raises(TypeError, match="prune_linear"):
        FilterPruner(0.5, prune_linear="no")  # type: ignore[arg-type]


@pytest.mark.slow
def test_vgg16_bn_filter_pruning_reaches_the_classifier():
    model = torchvision.models.vgg16_bn(weights=None)
    before = sum(p.numel() for p in model.parameters())
    x = torch.rand(1, 3, 32, 32)  # verify off: 138 M parameters; the structure is what is checked here
    pruned = prune_model(model, "filter", 0.5, example_inputs=x, coupling="together", verify=False)
    assert pruned.classifier[0].out_features == 2048
    assert pruned.classifier[6].out_features == 1000
    assert sum(p.numel() for p in pruned.parameters()) < 0.3 * before


# ----------------------------------------------------------------------------- ConvNeXt


def _tiny_convnext() -> ConvNeXt:
    return ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=3, layer_scale=0.5)


def test_convnext_permute_layernorm_and_layer_scale_are_rules():
    model = _tiny_convnext()
    x = torch.rand(2, 3, 32, 32)
    graph = build_channel_graph(model, x[:1])
    group = _group_of(graph, "features.1.0.block.3")  # the expanding Linear, on channels-last tensors
    assert group.prunable, group.reason
    stem = _group_of(graph, "features.0.0")  # stem conv + the residual stream of stage 1
    assert stem.prunable, stem.reason
    assert {"features.1.0.block.2", "features.0.1", "features.1.0"} <= _names(graph, stem.passthroughs)
    scale = model.features[1][0].layer_scale.detach().clone()
    pruned = prune_model(model, "filter", 0.5, example_inputs=x[:1], coupling="together")
    block = pruned.features[1][0]
    width = pruned.features[0][0].out_channels
    assert width == 4
    assert block.layer_scale.shape == (4, 1, 1)
    assert block.block[2].normalized_shape == (4,)
    assert pruned.features[0][1].normalized_shape == (4,)
    assert block.block[3].out_features == 16
    assert block.block[5].out_features == 4
    assert torch.isin(block.layer_scale.detach().ravel(), scale.ravel()).all()
    pruned.eval()
    assert pruned(x).shape == (2, 3)
    _train_step(pruned, x)


# ----------------------------------------------------------------------------- torchvision families


@pytest.mark.parametrize(
    "name",
    ["resnext50_32x4d", "regnet_y_400mf", "mobilenet_v3_small", "efficientnet_b0", "googlenet"],
)
def test_torchvision_models_lose_a_quarter_of_their_parameters_and_still_train(name: str):
    kwargs = {"aux_logits": True, "init_weights": True} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    x = torch.rand(2, 3, 64, 64)
    before = sum(p.numel() for p in model.parameters())
    pruned = prune_model(model, "filter", 0.5, example_inputs=x[:1], coupling="together")
    assert sum(p.numel() for p in pruned.parameters()) <= 0.75 * before
    pruned.eval()
    assert pruned(x).shape == (2, 1000)
    _train_step(pruned, x)


# ----------------------------------------------------------------------------- channel selection


@pytest.mark.slow
def test_channel_selection_resnet164_removes_what_liu_et_al_global_threshold_removes():
    from prunesafe.models import cifar_preact_resnet
    from prunesafe.pruning.selection import ChannelSelectionBatchNorm2d, add_channel_selection

    model = cifar_preact_resnet(164, block="bottleneck").eval()
    x = torch.rand(2, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    with torch.no_grad():
        for bn in bns.values():
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) * 2 - 1)
    gammas = {n: bn.weight.detach().abs().clone() for n, bn in bns.items()}
    converted = add_channel_selection(model, x[:1])
    # the pre-activation BNs (first BN of every unit) and the final BN read the residual stream;
    # layer1.0.bn1 reads the stem conv alone (a projection shortcut follows): it is pruned directly
    stream = [f"layer{s}.{i}.bn1" for s in (1, 2, 3) for i in range(18)][1:]
    assert converted == [*stream, "bn"]
    # transcription of Liu et al.'s code: thre = sorted(all |gamma|)[int(total * ratio)]; keep |gamma| > thre
    ratio = 0.4
    flat = torch.cat(list(gammas.values()))
    threshold = torch.sort(flat).values[int(len(flat) * ratio)]
    expected_keep = {n: torch.nonzero(g > threshold).ravel() for n, g in gammas.items()}
    pruned = prune_model(model, "channel", ratio, example_inputs=x[:1], selection="threshold", inplace=True)
    for name, keep in expected_keep.items():
        module = pruned.get_submodule(name)
        if isinstance(module, ChannelSelectionBatchNorm2d):
            assert module.num_features == len(gammas[name])  # the stream BN stays whole
            torch.testing.assert_close(module.indices, keep)
        else:
            torch.testing.assert_close(module.weight.detach().abs(), gammas[name][keep])
    assert pruned.layer1[0].conv1.in_channels == len(expected_keep["layer1.0.bn1"])
    assert pruned.linear.in_features == len(expected_keep["bn"])
    assert pruned(x).shape == (2, 10)
    _train_step(pruned, x)
    state = pruned.state_dict()
    assert state["layer2.0.bn1.indices"].dtype == torch.int64


class TrainOnlyUntraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        if self.training and y.sum() > 0:  # data-dependent, in train mode only
            y = y * 2
        return self.b(y)


def test_a_mode_that_cannot_be_traced_is_reported_and_the_other_is_used():
    model = TrainOnlyUntraceable().eval()
    with pytest.warns(UserWarning, match="cannot be traced in train mode"):
        graph = build_channel_graph(model, torch.rand(1, 3, 8, 8))
    assert _group_of(graph, "a").prunable
    assert not model.training


def test_add_channel_selection_bad_inputs_and_explicit_layers():
    from prunesafe.models import cifar_preact_resnet
    from prunesafe.pruning.selection import ChannelSelectionBatchNorm2d, add_channel_selection

    model = cifar_preact_resnet(20)
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"not nn\.BatchNorm2d"):
        add_channel_selection(model, x, layers=["layer1.0.conv1"])
    with pytest.raises(TypeError, match="layers"):
        add_channel_selection(model, x, layers="layer1.0.bn1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        add_channel_selection("model", x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bn"):
        ChannelSelectionBatchNorm2d.from_batchnorm(nn.Conv2d(1, 1, 1))  # type: ignore[arg-type]
    weight = model.layer1[1].bn1.weight
    assert add_channel_selection(model, x, layers=["layer1.1.bn1"]) == ["layer1.1.bn1"]
    converted = model.layer1[1].bn1
    assert isinstance(converted, ChannelSelectionBatchNorm2d)
    assert converted.weight is weight  # parameters shared, names and state_dict keys kept
    assert "layer1.1.bn1.indices" in model.state_dict()
    reference = cifar_preact_resnet(20).eval()
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if not k.endswith(".indices")})
    with torch.no_grad():  # all channels selected: the same function as the plain BN
        torch.testing.assert_close(model.eval()(x), reference(x))


@settings(max_examples=12, deadline=None)
@given(
    groups=st.integers(2, 4),
    in_per=st.integers(2, 4),
    out_per=st.integers(2, 3),
    data=st.data(),
)
def test_grouped_conv_removal_equals_masking_for_any_group_shape(groups, in_per, out_per, data):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, groups * in_per, 1),
        nn.ReLU(),
        nn.Conv2d(groups * in_per, groups * out_per, 3, padding=1, groups=groups),
        nn.ReLU(),
        nn.Conv2d(groups * out_per, 2, 1),
    ).eval()
    x = torch.rand(2, 3, 5, 5)
    graph = build_channel_graph(model, x[:1])
    group = _group_of(graph, "0")
    assert len(group.components) == in_per  # one component per in-group index
    count = data.draw(st.integers(1, in_per - 1))
    comps = np.asarray(data.draw(st.permutations(list(group.components))))[:count]
    masked = copy.deepcopy(model)
    _zero(masked, graph, comps)
    with torch.no_grad():
        expected = masked(x)
    graph.remove(comps)
    assert model[2].groups == groups
    assert model[2].in_channels == groups * (in_per - count) == model[0].out_channels
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
