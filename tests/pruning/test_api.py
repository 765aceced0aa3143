"""prune_model: dispatch, copying, the attached record, bad input, and a user-registered pruner."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from prunesafe.models import cifar_resnet
from prunesafe.pruning import (
    Pruner,
    PruningRecord,
    UnstructuredPruner,
    get_record,
    prune_model,
    register_pruner,
    registered_pruners,
    unregister_pruner,
)
from prunesafe.pruning.api import copy_model


def _small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))


# --- the "how to add a pruner" example of docs/pruning.md, taken from the docs themselves ---------
def _docs_pruner_class() -> type[Pruner]:
    """Execute the docs' example block (the one defining RandomFilterPruner) and return the class."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "pruning.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    source = next(b for b in blocks if "class RandomFilterPruner" in b)
    namespace: dict[str, Any] = {}
    exec(compile(source, "docs/pruning.md", "exec"), namespace)  # registers "random-filter" as the docs do
    unregister_pruner("random-filter")
    cls: type[Pruner] = namespace["RandomFilterPruner"]
    return cls


RandomFilterPruner = _docs_pruner_class()


@pytest.fixture
def random_filter() -> Iterator[str]:
    register_pruner("random-filter")(RandomFilterPruner)
    yield "random-filter"
    unregister_pruner("random-filter")


def test_user_registered_pruner_runs_through_prune_model(random_filter: str) -> None:
    assert random_filter in registered_pruners()
    model = cifar_resnet(20).eval()
    x = torch.rand(2, 3, 32, 32)
    pruned = prune_model(model, random_filter, 0.5, example_inputs=x[:1], seed=3).eval()
    record = pruned.prunesafe_pruning
    assert record.method == "random-filter"
    assert record.unit == "filters"
    assert record.options == {"seed": 3}
    assert record.achieved_ratio == 0.5
    assert pruned.layer1[0].conv1.out_channels == 8
    assert pruned.layer1[0].bn1.num_features == 8
    assert pruned.layer1[0].conv2.in_channels == 8
    assert pruned.conv1.out_channels == 16  # residual stream left alone
    assert pruned(x).shape == (2, 10)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    other_seed = prune_model(model, random_filter, 0.5, example_inputs=x[:1], seed=4)
    assert not torch.equal(other_seed.layer1[0].conv1.weight, pruned.layer1[0].conv1.weight)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['sed'\].*accepted options: \['seed'\]"):
        prune_model(model, random_filter, 0.5, example_inputs=x[:1], sed=3)
    with pytest.raises(ValueError, match=r"random-filter.*unstructured"):
        prune_model(model, "random", 0.5)
    with pytest.raises(ValueError, match="needs example_inputs"):
        prune_model(model, random_filter, 0.5)


def test_copies_by_default_and_prunes_in_place_when_asked() -> None:
    model = cifar_resnet(20)
    state = copy.deepcopy(model.state_dict())
    pruned = prune_model(model, "unstructured", 0.5)
    assert pruned is not model
    assert not hasattr(model.conv1, "weight_mask")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert get_record(model) is None
    same = prune_model(model, "unstructured", 0.5, inplace=True)
    assert same is model
    assert hasattr(model.conv1, "weight_mask")
    assert isinstance(get_record(model), PruningRecord)


def test_record_contents_and_round_trip() -> None:
    pruned = prune_model(cifar_resnet(20), "unstructured", 0.3, scope="layerwise", include_linear=True)
    record = pruned.prunesafe_pruning
    assert record.method == "unstructured"
    assert record.ratio == 0.3
    assert abs(record.achieved_ratio - 0.3) < 1e-3
    assert record.unit == "weights"
    assert record.options == {"scope": "layerwise", "include_linear": True}
    assert record.pruned_modules[0] == "conv1"
    assert record.pruned_modules[-1] == "linear"
    assert PruningRecord.from_dict(record.to_dict()) == record
    callable_option = prune_model(cifar_resnet(20), "unstructured", 0.3, layers=lambda n, m: True)
    assert isinstance(callable_option.prunesafe_pruning.to_dict()["options"]["layers"], str)


def test_structured_record_says_what_fraction_of_all_units_was_removed() -> None:
    x = torch.rand(1, 3, 32, 32)
    model = cifar_resnet(20)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.1, 1.0)
    pruned = prune_model(model, "channel", 0.5, threshold_scope="eligible", example_inputs=x)
    record = pruned.prunesafe_pruning
    total = 16 + 16 * 6 + 32 * 6 + 64 * 6  # BN channels of ResNet-20
    eligible = 16 * 3 + 32 * 3 + 64 * 3  # the first BN of each block (coupling="exclude")
    assert record.achieved_ratio == pytest.approx(0.5)
    assert record.eligible_fraction == pytest.approx(eligible / total)
    assert record.achieved_ratio_of_all == pytest.approx(eligible / 2 / total)
    assert record.unit_layers == sorted(f"layer{s}.{b}.bn1" for s in (1, 2, 3) for b in range(3))
    assert PruningRecord.from_dict(record.to_dict()) == record
    # records written before these fields existed still load
    new_fields = (
        "achieved_ratio_of_all",
        "eligible_fraction",
        "unit_layers",
        "notes",
        "verified",
        "ratio_map",
    )
    old = {k: v for k, v in record.to_dict().items() if k not in new_fields}
    assert PruningRecord.from_dict(old).achieved_ratio_of_all is None
    assert PruningRecord.from_dict(old).unit_layers == []
    # unstructured: all conv weights are targeted by default
    masked = prune_model(cifar_resnet(20), "unstructured", 0.5).prunesafe_pruning
    assert (masked.eligible_fraction, masked.achieved_ratio_of_all) == (1.0, masked.achieved_ratio)


