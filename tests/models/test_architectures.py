"""Architectures: depth rules, parameter counts against the papers, shortcut types, normalisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunesafe.models import (
    BasicBlock,
    Bottleneck,
    CifarPreActResNet,
    CifarResNet,
    Normalize,
    PreActBasicBlock,
    PreActBottleneck,
    ZeroPadShortcut,
    cifar_bottleneck_resnet,
    cifar_preact_resnet,
    cifar_resnet,
    cifar_vgg,
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("depth", "exact", "published_m"),
    [
        (20, 269_722, 0.27),
        (32, 464_154, 0.46),
        (44, 658_586, 0.66),
        (56, 853_018, 0.85),
        (110, 1_727_962, 1.7),
    ],
)
def test_cifar_resnet_parameter_counts_match_he_2016(depth: int, exact: int, published_m: float) -> None:
    count = n_params(cifar_resnet(depth))
    assert count == exact
    # He et al. 2016a Table 6 rounds to two significant digits.
    assert round(count / 1e6, 2 if published_m < 1 else 1) == published_m


def test_bottleneck_164_and_preact_counts_match_he_2016b() -> None:
    # He et al. 2016b Tables 3/4: ResNet-164 (original and pre-act) 1.7M; pre-act ResNet-110 1.7M.
    assert round(n_params(cifar_bottleneck_resnet(164)) / 1e6, 1) == 1.7
    assert round(n_params(cifar_preact_resnet(164, block="bottleneck")) / 1e6, 1) == 1.7
    assert round(n_params(cifar_preact_resnet(110)) / 1e6, 1) == 1.7
    # Liu et al. 2017 (network slimming) Table 1: pre-act ResNet-164 1.70M.
    assert round(n_params(cifar_preact_resnet(164, block="bottleneck")) / 1e6, 2) == 1.70


def test_vgg19_count_matches_network_slimming() -> None:
    # Liu et al. 2017 Table 1: VGGNet (19 layers, CIFAR-10) 20.04M.
    assert round(n_params(cifar_vgg(19)) / 1e6, 2) == 20.04
    assert n_params(cifar_vgg(16)) == 14_724_042


@pytest.mark.parametrize(
    "build",
    [
        lambda: cifar_resnet(8),
        lambda: cifar_resnet(8, shortcut="B"),
        lambda: cifar_bottleneck_resnet(11),
        lambda: cifar_preact_resnet(8),
        lambda: cifar_preact_resnet(8, shortcut="B"),
        lambda: cifar_preact_resnet(11, block="bottleneck"),
        lambda: cifar_vgg(11),
        lambda: cifar_vgg(11, batch_norm=False),
    ],
)
def test_forward_shape_and_num_classes(build: object) -> None:
    model = build()  # type: ignore[operator]
    out = model.eval()(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


def test_num_classes_sets_classifier() -> None:
    assert cifar_resnet(8, num_classes=100).linear.out_features == 100
    assert cifar_preact_resnet(8, num_classes=7)(torch.rand(1, 3, 32, 32)).shape == (1, 7)
    assert cifar_bottleneck_resnet(11, num_classes=5).linear.in_features == 256
    assert cifar_vgg(13, num_classes=100).classifier.out_features == 100


def test_option_a_shortcuts_are_zero_pad_modules() -> None:
    model = cifar_resnet(20)
    pads = [m for m in model.modules() if isinstance(m, ZeroPadShortcut)]
    assert [(p.stride, p.pad_front, p.pad_back) for p in pads] == [(2, 8, 8), (2, 16, 16)]
    assert model.layer2[0].shortcut is pads[0]
    x = torch.randn(2, 16, 8, 8)
    out = pads[0](x)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any()
    assert not out[:, 24:].any()


def test_option_b_shortcuts_are_projections() -> None:
    model = cifar_resnet(20, shortcut="B")
    assert not any(isinstance(m, ZeroPadShortcut) for m in model.modules())
    proj = model.layer2[0].shortcut
    assert isinstance(proj, nn.Sequential)
    assert isinstance(proj[0], nn.Conv2d)
    assert proj[0].kernel_size == (1, 1)
    assert proj[0].stride == (2, 2)
    assert isinstance(proj[1], nn.BatchNorm2d)
    bottleneck = cifar_bottleneck_resnet(164)
    first = bottleneck.layer1[0].shortcut  # 16 -> 64 channels at stride 1
    assert isinstance(first, nn.Sequential)
    assert first[0].out_channels == 64
    preact = cifar_preact_resnet(164, block="bottleneck")
    pre_proj = preact.layer2[0].shortcut
    assert isinstance(pre_proj, nn.Sequential)
    assert len(pre_proj) == 1
    assert isinstance(cifar_preact_resnet(110).layer3[0].shortcut, ZeroPadShortcut)


def test_zero_pad_shortcut_validation_and_attributes() -> None:
    pad = ZeroPadShortcut(2, 3, 5)
    assert (pad.stride, pad.pad_front, pad.pad_back) == (2, 3, 5)
    assert "pad_front=3" in repr(pad)
    with pytest.raises(ValueError, match="stride"):
        ZeroPadShortcut(0, 1, 1)
    with pytest.raises(ValueError, match="paddings"):
        ZeroPadShortcut(1, -1, 1)


def test_preact_block_has_clean_identity_path() -> None:
    block = PreActBasicBlock(16, 16).eval()
    nn.init.zeros_(block.conv2.weight)  # residual branch outputs zero
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), x)  # no ReLU/BN after the addition (He et al. 2016b)
    bottleneck = PreActBottleneck(64, 16).eval()
    nn.init.zeros_(bottleneck.conv3.weight)
    y = torch.randn(2, 64, 8, 8)
    assert torch.equal(bottleneck(y), y)


def test_post_activation_blocks_apply_relu_after_addition() -> None:
    block = BasicBlock(16, 16).eval()
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), torch.relu(x))
    bottleneck = Bottleneck(64, 16).eval()
    nn.init.zeros_(bottleneck.bn3.weight)
    nn.init.zeros_(bottleneck.bn3.bias)
    y = torch.randn(2, 64, 8, 8)
    assert torch.equal(bottleneck(y), torch.relu(y))


def test_preact_network_structure() -> None:
    model = cifar_preact_resnet(8)
    assert isinstance(model, CifarPreActResNet)
    assert not hasattr(model, "bn1")  # the stem conv is not followed by BN: the first unit pre-activates
    assert isinstance(model.bn, nn.BatchNorm2d)
    assert model.bn.num_features == 64
    deep = cifar_preact_resnet(164, block="bottleneck")
    assert [len(deep.layer1), len(deep.layer2), len(deep.layer3)] == [18, 18, 18]
    assert deep.bn.num_features == 256


def test_bottleneck_depth_and_stride_on_3x3() -> None:
    model = cifar_bottleneck_resnet(164)
    assert isinstance(model, CifarResNet)
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [18, 18, 18]
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1)
    assert block.conv2.stride == (2, 2)
    assert block.conv3.out_channels == 128


def test_normalize_is_first_module_and_checkpoint_defaults() -> None:
    model = cifar_resnet(20)
    assert isinstance(model.normalize, Normalize)
    assert next(iter(model.children())) is model.normalize
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert "normalize.mean" not in model.state_dict()  # non-persistent: checkpoint format unchanged
    raw = cifar_resnet(20, mean=None, std=None)
    assert isinstance(raw.normalize, nn.Identity)
    assert torch.allclose(cifar_vgg(11).normalize.std.flatten(), torch.tensor([0.2470, 0.2435, 0.2616]))


def test_normalize_matches_manual_formula() -> None:
    x = torch.rand(2, 3, 4, 4)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(Normalize(mean, std)(x), expected)


def test_state_dict_names_follow_public_checkpoint_format() -> None:
    keys = list(cifar_resnet(20).state_dict())
    assert keys[:5] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"]
    assert "layer3.2.conv2.weight" in keys
    assert "linear.weight" in keys
    assert "linear.bias" in keys


@pytest.mark.parametrize("depth", [0, 7, 21, 22, -4, 20.0, "20", True])
def test_cifar_resnet_rejects_bad_depth(depth: object) -> None:
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_resnet(depth)  # type: ignore[arg-type]


def test_depth_error_names_nearest_valid_depths() -> None:
    with pytest.raises(ValueError, match=r"nearest valid: \[20, 26\]"):
        cifar_resnet(22)
    with pytest.raises(ValueError, match="9n \\+ 2"):
        cifar_bottleneck_resnet(32)
    with pytest.raises(ValueError, match="9n \\+ 2"):
        cifar_preact_resnet(32, block="bottleneck")
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_preact_resnet(1001)


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        cifar_resnet(20, num_classes=0)
    with pytest.raises(ValueError, match="num_classes"):
        cifar_preact_resnet(20, num_classes=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        cifar_vgg(11, num_classes=0)
    with pytest.raises(ValueError, match="shortcut"):
        cifar_resnet(20, shortcut="C")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block"):
        cifar_preact_resnet(20, block="wide")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both"):
        cifar_resnet(20, mean=None)
    with pytest.raises(ValueError, match="std must be positive"):
        cifar_resnet(20, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="equal length"):
        Normalize((0.5, 0.5), (0.2,))
    with pytest.raises(ValueError, match="depth must be one of"):
        cifar_vgg(12)
    with pytest.raises(ValueError, match="num_blocks"):
        CifarResNet([1, 1])
