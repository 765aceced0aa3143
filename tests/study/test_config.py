# ruff: noqa: F811  (pytest fixtures imported from _study_fixtures are redefined as arguments)
"""StudyConfig: loading (dict / TOML / JSON / flags) and the bad-config errors, all raised before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _study_fixtures import base_config, checkpoint, tiny_data  # noqa: F401

from prunesafe.models import cifar_resnet
from prunesafe.study import StudyConfig, preset, run_study
from prunesafe.study._cli import add_arguments, config_from_args


def _no_work_done(out: Path) -> bool:
    return not (out / "results.jsonl").exists() and not (out / "config.json").exists()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"methods": ["unstructred"]}, ["methods", "unstructred", "did you mean 'unstructured'"]),
        ({"models": [{"name": "resnet21", "train": "baseline"}]}, ["models[0].name", "resnet21", "resnet20"]),
        ({"corruptions": ["fogg"]}, ["corruptions", "fogg"]),
        ({"ratios": [0.3, 1.0]}, ["ratios", "outside [0, 1)"]),
        ({"ratios": [-0.1]}, ["ratios", "outside [0, 1)"]),
        ({"severities": [0, 1]}, ["severities", "outside 1..5"]),
        ({"severities": [6]}, ["severities", "outside 1..5"]),
        ({"seeds": [0, 0]}, ["seeds", "twice"]),
        ({"n_bins": 0}, ["n_bins", ">= 1"]),
        ({"finetune_epochs": -1}, ["finetune_epochs", ">= 0"]),
        ({"n_binz": 10}, ["unknown key 'n_binz'", "did you mean 'n_bins'"]),
        ({"methods": [{"name": "filter", "options": {"coupling": "sometimes"}}]}, ["coupling"]),
        (
            {"methods": [{"name": "filter", "options": {"colour": "red"}}]},
            ["methods[0]", "options", "colour"],
        ),
    ],
)
def test_bad_values_name_key_and_fix(
    base_config: dict[str, Any], change: dict[str, Any], words: list[str]
) -> None:
    cfg = {**base_config, **change}
    with pytest.raises(ValueError) as info:
        run_study(cfg)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert _no_work_done(Path(base_config["out"]))


def test_missing_data_folder(base_config: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data_dir"):
        run_study({**base_config, "data_dir": str(tmp_path / "nowhere")})
    assert _no_work_done(Path(base_config["out"]))


def test_missing_corruption_file(base_config: dict[str, Any]) -> None:
    with pytest.raises(FileNotFoundError, match=r"corruptions: 'snow' has no file .*snow\.npy"):
        run_study({**base_config, "corruptions": ["fog", "snow"]})


def test_missing_checkpoint_file(base_config: dict[str, Any], tmp_path: Path) -> None:
    cfg = {**base_config, "models": [{"name": "resnet20", "checkpoint": str(tmp_path / "none.th")}]}
    with pytest.raises(FileNotFoundError, match=r"models\[0\]\.checkpoint"):
        run_study(cfg)


def test_checkpoint_that_does_not_fit(base_config: dict[str, Any], checkpoint: Path) -> None:
    # the ResNet-20 checkpoint named as a ResNet-32
    cfg = {**base_config, "models": [{"name": "resnet32", "checkpoint": str(checkpoint)}]}
    with pytest.raises(
        ValueError, match=r"models\[0\]\.checkpoint .* does not fit models\[0\]\.name = 'resnet32'"
    ):
        run_study(cfg)
    assert _no_work_done(Path(base_config["out"]))


def test_unwritable_output_folder(base_config: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="out: cannot write to the output folder"):
        run_study({**base_config, "out": str(blocker / "run")})


def test_model_needs_checkpoint_or_train(base_config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"exactly one of checkpoint"):
        run_study({**base_config, "models": [{"name": "resnet20"}]})


def test_changed_config_names_the_differing_keys(base_config: dict[str, Any], tmp_path: Path) -> None:
    cfg = {**base_config, "corruptions": ["fog"], "severities": [1], "figures": False, "control": False}
    cfg["temperature_scaling"] = False
    first = run_study(cfg)
    with pytest.raises(ValueError, match=r"keys that differ: n_bins, ratios"):
        run_study({**cfg, "n_bins": 15, "ratios": [0.4]})
    # what does not change numbers may change; the finished run is resumed, nothing is recomputed
    again = run_study({**cfg, "progress": False, "notes": ["rerun"]})
    assert again.records == first.records


def test_toml_json_dict_and_flags_agree(tmp_path: Path, checkpoint: Path) -> None:
    toml = tmp_path / "study.toml"
    toml.write_text(
        f"""
methods = ["unstructured", {{ name = "filter", options = {{ norm = "l2" }}, label = "filter-l2" }}]
ratios = [0.0, 0.5]
seeds = [1, 2]
n_bins = 15