def test_pruner_instance_and_class_are_accepted() -> None:
    pruner = UnstructuredPruner(0.4, scope="layerwise")
    pruned = prune_model(_small(), pruner)
    assert pruned.prunesafe_pruning.ratio == 0.4
    assert pruned.prunesafe_pruning.options == {"scope": "layerwise"}
    assert prune_model(_small(), pruner, 0.4).prunesafe_pruning.method == "unstructured"
    with pytest.raises(ValueError, match="disagrees"):
        prune_model(_small(), pruner, 0.5)
    with pytest.raises(TypeError, match="constructor"):
        prune_model(_small(), pruner, scope="global")
    assert prune_model(_small(), UnstructuredPruner, 0.2).prunesafe_pruning.ratio == 0.2


def test_masked_model_after_training_forward_can_be_pruned_again() -> None:
    # the prune hook leaves a non-leaf `weight` attribute after a forward with autograd;
    # plain copy.deepcopy refuses such a model, prune_model must not
    model = prune_model(cifar_resnet(8), "unstructured", 0.5)
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    with pytest.raises(RuntimeError):
        copy.deepcopy(model)
    again = prune_model(model, "unstructured", 0.7)
    assert abs(again.prunesafe_pruning.achieved_ratio - 0.7) < 1e-3
    assert copy_model(model).layer1[0].conv1.weight.is_leaf
    assert not model.layer1[0].conv1.weight.is_leaf  # the caller's model is left as it was


# --- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [cifar_resnet(20).state_dict(), "resnet20.th", None, np.zeros(3)])
def test_model_of_wrong_type(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        prune_model(bad, "unstructured", 0.5)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_ratio_outside_range(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\)"):
        prune_model(_small(), "unstructured", ratio)


@pytest.mark.parametrize("ratio", ["0.5", True, None, torch.tensor(0.5)])
def test_ratio_of_wrong_type(ratio: Any) -> None:
    with pytest.raises(TypeError, match="ratio"):
        prune_model(_small(), "unstructured", ratio)


def test_unknown_method_lists_registered() -> None:
    with pytest.raises(ValueError, match=r"unknown pruning method 'magnitude'.*unstructured"):
        prune_model(_small(), "magnitude", 0.5)
    with pytest.raises(TypeError, match="method must be"):
        prune_model(_small(), 3, 0.5)  # type: ignore[arg-type]


def test_no_prunable_layers() -> None:
    with pytest.raises(ValueError, match="no prunable layers"):
        prune_model(nn.Sequential(nn.ReLU(), nn.Flatten()), "unstructured", 0.5)
    linear_only = nn.Sequential(nn.Linear(3, 2))
    for method in ("filter", "channel"):
        with pytest.raises(ValueError, match=rf"no prunable layers for method '{method}'.*unstructured"):
            prune_model(linear_only, method, 0.5, example_inputs=torch.rand(1, 3))


def test_example_inputs_that_do_not_fit_the_model() -> None:
    with pytest.raises(ValueError, match=r"example_inputs.*(forward|torch\.rand)"):
        prune_model(nn.Sequential(nn.Linear(3, 2)), "filter", 0.5, example_inputs=torch.rand(1, 4))


@pytest.mark.parametrize("bad", ["x", 3.0, {"x": torch.rand(1, 3, 8, 8)}])
def test_bad_inplace_and_example_inputs(bad: Any) -> None:
    with pytest.raises(TypeError, match="inplace"):
        prune_model(_small(), "unstructured", 0.5, inplace=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"example_inputs must be.*torch.randn"):
        prune_model(_small(), "unstructured", 0.5, example_inputs=bad)


def test_ratio_mapping_is_refused_where_it_cannot_apply() -> None:
    with pytest.raises(TypeError, match="takes one float ratio"):
        prune_model(_small(), _NeedsInputs, {"0": 0.5}, example_inputs=torch.rand(1, 3, 8, 8))
    with pytest.raises(TypeError, match="Pruner instance"):
        prune_model(_small(), UnstructuredPruner(0.5), {"0": 0.5})
    with pytest.raises(ValueError, match="ratio mapping is empty"):
        prune_model(_small(), "unstructured", {})


class _NeedsInputs(Pruner):
    requires_example_inputs = True

    def prune(self, model: nn.Module, *, example_inputs: Any = None) -> nn.Module:
        self.seen = example_inputs
        self.achieved_ratio = 0.0
        return model


class _ForgetsRatio(Pruner):
    def prune(self, model: nn.Module, *, example_inputs: Any = None) -> nn.Module:
        return model


def test_example_inputs_required_and_numpy_accepted() -> None:
    with pytest.raises(ValueError, match=r"needs example_inputs: pass example_inputs=torch\.randn\(1, 3, 32"):
        prune_model(_small(), _NeedsInputs, 0.5)
    pruner = _NeedsInputs(0.5)
    prune_model(_small(), pruner, example_inputs=np.zeros((1, 3, 32, 32), dtype=np.float32))
    assert isinstance(pruner.seen, torch.Tensor)
    assert pruner.seen.shape == (1, 3, 32, 32)
    prune_model(_small(), pruner, example_inputs=(np.zeros((1, 3, 32, 32), dtype=np.float32),))
    assert isinstance(pruner.seen, tuple)
    assert isinstance(pruner.seen[0], torch.Tensor)


def test_pruner_that_forgets_achieved_ratio_is_reported() -> None:
    with pytest.raises(RuntimeError, match="achieved_ratio"):
        prune_model(_small(), _ForgetsRatio, 0.5)
