"""The study's configurations in one call each, checked against the papers and their code.

* Li et al. 2017 (Table 1): VGG-16-pruned-A (conv 1 and 8-13 at 50 %) -64.0 % parameters, -34.2 % FLOPs;
  the pruned model must have exactly the architecture of their released config.
* Li et al.'s criterion (sum of absolute kernel weights, smallest removed) transcribed with numpy on
  the real weights of a published ResNet-20 checkpoint.
* Liu et al.'s threshold rule (``thre = sorted(all |gamma|)[int(total * percent)]``, keep ``> thre``),
  transcribed from their code, against ``selection="threshold"``; the global top-k over ALL BN channels.
* Per-layer ratio mappings (ResNet-56-pruned-B style, ResNet-110-pruned-A with a skipped block), the one
  rounding rule, min-channel compensation, the warnings and ``verify=True`` with a wrong channel rule.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from prunesafe.models import cifar_resnet, cifar_vgg
from prunesafe.models.cifar_vgg import CifarVGG
from prunesafe.pruning import prune_model, pruning_report, register_channel_rule, unregister_channel_rule
from prunesafe.pruning._ratios import resolve_ratio_map, validate_ratio
from prunesafe.pruning.structured import PruningVerificationError

X = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _random_gammas(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) * 2 - 1)  # signs too: |gamma| ranks
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    return model.eval()


# --------------------------------------------------------------------------- Li et al. VGG-16-pruned-A
LI_VGG16_A = {name: 0.5 for name in ["features.0", "features.24", "features.27", "features.30",
                                      "features.34", "features.37", "features.40"]}  # fmt: skip
# Li et al.'s released VGG-16-pruned-A config (rethinking-network-pruning, cifar/l1-norm-pruning/vggprune.py)
LI_VGG16_A_CFG = [32, 64, "M", 128, 128, "M", 256, 256, 256, "M", 256, 256, 256, "M", 256, 256, 256]


def test_li_vgg16_pruned_a_matches_table_1_and_the_released_config() -> None:
    model = cifar_vgg(16).eval()
    pruned = prune_model(model, "filter", LI_VGG16_A, example_inputs=X)
    report = pruning_report(model, pruned, X)
    params_drop = 1 - report.params_after / report.params_before
    macs_drop = 1 - report.macs_after / report.macs_before
    # Table 1: 64.0 % fewer parameters, 34.2 % fewer FLOPs (rounded to 0.1 %; they count conv+FC
    # multiply-adds, we count MACs of conv+Linear): within 0.5 percentage points
    assert abs(params_drop - 0.640) <= 0.005, params_drop
    assert abs(macs_drop - 0.342) <= 0.005, macs_drop
    reference = CifarVGG(LI_VGG16_A_CFG, 10, batch_norm=True)
    reference.load_state_dict(pruned.state_dict(), strict=True)  # same shapes as their released config
    assert sum(p.numel() for p in reference.parameters()) == report.params_after
    record = pruned.prunesafe_pruning
    assert record.ratio_map == LI_VGG16_A
    assert record.verified is True
    assert record.unit_layers == sorted(LI_VGG16_A)


def test_li_l1_criterion_on_real_checkpoint_weights(models_dir: Path) -> None:
    from prunesafe.models import pretrained_cifar_resnet

    model = pretrained_cifar_resnet("resnet20", models_dir).eval()
    pruned = prune_model(model, "filter", {"layer*.*.conv1": 0.5}, example_inputs=X)
    for name in ("layer1.0.conv1", "layer2.1.conv1", "layer3.2.conv1"):
        w = model.get_submodule(name).weight.detach().numpy()
        # Li et al.: s_j = sum |K| of filter j; the m smallest go (their code: argsort, keep the largest)
        s = np.abs(w).sum(axis=(1, 2, 3))
        num_keep = int(w.shape[0] * (1 - 0.5))
        keep = np.sort(np.argsort(s)[::-1][:num_keep])
        np.testing.assert_array_equal(pruned.get_submodule(name).weight.detach().numpy(), w[keep])
        bn = name.replace("conv", "bn")
        np.testing.assert_array_equal(
            pruned.get_submodule(bn).running_mean.numpy(), model.get_submodule(bn).running_mean.numpy()[keep]
        )


# --------------------------------------------------------------------------- ratio mappings
def test_resnet56_pruned_b_style_mapping_in_one_call() -> None:
    model = cifar_resnet(56).eval()
    mapping = {"layer1.*.conv1": 0.5, "layer2.*.conv1": 0.4, "layer3.*.conv1": 0.3,
               "layer1.8.conv1": 0.0, "layer2.8.conv1": 0.0}  # fmt: skip
    pruned = prune_model(model, "filter", mapping, example_inputs=X)
    widths = [
        [b.conv1.out_channels for b in stage] for stage in (pruned.layer1, pruned.layer2, pruned.layer3)
    ]
    # round(0.5*16)=8, round(0.4*32)=round(12.8)=13 removed -> 19, round(0.3*64)=round(19.2)=19 -> 45
    assert widths == [[8] * 8 + [16], [19] * 8 + [32], [45] * 9]
    assert [b.conv2.out_channels for b in pruned.layer2] == [32] * 9  # the residual stream is untouched
    record = pruned.prunesafe_pruning
    asked = (8 * 16 * 0.5 + 8 * 32 * 0.4 + 9 * 64 * 0.3) / (8 * 16 + 8 * 32 + 9 * 64)
    assert record.ratio == pytest.approx(asked)
    assert len(record.unit_layers) == 25
    removed = 8 * 8 + 8 * 13 + 9 * 19
    assert record.achieved_ratio == pytest.approx(removed / (8 * 16 + 8 * 32 + 9 * 64))


def test_resnet110_pruned_a_first_stage_last_block_skipped() -> None:
    model = cifar_resnet(110).eval()
    pruned = prune_model(model, "filter", {"layer1.*.conv1": 0.5, "layer1.17.conv1": 0}, example_inputs=X)
    assert [b.conv1.out_channels for b in pruned.layer1] == [8] * 17 + [16]
    assert all(b.conv1.out_channels == 32 for b in pruned.layer2)
    report = pruning_report(model, pruned, X)
    # Li et al. Table 1, ResNet-110-pruned-A: 15.9 % fewer FLOPs, 2.3 % fewer parameters (within 0.5 points)
    assert abs((1 - report.macs_after / report.macs_before) - 0.159) <= 0.005
    assert abs((1 - report.params_after / report.params_before) - 0.023) <= 0.005
    # and exactly: 17 blocks' conv1 and conv2 (16 x 16 x 3 x 3 at 32 x 32) lose half their MACs
    stage1_conv = 16 * 16 * 9 * 32 * 32
    assert report.macs_before - report.macs_after == 17 * stage1_conv


def test_resnet56_pruned_b_matches_table_1() -> None:
    # rethinking-network-pruning cifar/l1-norm-pruning/res56prune.py, --v B: prune_prob [0.6, 0.3, 0.1]
    # per stage, skip layer ids [16, 18, 20, 34, 38, 54]; ids count convs from 1 (the stem), block b's
    # conv1 has id 2 + 2b, and their keep count int(n * (1 - p)) is the threshold rule's for these widths
    skip = [16, 18, 20, 34, 38, 54]
    mapping: dict[str, float] = {"layer1.*.conv1": 0.6, "layer2.*.conv1": 0.3, "layer3.*.conv1": 0.1}
    for layer_id in skip:
        b = (layer_id - 2) // 2
        mapping[f"layer{b // 9 + 1}.{b % 9}.conv1"] = 0.0
    model = cifar_resnet(56).eval()
    pruned = prune_model(model, "filter", mapping, selection="threshold", example_inputs=X)
    widths = [b.conv1.out_channels for stage in (pruned.layer1, pruned.layer2, pruned.layer3) for b in stage]
    assert widths == [int(16 * 0.4)] * 7 + [16, 16] + [32] + [int(32 * 0.7)] * 6 + [32, 22] + [64] + [
        57
    ] * 7 + [64]
    report = pruning_report(model, pruned, X)
    # Li et al. Table 1, ResNet-56-pruned-B: 27.6 % fewer FLOPs, 13.7 % fewer parameters (within 0.5 points)
    assert abs((1 - report.macs_after / report.macs_before) - 0.276) <= 0.005
    assert abs((1 - report.params_after / report.params_before) - 0.137) <= 0.005


def test_mapping_errors_name_the_problem() -> None:
    model = cifar_resnet(20).eval()
    with pytest.raises(ValueError, match=r"key\(s\) \['layer9\.\*'\] match no prunable layer"):
        prune_model(model, "filter", {"layer9.*": 0.5}, example_inputs=X)
    with pytest.raises(ValueError, match=r"'layer1\.0\.conv2'.*coupled"):
        prune_model(model, "filter", {"layer1.0.conv2": 0.5}, example_inputs=X)
    with pytest.raises(ValueError, match=r"ratio\['conv1'\] must be in \[0, 1\)"):
        prune_model(model, "filter", {"conv1": 1.5}, example_inputs=X)
    with pytest.raises(TypeError, match="either a ratio mapping or layers="):
        prune_model(model, "filter", {"conv1": 0.5}, layers=["conv1"], example_inputs=X)
    with pytest.raises(ValueError, match="need one ratio"):
        prune_model(
            model, "filter", {"layer*.conv2": 0.5, "conv1": 0.3}, coupling="together", example_inputs=X
        )
    with pytest.raises(ValueError, match="only partly selected by the ratio mapping"):
        prune_model(model, "filter", {"layer1.*.conv2": 0.5}, coupling="together", example_inputs=X)
    # a glob reaching coupled convs as well as free ones prunes the free ones
    pruned = prune_model(model, "filter", {"layer1.*": 0.5}, example_inputs=X)
    assert [b.conv1.out_channels for b in pruned.layer1] == [8, 8, 8]


def test_unstructured_mapping_prunes_layer_by_layer() -> None:
    model = cifar_resnet(20)
    pruned = prune_model(model, "unstructured", {"layer1.*": 0.5, "layer3.*": 0.8})
    for name, module in pruned.named_modules():
        if isinstance(module, nn.Conv2d):
            zeros = int((module.weight == 0).sum())
            want = {"layer1": 0.5, "layer3": 0.8}.get(name.split(".")[0], 0.0)
            assert zeros == round(want * module.weight.numel()), name


# --------------------------------------------------------------------------- Liu et al.'s rules
def _liu_threshold(model: nn.Module, percent: float) -> float:
    """Transcribed from network-slimming's vggprune.py / resprune.py: one threshold over ALL BN gammas."""
    total = sum(m.weight.shape[0] for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    bn = torch.zeros(total)
    index = 0
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            size = m.weight.shape[0]
            bn[index : index + size] = m.weight.data.abs().clone()
            index += size
    y, _ = torch.sort(bn)
    thre_index = int(total * percent)
    return float(y[thre_index])


@pytest.mark.parametrize("percent", [0.3, 0.7])
def test_liu_threshold_rule_on_vgg_is_their_code(percent: float) -> None:
    model = _random_gammas(cifar_vgg(16), seed=1)
    thre = _liu_threshold(model, percent)
    pruned = prune_model(model, "channel", percent, selection="threshold", example_inputs=X)
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            kept = m.weight.data.abs().gt(thre)  # their mask
            np.testing.assert_array_equal(pruned.get_submodule(name).weight.detach().numpy(),
                                          m.weight.detach().numpy()[kept.numpy()])  # fmt: skip
    assert pruned.prunesafe_pruning.achieved_ratio_of_all >= percent  # ties pruned: achieved >= asked


def test_liu_threshold_ties_are_pruned_so_achieved_exceeds_asked() -> None:
    model = _random_gammas(cifar_vgg(11), seed=2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # quantise: many ties at every value
                m.weight.copy_((m.weight.abs() * 4).round() / 4 + 0.25)
    topk = prune_model(model, "channel", 0.5, example_inputs=X).prunesafe_pruning
    threshold = prune_model(model, "channel", 0.5, selection="threshold", example_inputs=X).prunesafe_pruning
    assert topk.achieved_ratio_of_all == pytest.approx(0.5, abs=1 / 2752)
    assert threshold.achieved_ratio_of_all > 0.5 + 0.05


def test_channel_threshold_over_all_bn_channels_on_resnet56() -> None:
    model = _random_gammas(cifar_resnet(56), seed=3)
    gammas = [(n, m.weight.detach().abs().numpy()) for n, m in model.named_modules()
              if isinstance(m, nn.BatchNorm2d)]  # fmt: skip
    everything = np.concatenate([g for _, g in gammas])
    k = round(0.4 * len(everything))
    cut = np.sort(everything)[k - 1]  # the k-th smallest |gamma| of ALL BN channels (no ties: random)
    thre = _liu_threshold(model, 0.4)
    for selection, keep_rule in (("topk", lambda g: g > cut), ("threshold", lambda g: g > thre)):
        pruned = prune_model(model, "channel", 0.4, selection=selection, example_inputs=X)
        for name, g in gammas:
            eligible = name.startswith("layer") and name.endswith("bn1")  # "exclude": first BN of each block
            want = int(keep_rule(g).sum()) if eligible else len(g)
            assert pruned.get_submodule(name).num_features == max(want, 1), (selection, name)
    eligible_only = prune_model(model, "channel", 0.4, threshold_scope="eligible", example_inputs=X)
    assert eligible_only.prunesafe_pruning.achieved_ratio == pytest.approx(0.4, abs=1e-3)


def test_one_rounding_rule_half_to_even_like_torch() -> None:
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 7, 3),
                          nn.BatchNorm2d(7), nn.ReLU(), nn.Conv2d(7, 2, 1))  # fmt: skip
    x = torch.rand(1, 3, 8, 8)
    pruned = prune_model(model, "filter", 0.5, example_inputs=x)
    assert (pruned[0].out_channels, pruned[3].out_channels) == (5 - 2, 7 - 4)  # round(2.5)=2, round(3.5)=4
    masked = prune_model(nn.Sequential(nn.Conv2d(1, 1, (1, 5))), "unstructured", 0.5)
    assert int((masked[0].weight == 0).sum()) == 2 == round(0.5 * 5)
    bn = prune_model(model, "channel", 0.5, example_inputs=x)  # 12 BN channels -> 6
    assert bn[1].num_features + bn[4].num_features == 6