[[models]]
name = "resnet20"
checkpoint = "{checkpoint}"
""",
        encoding="utf-8",
    )
    from_toml = StudyConfig.from_file(toml)
    js = tmp_path / "study.json"
    js.write_text(json.dumps(from_toml.to_dict()), encoding="utf-8")
    assert StudyConfig.from_file(js) == from_toml
    assert from_toml.methods[1].options == {"norm": "l2"}
    assert from_toml.methods[1].label == "filter-l2"
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--config", str(toml), "--ratios", "0.1", "0.2", "--n-bins", "10", "--no-control"]
    )
    flagged = config_from_args(args)
    assert flagged.ratios == (0.1, 0.2)
    assert flagged.n_bins == 10
    assert flagged.control is False
    assert flagged.seeds == (1, 2)  # from the file
    assert flagged.config_hash() != from_toml.config_hash()


def test_bad_toml_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("ratios = [0.1,", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        StudyConfig.from_file(bad)


def test_presets() -> None:
    quick = StudyConfig.from_dict(preset("quick"))
    assert [m.name for m in quick.methods] == ["unstructured", "filter", "channel"]
    assert quick.ratios == (0.0, 0.3, 0.6)
    assert quick.seeds == (0,)
    assert quick.resolved_corruptions()[:3] == ("gaussian_noise", "shot_noise", "impulse_noise")
    assert len(quick.resolved_corruptions()) == 15
    paper = StudyConfig.from_dict(preset("paper")).validate(check_files=False)
    assert paper.ratios == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    assert paper.seeds == (0, 1, 2)
    assert paper.finetune_epochs == 40
    assert paper.finetune_lr == 1e-3
    assert paper.n_bins == 10
    assert paper.n_test is None
    assert paper.n_corrupted is None
    models = {m.label: m for m in paper.models}
    # Li et al.'s VGG-16-pruned-A: conv layers 1 and 8-13 (0-based conv indices 0, 7..12)
    convs = [n for n, m in cifar_vgg16().named_modules() if isinstance(m, torch.nn.Conv2d)]
    layers = models["vgg16"].methods[0].options["layers"]  # type: ignore[index]
    assert layers == [convs[0], *convs[7:13]]
    assert models["vgg19-slim"].sparsity == 1e-4
    slim164 = models["resnet164-slim"]
    assert (slim164.name, slim164.sparsity, slim164.channel_selection) == ("resnet164", 1e-5, True)
    assert slim164.methods is not None
    assert slim164.methods[0].options == {"selection": "threshold"}
    assert not any("NOT RUN" in n for n in paper.notes)


def test_channel_selection_model_entry_prunes_the_branch_bns() -> None:
    from prunesafe import prune_model
    from prunesafe.pruning import ChannelSelectionBatchNorm2d
    from prunesafe.study.config import ModelSpec
    from prunesafe.study.runner import with_channel_selection

    with pytest.raises(ValueError, match=r"channel_selection applies to pre-activation ResNets"):
        StudyConfig.from_dict(
            {"models": [{"name": "vgg11", "train": "baseline", "channel_selection": True}]}
        ).validate(check_files=False)
    with pytest.raises(ValueError, match=r"channel_selection must be true or false"):
        ModelSpec.from_value({"name": "resnet164", "train": "baseline", "channel_selection": "yes"})
    from prunesafe.models import cifar_preact_resnet

    torch.manual_seed(0)
    model = cifar_preact_resnet(20)
    for m in model.modules():  # distinct γ, so the global threshold has something to rank
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.1, 1.0)
    spec = ModelSpec("preact-resnet110", train="baseline", channel_selection=True)
    x = torch.rand(4, 3, 32, 32)
    before = model.eval()(x)
    model = with_channel_selection(model, spec).eval()
    assert torch.equal(model(x), before)  # all channels selected: the same function
    selected = [m for m in model.modules() if isinstance(m, ChannelSelectionBatchNorm2d)]
    assert selected
    pruned = prune_model(model, "channel", 0.3, example_inputs=x[:1])
    kept = [m for m in pruned.modules() if isinstance(m, ChannelSelectionBatchNorm2d)]
    assert any(len(m.indices) < m.num_features for m in kept)  # the branch lost channels...
    # ...not the residual stream
    assert all(m.num_features == s.num_features for m, s in zip(kept, selected, strict=True))


def cifar_vgg16() -> torch.nn.Module:
    from prunesafe.models import cifar_vgg

    return cifar_vgg(16)


def test_cli_bad_config_exit_code(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from prunesafe.cli import main

    torch.save(cifar_resnet(20).state_dict(), tmp_path / "r20.pt")
    ckpt = str(tmp_path / "r20.pt")
    args = ["--data-dir", str(tiny_data), "--checkpoint", ckpt, "--ratios", "1.5"]
    args += ["--out", str(tmp_path / "o")]
    code = main(["study", "--preset", "quick", *args])
    assert code == 2
    assert "ratios: ratio 1.5 is outside [0, 1)" in capsys.readouterr().err


def test_cli_help_and_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    from prunesafe.cli import main

    with pytest.raises(SystemExit) as info:
        main(["study", "--help"])
    assert info.value.code == 0
    assert "--finetune-epochs" in capsys.readouterr().out
    assert main(["study", "--preset", "quick", "--seeds", "3", "4", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["seeds"] == [3, 4]
    assert printed["ratios"] == [0.0, 0.3, 0.6]


def test_cli_subcommands_are_imported_lazily(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import prunesafe.cli as cli

    assert cli.SUBCOMMANDS["make-c"][0] == "prunesafe.corruptions.cli"
    monkeypatch.setitem(cli.SUBCOMMANDS, "make-c", ("prunesafe.no_such_module", "broken"))
    with pytest.raises(SystemExit) as info:  # study works although make-c's module cannot be imported
        cli.main(["study", "--help"])
    assert info.value.code == 0
    capsys.readouterr()
    assert cli.main(["make-c", "--help"]) == 1
    assert "prunesafe make-c: unavailable" in capsys.readouterr().err


def test_cli_make_c_is_wired_to_the_corruptions_module(capsys: pytest.CaptureFixture[str]) -> None:
    from prunesafe.cli import main

    with pytest.raises(SystemExit) as info:
        main(["make-c", "--help"])
    assert info.value.code == 0
    assert "--images" in capsys.readouterr().out
