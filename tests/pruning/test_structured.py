"""Filter and channel pruners: masked == removed, sweeps over models, export/compile, bad input."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from prunesafe.models import ZeroPadShortcut, cifar_resnet, cifar_vgg
from prunesafe.pruning import prune_model, pruning_report
from prunesafe.pruning.base import get_pruner
from prunesafe.pruning.graph import build_channel_graph
from prunesafe.pruning.structured import ChannelPruner, FilterPruner

CIFAR = (2, 3, 32, 32)
IMAGENET = (1, 3, 64, 64)

BUILDERS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "cifar_vgg16": (lambda: cifar_vgg(16), CIFAR),
    "cifar_resnet20": (lambda: cifar_resnet(20), CIFAR),
    "cifar_resnet56": (lambda: cifar_resnet(56), CIFAR),
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), IMAGENET),
    "resnet50": (lambda: torchvision.models.resnet50(weights=None), IMAGENET),
    "vgg16_bn": (lambda: torchvision.models.vgg16_bn(weights=None), IMAGENET),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(weights=None), IMAGENET),
}
_CACHE: dict[str, nn.Module] = {}


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so that eval-mode BN is not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model


def _model(name: str) -> tuple[nn.Module, torch.Tensor]:
    """A fresh copy of a (cached) eval-mode model and an input batch."""
    builder, shape = BUILDERS[name]
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = _randomise_bn(builder()).eval()
    return copy.deepcopy(_CACHE[name]), torch.rand(shape, generator=torch.Generator().manual_seed(1))


def _mask(model: nn.Module, pruner: FilterPruner | ChannelPruner, x: torch.Tensor, fraction: float) -> int:
    """Zero a random ``fraction`` of the channels of every group ``pruner`` may prune.

    Filter-owning slots lose their filter and bias, BatchNorms their gamma and beta, channel-wise
    layers (depthwise convs) their weights: the channel is then exactly zero everywhere.
    Returns the number of components zeroed.
    """
    graph = build_channel_graph(model, x[:1])
    eligible, _ = pruner._eligible(model, graph)
    rng = np.random.default_rng(0)
    chosen = [
        rng.choice(g.components, size=int(fraction * len(g.components)), replace=False) for g in eligible
    ]
    dead = np.zeros(graph.num_components, dtype=bool)
    dead[np.concatenate(chosen)] = True
    with torch.no_grad():
        for slot in graph.slots:
            if slot.role == "consumer":
                continue
            idx = torch.from_numpy(np.nonzero(dead[graph.labels[slot.elements]])[0])
            for attr, dim in slot.tensors:
                tensor = getattr(slot.module, attr, None)
                if attr.startswith("running_") or tensor is None:
                    continue
                tensor.index_fill_(dim, idx, 0.0)
    return int(dead.sum())


def _shapes_consistent(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert m.weight.shape[:2] == (m.out_channels, m.in_channels // m.groups), name
            assert m.out_channels > 0, name
            assert m.in_channels > 0, name
            if m.bias is not None:
                assert m.bias.shape == (m.out_channels,), name
        elif isinstance(m, nn.Linear):
            assert m.weight.shape == (m.out_features, m.in_features), name
            assert m.in_features > 0, name
        elif isinstance(m, nn.BatchNorm2d):
            assert m.num_features > 0, name
            for t in (m.weight, m.bias, m.running_mean, m.running_var):
                assert t.shape == (m.num_features,), name
        elif isinstance(m, ZeroPadShortcut):
            assert m.pad_front >= 0
            assert m.pad_back >= 0


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- masked == removed
MASKED_CASES = [
    ("cifar_vgg16", FilterPruner, "exclude"),
    ("cifar_resnet20", FilterPruner, "exclude"),
    ("cifar_resnet20", FilterPruner, "together"),
    ("cifar_resnet20", ChannelPruner, "together"),
    ("cifar_resnet56", FilterPruner, "exclude"),
    ("cifar_resnet56", FilterPruner, "together"),
    ("cifar_resnet56", ChannelPruner, "exclude"),
    ("mobilenet_v2", FilterPruner, "exclude"),
    ("mobilenet_v2", ChannelPruner, "together"),
    ("resnet18", FilterPruner, "together"),
]


@pytest.mark.parametrize(("name", "cls", "coupling"), MASKED_CASES)
def test_masked_equals_removed(name, cls, coupling):
    model, x = _model(name)
    # the zeroed half of the eligible channels must be the lowest 40 %: count the eligible ones only
    pruner = cls(0.4, coupling=coupling, **({"threshold_scope": "eligible"} if cls is ChannelPruner else {}))
    zeroed = _mask(model, pruner, x, fraction=0.5)
    assert zeroed > 0
    with torch.no_grad():
        expected = model(x)
    before = _params(model)
    pruner.prune(model, example_inputs=x[:1])
    assert pruner.achieved_ratio is not None
    assert pruner.achieved_ratio > 0.3
    _shapes_consistent(model)
    assert _params(model) < before
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_option_a_resnet56_exclude_keeps_the_stream_together_shrinks_the_padding():
    model, x = _model("cifar_resnet56")
    FilterPruner(0.5, coupling="exclude").prune(model, example_inputs=x[:1])
    # exclude: the residual stream (and so the zero padding of the shortcuts) is untouched
    assert [(b.shortcut.pad_front, b.shortcut.pad_back) for b in (model.layer2[0], model.layer3[0])] == [
        (8, 8),
        (16, 16),
    ]
    assert {b.conv2.out_channels for b in model.layer2} == {32}
    assert {b.conv1.out_channels for b in model.layer2} == {16}
    model, x = _model("cifar_resnet56")
    FilterPruner(0.5, coupling="together").prune(model, example_inputs=x[:1])
    for stage, pad in ((model.layer2, 8), (model.layer3, 16)):
        block, sc = stage[0], stage[0].shortcut
        assert isinstance(sc, ZeroPadShortcut)
        out = block.conv2.out_channels
        assert sc.pad_front + block.conv1.in_channels + sc.pad_back == out  # option A: pad + input = output
        assert sc.pad_front + sc.pad_back < 2 * pad  # zero channels were pruned with the stream
        assert {b.conv2.out_channels for b in stage} == {out}  # one width along the residual stream
    assert model.linear.in_features == model.layer3[-1].conv2.out_channels < 64
    assert model.conv1.out_channels < 16
    assert model(x).shape == (2, 10)


def test_unmasked_removal_changes_outputs():
    """Guard for the masked == removed test: removing live channels does change the output."""
    model, x = _model("cifar_resnet20")
    with torch.no_grad():
        expected = model(x)
    FilterPruner(0.5).prune(model, example_inputs=x[:1])
    assert not torch.allclose(model(x), expected, atol=1e-3)


# --------------------------------------------------------------------------- ratio 0 and sweep
@pytest.mark.parametrize("cls", [FilterPruner, ChannelPruner])
def test_ratio_zero_is_identity(cls):
    model, x = _model("cifar_resnet20")
    reference = copy.deepcopy(model)
    pruner = cls(0.0, coupling="together")
    pruner.prune(model, example_inputs=x[:1])
    assert pruner.achieved_ratio == 0.0
    assert pruner.pruned_modules == []
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values())
    )
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


SWEEP = (
    [
        (name, cls, ratio)
        for name in ("cifar_vgg16", "cifar_resnet56")
        for cls in (FilterPruner, ChannelPruner)
        for ratio in (0.3, 0.5, 0.9)
    ]
    + [("cifar_resnet20", cls, 0.5) for cls in (FilterPruner, ChannelPruner)]
    + [
        (name, cls, r)
        for name in ("resnet18", "mobilenet_v2")
        for cls in (FilterPruner, ChannelPruner)
        for r in (0.5, 0.9)
    ]
    + [(name, cls, 0.5) for name in ("resnet50", "vgg16_bn") for cls in (FilterPruner, ChannelPruner)]
)


@pytest.mark.parametrize(("name", "cls", "ratio"), SWEEP)
def test_sweep(name, cls, ratio):
    model, x = _model(name)
    with torch.no_grad():
        shape = model(x).shape
    before = _params(model)
    coupling = "together" if ratio == 0.5 else "exclude"
    pruner = cls(ratio, coupling=coupling)
    pruner.prune(model, example_inputs=x[:1])
    _shapes_consistent(model)
    with torch.no_grad():
        assert model(x).shape == shape
    assert _params(model) < before
    assert abs(pruner.achieved_ratio - ratio) <= 0.05, pruner.achieved_ratio
    assert pruner.pruned_modules


def test_channel_pruner_uses_one_global_threshold():
    model, x = _model("cifar_vgg16")
    with torch.no_grad():
        model.features[1].weight.mul_(100)  # first BN: large gammas, should keep all its channels
    pruner = ChannelPruner(0.5)
    pruner.prune(model, example_inputs=x[:1])
    assert model.features[1].num_features == 64
    assert pruner.achieved_ratio == pytest.approx(0.5, abs=1e-3)


def test_channel_pruner_never_empties_a_layer():
    model, x = _model("cifar_vgg16")
    with torch.no_grad():
        model.features[4].weight.zero_()  # a whole BN at zero: slimming would remove every channel
    ChannelPruner(0.3, min_channels=4).prune(model, example_inputs=x[:1])
    assert model.features[4].num_features == 4
    assert model.features[3].out_channels == 4
    assert model(x).shape == (2, 10)


def test_filter_pruner_rounding_and_l2():
    model, x = _model("cifar_vgg16")
    FilterPruner(0.3, norm="l2").prune(model, example_inputs=x[:1])
    assert model.features[0].out_channels == 64 - round(0.3 * 64)  # 19 removed of 64
    assert model.classifier.in_features == 512 - round(0.3 * 512)


def test_layer_selection_names_and_predicate():
    model, x = _model("cifar_resnet20")
    pruner = FilterPruner(0.5, layers=["layer1.0.conv1", "layer3.2.conv1"])
    pruner.prune(model, example_inputs=x[:1])
    assert model.layer1[0].conv1.out_channels == 8
    assert model.layer3[2].conv1.out_channels == 32
    assert model.layer1[1].conv1.out_channels == 16
    changed = ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2", "layer3.2.conv1", "layer3.2.bn1"]
    assert pruner.pruned_modules == [*changed, "layer3.2.conv2"]

    model, x = _model("cifar_resnet20")
    FilterPruner(0.5, layers=lambda name, m: name.startswith("layer2")).prune(model, example_inputs=x[:1])
    assert [b.conv1.out_channels for b in model.layer2] == [16, 16, 16]
    assert [b.conv1.out_channels for b in model.layer1] == [16, 16, 16]


# --------------------------------------------------------------------------- export / compile / state_dict
def test_export_compile_and_state_dict_of_pruned_model():
    model, x = _model("cifar_resnet20")
    FilterPruner(0.5, coupling="together").prune(model, example_inputs=x[:1])
    with torch.no_grad():
        expected = model(x)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), expected)
    compiled = torch.compile(model, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), expected)
    state = model.state_dict()
    for key, value in state.items():
        module_name, _, attr = key.rpartition(".")
        assert getattr(model.get_submodule(module_name), attr).shape == value.shape
    fresh = copy.deepcopy(model)
    fresh.load_state_dict(state, strict=True)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


# every model of the issue, filter and channel pruning alternating (export is the slow part)
EXPORT_CASES = [
    (name, ("filter", "channel")[i % 2], "together" if i % 4 >= 2 else "exclude")
    for i, name in enumerate(BUILDERS)
]


@pytest.mark.parametrize(("name", "method", "coupling"), EXPORT_CASES)
def test_every_pruned_model_exports_compiles_and_drops_parameters_as_reported(name, method, coupling):
    model, x = _model(name)
    pruned = prune_model(model, method, 0.5, example_inputs=x[:1], coupling=coupling)
    report = pruning_report(model, pruned, x[:1])
    assert report.params_before == _params(model)
    assert report.params_after == _params(pruned) < _params(model)
    assert report.macs_after < report.macs_before
    _shapes_consistent(pruned)
    with torch.no_grad():
        expected = pruned(x)
        assert expected.shape == model(x).shape
    exported = torch.export.export(pruned, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), expected)
        torch.testing.assert_close(torch.compile(pruned, backend="eager")(x), expected)


def test_pruned_parameters_keep_dtype_device_and_requires_grad():
    model = cifar_vgg(11).double().eval()
    model.features[0].weight.requires_grad_(False)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    model(x).sum().backward()
    FilterPruner(0.5).prune(model, example_inputs=x)
    assert model.features[0].weight.dtype == torch.float64
    assert not model.features[0].weight.requires_grad
    assert model.features[1].weight.requires_grad
    assert model.features[1].weight.grad is None
    assert model.features[4].weight.grad is None
    model(x).sum().backward()  # trains after pruning


# --------------------------------------------------------------------------- registry and bad input
def test_registered_names():
    assert get_pruner("filter") is FilterPruner
    assert get_pruner("channel") is ChannelPruner
    assert FilterPruner.requires_example_inputs
    assert ChannelPruner.requires_example_inputs
    assert FilterPruner.unit == "filters"
    assert ChannelPruner.unit == "channels"


class OnlyLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_no_prunable_layers():
    with pytest.raises(ValueError, match="no prunable layers"):
        FilterPruner(0.5, prune_linear=False).prune(OnlyLinear(), example_inputs=torch.rand(1, 4))
    hidden = FilterPruner(0.5).prune(OnlyLinear(), example_inputs=torch.rand(1, 4))  # hidden units are units
    assert (hidden.fc1.out_features, hidden.fc2.in_features, hidden.fc2.out_features) == (4, 4, 2)
    with pytest.raises(ValueError, match="no prunable layers"):  # no BatchNorm anywhere
        ChannelPruner(0.5).prune(cifar_vgg(11, batch_norm=False), example_inputs=torch.rand(1, 3, 32, 32))


def test_bad_options():
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="valid names"):
        FilterPruner(0.5, layers=["layer1.0.conv9"]).prune(cifar_resnet(20), example_inputs=x)
    with pytest.raises(ValueError, match="coupling"):
        FilterPruner(0.5, layers=["layer1.0.conv2"]).prune(cifar_resnet(20), example_inputs=x)
    with pytest.raises(ValueError, match="coupling"):
        FilterPruner(0.5, coupling="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="norm"):
        FilterPruner(0.5, norm="l0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="layers"):
        FilterPruner(0.5, layers="conv1")
    with pytest.raises(ValueError, match="min_channels"):
        ChannelPruner(0.5, min_channels=0)
    with pytest.raises(ValueError, match="ratio"):
        FilterPruner(1.0)
    with pytest.raises(TypeError, match="example_inputs"):
        FilterPruner(0.5).prune(cifar_resnet(20))
    with pytest.raises(TypeError, match="model"):
        ChannelPruner(0.5).prune("resnet", example_inputs=x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid names"):  # channel layers are BatchNorm names
        ChannelPruner(0.5, layers=["conv1"]).prune(cifar_resnet(20), example_inputs=x)


def test_structured_after_unstructured_masks_keeps_masks_consistent():
    from torch.nn.utils import prune

    model, x = _model("cifar_resnet20")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    prune.global_unstructured([(c, "weight") for c in convs], pruning_method=prune.L1Unstructured, amount=0.5)
    with torch.no_grad():
        model(x)
    FilterPruner(0.5).prune(model, example_inputs=x[:1])
    for conv in convs:
        assert conv.weight_orig.shape == conv.weight_mask.shape == (conv.out_channels, conv.in_channels, 3, 3)
    assert model.layer1[0].conv1.out_channels == 8
    with torch.no_grad():
        assert model(x).shape == (2, 10)
    for conv in convs:  # the forward pre-hook recomputed weight = orig * mask with the new shapes
        assert conv.weight.shape == conv.weight_mask.shape
        assert torch.equal(conv.weight, conv.weight_orig * conv.weight_mask)


def test_explain_lists_every_layer_with_its_reason():
    model, x = _model("cifar_resnet20")
    reference = copy.deepcopy(model)
    why = FilterPruner(0.5).explain(model, example_inputs=x[:1])
    assert set(why) == {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert {n for n, r in why.items() if not r} == {
        f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)
    }
    assert "coupling" in why["layer2.1.conv2"]
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values())
    )
    together = FilterPruner(0.5, coupling="together", layers=["layer1.0.conv1"]).explain(
        model, example_inputs=x
    )
    assert together["layer1.0.conv1"] == ""
    assert together["layer1.1.conv1"] == "not selected by layers="
    bn = ChannelPruner(0.5).explain(model, example_inputs=x)
    assert set(bn) == {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert bn["layer1.0.bn1"] == ""


def _units(model: nn.Module, kind: type[nn.Module]) -> int:
    if kind is nn.BatchNorm2d:
        return sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(
    ("cls", "kind", "coupling"),
    [
        (ChannelPruner, nn.BatchNorm2d, "exclude"),
        (FilterPruner, nn.Conv2d, "exclude"),
        (ChannelPruner, nn.BatchNorm2d, "together"),
    ],
)
def test_ratio_over_eligible_units_and_over_all_units(cls, kind, coupling):
    model, x = _model("cifar_resnet56")
    before = _units(model, kind)
    pruner = cls(0.5, coupling=coupling, **({"threshold_scope": "eligible"} if cls is ChannelPruner else {}))
    pruner.prune(model, example_inputs=x[:1])
    of_all = 1.0 - _units(model, kind) / before
    assert pruner.achieved_ratio == pytest.approx(0.5, abs=0.01)
    assert pruner.achieved_ratio_of_all == pytest.approx(of_all, abs=1e-12)
    if coupling == "exclude":
        # the residual stream (stem + every block's second conv/BN) is not eligible: half of all units
        assert pruner.eligible_fraction == pytest.approx(1008 / 2032)
        assert pruner.achieved_ratio_of_all == pytest.approx(504 / 2032)
    else:
        assert pruner.eligible_fraction == pytest.approx(1.0)
        assert pruner.achieved_ratio_of_all == pytest.approx(0.5, abs=0.01)