def test_min_channel_protection_takes_other_channels_instead() -> None:
    model = _random_gammas(cifar_vgg(11), seed=4)
    with torch.no_grad():
        model.features[1].weight.mul_(1e-3)  # the first BN would lose every channel
    pruned = prune_model(model, "channel", 0.5, min_channels=8, example_inputs=X)
    record = pruned.prunesafe_pruning
    assert pruned.features[1].num_features == 8
    assert record.achieved_ratio_of_all == pytest.approx(0.5, abs=1 / 2752)
    assert not record.notes
    # coupled option-A groups span BNs of different widths: slot protection used to leave 0.884 of 0.9
    resnet = _random_gammas(cifar_resnet(20), seed=5)
    together = prune_model(resnet, "channel", 0.9, coupling="together", example_inputs=X)
    assert together.prunesafe_pruning.achieved_ratio == pytest.approx(round(0.9 * 688) / 688, abs=1 / 688)
    assert min(m.num_features for m in together.modules() if isinstance(m, nn.BatchNorm2d)) >= 1
    # impossible asks are documented in the record
    with pytest.warns(UserWarning, match="min_channels=60"):
        short = prune_model(model, "filter", 0.9, min_channels=60, example_inputs=X).prunesafe_pruning
    assert any("min_channels=60" in note for note in short.notes)


