"""save_pruned / load_pruned: exact round trips, weights_only loading, masks, allow-list, versions."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from prunesafe.models import cifar_preact_resnet, cifar_resnet, cifar_vgg
from prunesafe.pruning import is_pruned, prune_model
from prunesafe.pruning.serialization import FORMAT_VERSION, load_pruned, save_pruned

X32 = torch.rand(1, 3, 32, 32)


def _round_trip(model: nn.Module, tmp_path: Path, **kwargs: Any) -> nn.Module:
    path = tmp_path / "pruned.pt"
    save_pruned(model, path, **kwargs)
    return load_pruned(path)


CASES: dict[str, tuple[Callable[[], nn.Module], str, float, dict[str, Any]]] = {
    "resnet20-filter": (lambda: cifar_resnet(20), "filter", 0.5, {}),
    "resnet20-filter-coupled": (lambda: cifar_resnet(20), "filter", 0.5, {"coupling": "together"}),
    "resnet20-channel": (lambda: cifar_resnet(20), "channel", 0.4, {}),
    "resnet20-unstructured": (lambda: cifar_resnet(20), "unstructured", 0.7, {}),
    "preact-resnet20-B-filter": (lambda: cifar_preact_resnet(20, shortcut="B"), "filter", 0.5, {}),
    "vgg16-filter": (lambda: cifar_vgg(16), "filter", 0.5, {}),
    "tv-resnet18-filter": (lambda: torchvision.models.resnet18(weights=None), "filter", 0.5, {}),
}


def _pruned(case: str) -> tuple[nn.Module, nn.Module]:
    build, method, ratio, options = CASES[case]
    original = build()
    return original, prune_model(original, method, ratio, example_inputs=X32, **options)


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_gives_identical_outputs(case: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    original, pruned = _pruned(case)
    pruned.eval()
    # give BN statistics non-trivial values so that a wrong buffer would show
    for m in pruned.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    loaded = _round_trip(pruned, tmp_path).eval()
    assert type(loaded) is type(pruned)
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded(x), pruned(x))
    assert loaded.state_dict().keys() == pruned.state_dict().keys()
    for key, value in pruned.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.prunesafe_pruning == pruned.prunesafe_pruning
    if "unstructured" not in case:
        assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in original.parameters())


def test_file_is_plain_data_loadable_with_weights_only(tmp_path: Path) -> None:
    pruned = _pruned("resnet20-filter-coupled")[1]
    path = tmp_path / "m.pt"
    save_pruned(pruned, path)
    data = torch.load(path, weights_only=True)
    assert data["format_version"] == FORMAT_VERSION
    assert data["builder"] == "prunesafe.models:CifarResNet"
    assert data["modules"]["layer1.0.conv1"]["out_channels"] == pruned.layer1[0].conv1.out_channels
    shortcut = data["modules"]["layer2.0.shortcut"]
    assert shortcut["type"] == "ZeroPadShortcut"
    assert (shortcut["pad_front"], shortcut["pad_back"]) == (
        pruned.layer2[0].shortcut.pad_front,
        pruned.layer2[0].shortcut.pad_back,
    )

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str, torch.Tensor))

    assert plain(data)


def test_unstructured_masks_kept_or_folded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pruned = prune_model(cifar_resnet(20), "unstructured", 0.6).eval()
    x = torch.rand(2, 3, 32, 32)
    kept = _round_trip(pruned, tmp_path, masks="keep")
    assert is_pruned(kept)
    assert torch.equal(kept.layer1[0].conv1.weight_mask, pruned.layer1[0].conv1.weight_mask)
    assert torch.equal(kept.eval()(x), pruned(x))
    # the re-attached masks still hold during fine-tuning
    kept.train()
    optimizer = torch.optim.SGD(kept.parameters(), lr=1.0)
    nn.functional.cross_entropy(kept(x), torch.tensor([1, 2])).backward()
    optimizer.step()
    kept(x)
    zero = kept.layer2[1].conv2.weight_mask == 0
    assert zero.any()
    assert (kept.layer2[1].conv2.weight[zero] == 0).all()

    folded = _round_trip(pruned, tmp_path, masks="fold")
    assert not is_pruned(folded)
    assert not any(k.endswith(("_orig", "_mask")) for k in folded.state_dict())
    assert torch.equal(folded.eval()(x), pruned(x))
    assert torch.equal(folded.layer1[0].conv1.weight == 0, pruned.layer1[0].conv1.weight_mask == 0)
    assert is_pruned(pruned)  # saving with masks="fold" does not touch the model


def test_explicit_builder_string_and_callable(tmp_path: Path) -> None:
    pruned = prune_model(cifar_resnet(20), "filter", 0.3, example_inputs=X32).eval()
    x = torch.rand(2, 3, 32, 32)
    loaded = _round_trip(
        pruned, tmp_path, builder="prunesafe.models:cifar_resnet", builder_kwargs={"depth": 20}
    )
    assert torch.equal(loaded.eval()(x), pruned(x))
    loaded = _round_trip(pruned, tmp_path, builder=cifar_resnet, builder_kwargs={"depth": 20})
    assert torch.equal(loaded.eval()(x), pruned(x))
    assert loaded.layer1[0].conv1.out_channels == pruned.layer1[0].conv1.out_channels


def test_float64_model_round_trip(tmp_path: Path) -> None:
    pruned = prune_model(cifar_resnet(20), "filter", 0.5, example_inputs=X32).double().eval()
    loaded = _round_trip(pruned, tmp_path).eval()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    assert loaded.layer1[0].conv1.weight.dtype == torch.float64
    assert torch.equal(loaded(x), pruned(x))


def test_unknown_architecture_needs_a_skeleton(tmp_path: Path) -> None:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3),
            nn.Flatten(),
            nn.LazyLinear(5),
        )

    model = build()
    model(X32)
    pruned = prune_model(model, "filter", 0.5, example_inputs=X32).eval()
    path = tmp_path / "custom.pt"
    with pytest.warns(UserWarning, match=r"cannot detect how to build Sequential"):
        save_pruned(pruned, path)
    with pytest.raises(ValueError, match=r"records no builder; pass model="):
        load_pruned(path)
    skeleton = build()
    skeleton(X32)
    loaded = load_pruned(path, model=skeleton).eval()
    assert loaded is skeleton
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), pruned(x))


def test_builders_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    model = cifar_resnet(20)
    with pytest.raises(ValueError, match=r"allow-list"):
        save_pruned(model, tmp_path / "a.pt", builder="os:system", builder_kwargs={"command": "echo hi"})
    with pytest.raises(ValueError, match=r"package.module:function"):
        save_pruned(model, tmp_path / "a.pt", builder="cifar_resnet")
    with pytest.raises(ValueError, match=r"allow-list"):
        save_pruned(model, tmp_path / "a.pt", builder="prunesafe_evil.models:x")
    # a tampered file is refused as well, before anything is imported or called
    path = tmp_path / "b.pt"
    save_pruned(model, path)
    data = torch.load(path, weights_only=True)
    data["builder"], data["builder_kwargs"] = "builtins:exec", {}
    torch.save(data, path)
    with pytest.raises(ValueError, match=r"allow-list.*model=skeleton"):
        load_pruned(path)
    assert load_pruned(path, model=cifar_resnet(20)).conv1.out_channels == 16


def _tampered(tmp_path: Path, builder: str, builder_kwargs: dict[str, Any]) -> Path:
    path = tmp_path / "tampered.pt"
    save_pruned(cifar_resnet(20), path)
    data = torch.load(path, weights_only=True)
    data["builder"], data["builder_kwargs"] = builder, builder_kwargs
    torch.save(data, path)
    return path


@pytest.mark.parametrize(
    ("builder", "kwargs_of"),
    [
        # dotted attribute paths out of an allowed module (the reported exploit)
        ("prunesafe.pruning.serialization:os.system", lambda f: {"command": f"touch {f}"}),
        ("prunesafe.models.pretrained:os.system", lambda f: {"command": f"touch {f}"}),
        ("torchvision.models.resnet:torch.save", lambda f: {"obj": 1, "f": str(f)}),
        ("prunesafe.pruning.serialization:importlib.import_module", lambda f: {"name": "os"}),
        # module-level names of allowed modules that are not model builders
        ("prunesafe.pruning.serialization:torch", lambda f: {}),
        ("prunesafe.pruning.serialization:importlib", lambda f: {}),
        ("torchvision.models.resnet:torch", lambda f: {}),
        ("prunesafe.pruning.serialization:save_pruned", lambda f: {"model": None, "path": str(f)}),
        ("prunesafe.models:fit", lambda f: {}),
        ("prunesafe.models:pretrained_cifar_resnet", lambda f: {"name": "resnet20", "path": str(f)}),
        ("prunesafe.models:load_weights", lambda f: {}),
        ("torchvision.models:get_model", lambda f: {"name": "resnet18"}),
        ("torchvision.models._utils:handle_legacy_interface", lambda f: {}),
    ],
)
def test_crafted_builders_execute_nothing(
    builder: str, kwargs_of: Callable[[Path], dict[str, Any]], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    path = _tampered(tmp_path, builder, kwargs_of(marker))
    with pytest.raises(ValueError, match=r"allow-list|cannot import"):
        load_pruned(path)
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"allow-list|cannot import"):
        save_pruned(cifar_resnet(20), tmp_path / "c.pt", builder=builder)


def test_allow_listed_builders_load_and_weights_downloads_are_refused(tmp_path: Path) -> None:
    # every allow-list spelling of a real builder loads: canonical, defining module, callable
    for builder in ("prunesafe.models:cifar_resnet", "prunesafe.models.cifar_resnet:cifar_resnet"):
        loaded = load_pruned(_tampered(tmp_path, builder, {"depth": 20}))
        assert loaded.conv1.out_channels == 16
    loaded = load_pruned(_tampered(tmp_path, "prunesafe.models:CifarResNet", {"num_blocks": [3, 3, 3]}))
    assert loaded.conv1.out_channels == 16
    path = _tampered(tmp_path, "torchvision.models:resnet18", {"weights": "DEFAULT"})
    with pytest.raises(ValueError, match=r"download pretrained weights"):
        load_pruned(path)


def test_version_and_format_checks(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_pruned(cifar_resnet(20), path)
    data = torch.load(path, weights_only=True)
    data["format_version"] = FORMAT_VERSION + 1
    torch.save(data, path)
    with pytest.raises(ValueError, match=r"newer.*upgrade prunesafe"):
        load_pruned(path)
    torch.save(cifar_resnet(20).state_dict(), path)
    with pytest.raises(ValueError, match=r"not a prunesafe pruned-model file"):
        load_pruned(path)


def test_architecture_mismatch_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_pruned(prune_model(cifar_resnet(20), "filter", 0.5, example_inputs=X32), path)
    with pytest.raises(ValueError, match=r"architecture mismatch|do not fit"):
        load_pruned(path, model=cifar_vgg(11))
    with pytest.raises(ValueError, match=r"do not fit"):
        load_pruned(path, model=cifar_resnet(32))


def test_bad_arguments() -> None:
    buffer = io.BytesIO()
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module"):
        save_pruned(cifar_resnet(20).state_dict(), buffer)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"masks must be"):
        save_pruned(cifar_resnet(20), buffer, masks="drop")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"builder_kwargs must contain only"):
        save_pruned(
            cifar_resnet(20),
            buffer,
            builder="prunesafe.models:cifar_resnet",
            builder_kwargs={"depth": torch.tensor(20)},
        )
    with pytest.raises(ValueError, match=r"builder_kwargs was given without builder"):
        save_pruned(cifar_resnet(20), buffer, builder_kwargs={"depth": 20})
    with pytest.raises(TypeError, match=r"skeleton"):
        load_pruned(buffer, model="resnet20")  # type: ignore[arg-type]


def test_structured_then_unstructured_round_trip(tmp_path: Path) -> None:
    filtered = prune_model(cifar_resnet(20), "filter", 0.5, example_inputs=X32)
    both = prune_model(filtered, "unstructured", 0.5).eval()
    loaded = _round_trip(both, tmp_path).eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), both(x))
    assert loaded.layer1[0].conv1.weight_mask.shape == (8, 16, 3, 3)
    assert loaded.prunesafe_pruning.history[0]["method"] == "filter"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnext50_32x4d", "torchvision.models:resnext50_32x4d"),  # was recorded as resnet50
        ("wide_resnet50_2", "torchvision.models:wide_resnet50_2"),  # was recorded as resnet50
        ("resnet50", "torchvision.models:resnet50"),
        ("densenet121", "torchvision.models:densenet121"),
        ("shufflenet_v2_x0_5", None),  # x0_5 ... x2_0 differ only in widths, which pruning changes: ambiguous
    ],
)
def test_torchvision_builder_is_the_real_one(name: str, expected: str | None) -> None:
    from prunesafe.pruning.serialization import _detect_builder

    detected = _detect_builder(torchvision.models.get_model(name, weights=None, num_classes=10))
    assert (detected[0] if detected else None) == expected
    if detected:
        assert detected[1] == {"num_classes": 10}


def test_filter_pruned_resnext_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnext50_32x4d(weights=None, num_classes=10).eval()
    x = torch.rand(1, 3, 64, 64)
    pruned = prune_model(model, "filter", 0.3, example_inputs=x)
    again = _round_trip(pruned, tmp_path)
    assert type(again).__name__ == "ResNet"
    assert again.layer1[0].conv2.groups == 32
    with torch.no_grad():
        assert torch.equal(again.eval()(x), pruned(x))


def test_pruning_package_does_not_import_the_model_zoo() -> None:
    import ast

    root = Path(__file__).resolve().parents[2] / "prunesafe" / "pruning"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("prunesafe.models"), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("prunesafe.models") for a in node.names), path.name


def test_channel_selection_round_trip(tmp_path: Path) -> None:
    from prunesafe.pruning import ChannelSelectionBatchNorm2d, add_channel_selection

    torch.manual_seed(0)
    model = cifar_preact_resnet(29, block="bottleneck").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.0, 1.0)
    add_channel_selection(model, X32)
    pruned = prune_model(model, "channel", 0.4, selection="threshold", example_inputs=X32)
    again = _round_trip(pruned, tmp_path)
    bn = again.layer2[1].bn1
    assert isinstance(bn, ChannelSelectionBatchNorm2d)
    assert torch.equal(bn.indices, pruned.layer2[1].bn1.indices)
    assert bn.indices.numel() < bn.num_features  # the stream side stays whole, the branch reads fewer
    with torch.no_grad():
        assert torch.equal(again.eval()(X32), pruned(X32))
    assert again.prunesafe_pruning.achieved_ratio_of_all == pytest.approx(0.4, abs=0.02)
