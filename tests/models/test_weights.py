"""load_weights / extract_state_dict / the pretrained registry."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from prunesafe.models import (
    PRETRAINED_CHECKPOINTS,
    CheckpointMismatchError,
    cifar_bottleneck_resnet,
    cifar_resnet,
    extract_state_dict,
    file_sha256,
    load_weights,
    pretrained_cifar_resnet,
)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def source() -> nn.Module:
    torch.manual_seed(0)
    model = cifar_resnet(8)
    for m in model.modules():  # non-trivial BN statistics too
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_()
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3, "best_prec1": 91.2},
        lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}},
        lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {"net": {"_orig_mod." + k: v for k, v in sd.items()}},
        lambda sd: {"model_state_dict": sd},
        lambda sd: {
            "checkpoint": 1,
            "model": {"state_dict": {"module._orig_mod." + k: v for k, v in sd.items()}},
        },
        lambda sd: collections.OrderedDict(("backbone." + k, v) for k, v in sd.items()),
    ],
)
def test_load_weights_accepts_common_formats(source: nn.Module, wrap: object, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(source.state_dict()), path)  # type: ignore[operator]
    target = cifar_resnet(8)
    assert load_weights(target, path) is target
    assert _same_weights(source, target)


def test_load_weights_accepts_loaded_mapping_and_pathlike_str(source: nn.Module, tmp_path: Path) -> None:
    target = load_weights(cifar_resnet(8), {"state_dict": source.state_dict()})
    assert _same_weights(source, target)
    path = tmp_path / "w.th"
    torch.save(source.state_dict(), path)
    assert _same_weights(source, load_weights(cifar_resnet(8), str(path)))


def test_missing_num_batches_tracked_is_filled(source: nn.Module) -> None:
    old = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    target = load_weights(cifar_resnet(8), old)
    assert int(target.bn1.num_batches_tracked) == 0
    assert torch.equal(target.bn1.running_var, source.bn1.running_var)


def test_strict_error_lists_missing_unexpected_and_suggests_depth(source: nn.Module) -> None:
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(cifar_resnet(20), source.state_dict())
    err = info.value
    assert isinstance(err, ValueError)
    assert "layer1.1.conv1.weight" in err.missing
    assert not err.unexpected
    assert not err.mismatched
    message = str(err)
    assert "missing from the checkpoint" in message
    assert "cifar_resnet(8)" in message  # the fix
    assert "... and" in message  # long lists are truncated
    with pytest.raises(CheckpointMismatchError, match="unexpected in the checkpoint") as info2:
        load_weights(cifar_resnet(8), cifar_resnet(20).state_dict())
    assert "cifar_resnet(20)" in str(info2.value)


def test_strict_error_on_shape_mismatch_suggests_num_classes(source: nn.Module) -> None:
    with pytest.raises(CheckpointMismatchError, match="num_classes=10") as info:
        load_weights(cifar_resnet(8, num_classes=100), source.state_dict())
    assert info.value.mismatched == [("linear.weight", (10, 64), (100, 64)), ("linear.bias", (10,), (100,))]
    assert "(10, 64) vs (100, 64)" in str(info.value)


def test_bottleneck_checkpoint_into_basic_model_names_builder() -> None:
    with pytest.raises(CheckpointMismatchError, match=r"cifar_bottleneck_resnet\(11\)"):
        load_weights(cifar_resnet(8), cifar_bottleneck_resnet(11).state_dict())


def test_pruned_reparametrisation_hint(source: nn.Module) -> None:
    pruned = cifar_resnet(8)
    prune.l1_unstructured(pruned.conv1, "weight", amount=0.5)
    with pytest.raises(CheckpointMismatchError, match=r"prune\.remove"):
        load_weights(pruned, source.state_dict())
    with pytest.raises(CheckpointMismatchError, match=r"pruned with torch\.nn\.utils\.prune"):
        load_weights(cifar_resnet(8), pruned.state_dict())


def test_non_strict_loads_matching_entries_and_warns(source: nn.Module) -> None:
    target = cifar_resnet(8, num_classes=100)
    before = target.linear.weight.clone()
    with pytest.warns(UserWarning, match="strict=False"):
        load_weights(target, source.state_dict(), strict=False)
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert torch.equal(target.linear.weight, before)  # mismatched entry skipped, not half-loaded


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.th"):
        load_weights(cifar_resnet(8), tmp_path / "nope.th")
    torch.save({"epoch": 3, "acc": torch.tensor(0.9), "notes": "x"}, tmp_path / "no_sd.th")
    with pytest.raises(ValueError, match=r"no state dict found.*'epoch': int"):
        load_weights(cifar_resnet(8), tmp_path / "no_sd.th")
    torch.save([torch.zeros(1)], tmp_path / "list.th")
    with pytest.raises(ValueError, match="object of type list"):
        load_weights(cifar_resnet(8), tmp_path / "list.th")


class _Pickled:
    def __init__(self) -> None:
        self.value = 1


def test_refuses_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": cifar_resnet(8).state_dict(), "extra": _Pickled()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_weights(cifar_resnet(8), path)
    torch.save(cifar_resnet(8), tmp_path / "whole_model.pt")  # a pickled nn.Module
    with pytest.raises(ValueError, match="never unpickles"):
        load_weights(cifar_resnet(8), tmp_path / "whole_model.pt")


def test_bad_argument_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="path must be"):
        load_weights(cifar_resnet(8), 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be"):
        load_weights("resnet20", tmp_path)  # type: ignore[arg-type]


def test_extract_state_dict_strips_prefixes() -> None:
    sd = extract_state_dict({"state_dict": {"module.a.weight": torch.zeros(1), "module.b": torch.ones(1)}})
    assert list(sd) == ["a.weight", "b"]


# ---------------------------------------------------------------------------------------------------------
# shared public checkpoints


@pytest.mark.shared
@pytest.mark.parametrize(("name", "depth"), [("resnet20-12fca82f.th", 20), ("resnet32-d509ac18.th", 32)])
def test_public_checkpoints_load_unchanged(models_dir: Path, name: str, depth: int) -> None:
    model = load_weights(cifar_resnet(depth), models_dir / name)
    raw = torch.load(models_dir / name, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(model.linear.weight, raw["module.linear.weight"])
    assert torch.equal(
        model.layer3[-1].bn2.running_var, raw[f"module.layer3.{(depth - 2) // 6 - 1}.bn2.running_var"]
    )


@pytest.mark.shared
def test_public_checkpoint_wrong_depth_error(models_dir: Path) -> None:
    with pytest.raises(CheckpointMismatchError, match=r"cifar_resnet\(20\)"):
        load_weights(cifar_resnet(32), models_dir / "resnet20-12fca82f.th")


@pytest.mark.shared
@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet20-jpeg"])
def test_registry_hashes_match_shared_files(models_dir: Path, name: str) -> None:
    entry = PRETRAINED_CHECKPOINTS[name]
    assert file_sha256(models_dir / entry.filename) == entry.sha256
    model = pretrained_cifar_resnet(name, models_dir)  # folder form
    assert not model.training
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor(entry.mean))


def test_registry_contents() -> None:
    assert PRETRAINED_CHECKPOINTS["resnet20"].top1 == 91.73
    assert PRETRAINED_CHECKPOINTS["resnet110"].filename == "resnet110-1d1ed7c2.th"
    for entry in PRETRAINED_CHECKPOINTS.values():
        if entry.url:
            assert entry.filename in entry.url
            assert entry.filename.split("-")[1][:8] == entry.sha256[:8]
    with pytest.raises(TypeError):
        PRETRAINED_CHECKPOINTS["x"] = PRETRAINED_CHECKPOINTS["resnet20"]  # type: ignore[index]


def test_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="known"):
        pretrained_cifar_resnet("resnet21", tmp_path)
    with pytest.raises(FileNotFoundError, match="akamaster"):
        pretrained_cifar_resnet("resnet56", tmp_path)
    fake = tmp_path / "resnet20-12fca82f.th"
    torch.save({"state_dict": cifar_resnet(20).state_dict()}, fake)
    with pytest.raises(ValueError, match="SHA-256"):
        pretrained_cifar_resnet("resnet20", tmp_path)
    model = pretrained_cifar_resnet("resnet20", fake, verify_hash=False)
    assert model.linear.out_features == 10


def test_wrapped_model_hint(source: nn.Module) -> None:
    wrapped = nn.DataParallel(cifar_resnet(8))
    with pytest.raises(CheckpointMismatchError, match=r"pass model\.module"):
        load_weights(wrapped, source.state_dict())
    load_weights(wrapped.module, source.state_dict())
    assert torch.equal(wrapped.module.conv1.weight, source.conv1.weight)