# --------------------------------------------------------------------------- warnings
def test_constant_gamma_warns() -> None:
    with pytest.warns(UserWarning, match="same |gamma|"):
        pruned = prune_model(cifar_vgg(11), "channel", 0.5, example_inputs=X)  # fresh: every gamma 0.5
    assert any("same |gamma|" in note for note in pruned.prunesafe_pruning.notes)


def test_few_eligible_units_warn_and_the_record_leads_with_the_all_units_fraction() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 60, 1))  # the 60 reach the output
    with pytest.warns(UserWarning, match=r"only 6\.2% of the model's filters were eligible"):
        pruned = prune_model(model, "filter", 0.5, example_inputs=torch.rand(1, 3, 4, 4))
    record = pruned.prunesafe_pruning
    assert record.achieved_ratio == 0.5
    assert record.achieved_ratio_of_all == pytest.approx(2 / 64)
    assert str(record).startswith("filter: 3.12% of ALL filters removed")
    assert list(record.to_dict())[:3] == ["method", "unit", "achieved_ratio_of_all"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit selection is intentional: no warning
        prune_model(model, "filter", {"0": 0.5}, example_inputs=torch.rand(1, 3, 4, 4))


# --------------------------------------------------------------------------- verify
class _Flip(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1)


def _wrong_flip_rule(module: nn.Module, ctx: object) -> None:
    ctx.tie(ctx.inputs[0], ctx.output)  # type: ignore[attr-defined]  # WRONG: channel i comes out at C-1-i


@pytest.fixture
def wrong_flip_rule() -> Iterator[None]:
    register_channel_rule(_Flip, _wrong_flip_rule, preserves_shape=True)
    yield
    unregister_channel_rule(_Flip)


@pytest.mark.usefixtures("wrong_flip_rule")
def test_verify_catches_a_wrong_channel_rule() -> None:
    torch.manual_seed(0)
    model = _random_gammas(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), _Flip(),
                                         nn.Conv2d(8, 4, 3)))  # fmt: skip
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(PruningVerificationError, match="disagrees with the original"):
        prune_model(model, "filter", 0.5, example_inputs=x)  # verify is on by default for a small model
    with pytest.raises(PruningVerificationError):
        prune_model(model, "channel", 0.5, example_inputs=x, verify=True)
    unchecked = prune_model(model, "filter", 0.5, example_inputs=x, verify=False)
    assert unchecked.prunesafe_pruning.verified is False
    assert unchecked(x).shape == model(x).shape  # shape-correct, yet wrong: exactly what verify is for
    correct = nn.Sequential(*[m for m in model if not isinstance(m, _Flip)])
    assert prune_model(correct, "filter", 0.5, example_inputs=x).prunesafe_pruning.verified is True


def test_verify_bad_values() -> None:
    with pytest.raises(TypeError, match="verify must be"):
        prune_model(cifar_vgg(11), "filter", 0.5, example_inputs=X, verify="yes")
    assert prune_model(cifar_vgg(11), "unstructured", 0.5, verify=True).prunesafe_pruning.verified is None


# --------------------------------------------------------------------------- ratio validation (hypothesis)
NAMES = [f"layer{s}.{b}.conv{c}" for s in (1, 2) for b in range(3) for c in (1, 2)]


@given(st.one_of(st.floats(max_value=-1e-12), st.floats(min_value=1.0), st.just(float("nan"))))
def test_out_of_range_ratios_in_a_mapping_name_the_key(bad: float) -> None:
    with pytest.raises(ValueError, match=r"ratio\['layer1\.\*'\] must be in \[0, 1\)"):
        validate_ratio({"layer1.*": 0.5, "layer2.*": 0.3} | {"layer1.*": bad})


@given(st.dictionaries(st.sampled_from(NAMES), st.floats(0.0, 0.99), min_size=1))
def test_exact_names_resolve_to_themselves_and_zero_skips(mapping: dict[str, float]) -> None:
    assert resolve_ratio_map(mapping, NAMES) == {n: mapping[n] for n in NAMES if mapping.get(n, 0) > 0}


@given(st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_the_last_matching_key_wins(general: float, exception: float) -> None:
    resolved = resolve_ratio_map({"layer*": general, "layer2.*.conv1": exception}, NAMES)
    assert all(resolved[n] == (exception if n.startswith("layer2") and n.endswith("conv1") else general)
               for n in NAMES)  # fmt: skip
    flipped = resolve_ratio_map({"layer2.*.conv1": exception, "layer*": general}, NAMES)
    assert set(flipped.values()) == {general}


def test_explain_follows_a_ratio_mapping() -> None:
    from prunesafe.pruning import FilterPruner

    why = FilterPruner({"layer1.*.conv1": 0.5, "layer1.2.conv1": 0}).explain(
        cifar_resnet(20), example_inputs=X
    )
    assert why["layer1.0.conv1"] == why["layer1.1.conv1"] == ""
    assert why["layer1.2.conv1"] == why["layer2.0.conv1"] == "not selected by the ratio mapping"


def test_verify_is_skipped_where_removal_legitimately_differs_from_masking() -> None:
    class ChannelsLastNorm(nn.Module):  # ConvNeXt-style: LayerNorm over the channels, so removal != masking
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, c, 3), nn.Conv2d(c, 4, 1)
            self.norm = nn.LayerNorm(c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv2(self.norm(self.conv1(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))

    model = ChannelsLastNorm(8).eval()
    x = torch.rand(2, 3, 8, 8)
    record = prune_model(model, "filter", 0.5, example_inputs=x).prunesafe_pruning
    assert record.verified is False
    assert any("normalises across channels (LayerNorm)" in n for n in record.notes)
    with pytest.raises(PruningVerificationError):  # asked explicitly, it checks -- and the outputs do differ
        prune_model(model, "filter", 0.5, example_inputs=x, verify=True)
