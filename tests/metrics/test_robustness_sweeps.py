"""Sweeps that survive bad cells, keep their conventions, restore the model and accept any cell source."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from prunesafe.metrics import CalibrationAccumulator
from prunesafe.metrics.calibration import expected_calibration_error, negative_log_likelihood
from prunesafe.metrics.robustness import (
    NonFiniteCellWarning,
    RobustnessAccumulator,
    RobustnessResult,
    evaluate_corruptions,
    mean_corruption_error,
    mean_ece_by_severity,
    mean_performance_under_corruption,
)


# ------------------------------------------------------------------------------------------------ helpers
class Cell:
    """A cell whose images are produced when ``.images`` is read (counted), like an on-the-fly engine."""

    def __init__(self, corruption: str, severity: int, images: np.ndarray, labels: np.ndarray) -> None:
        self.corruption, self.severity, self.labels = corruption, severity, labels
        self._images = images
        self.reads = 0

    @property
    def images(self) -> np.ndarray:
        self.reads += 1
        return self._images


class Cells:
    """Hand-made object with a ``cells`` attribute (no prunesafe class involved)."""

    def __init__(self, spec: dict[tuple[str, int], int], n: int = 6, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.cells = [
            Cell(c, s, np.full((n, 8, 8, 3), value, dtype=np.uint8), rng.integers(0, 3, n))
            for (c, s), value in spec.items()
        ]


class MeanModel(nn.Module):
    """Logits from the mean pixel; NaN when the mean pixel exceeds ``nan_above``."""

    def __init__(self, nan_above: float = 2.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 3)
        self.nan_above = nan_above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = x.mean((2, 3))
        out = self.fc(self.bn(feats) + feats)
        bad = feats.mean(1, keepdim=True) > self.nan_above
        return torch.where(bad, torch.full_like(out, float("nan")), out)


def _bare(model: nn.Module, images: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0).to(dtype)
    with torch.no_grad():
        return model.eval()(x)


# --------------------------------------------------------------------------------------- duck-typed cells
def test_any_object_with_cells_is_evaluated_lazily_and_selectable() -> None:
    data = Cells({("fog", 1): 10, ("fog", 2): 40, ("my_warp", 1): 90, ("my_warp", 2): 120})
    model = MeanModel()
    res = evaluate_corruptions(model, data, progress=False, batch_size=4)
    assert [(r["corruption"], r["severity"]) for r in res.records] == [
        ("fog", 1),
        ("fog", 2),
        ("my_warp", 1),
        ("my_warp", 2),
    ]
    for cell in data.cells:
        ref = _bare(model, cell._images)
        assert torch.allclose(res.logits[(cell.corruption, cell.severity)], ref, atol=1e-6)
        y = torch.from_numpy(cell.labels)
        assert res.cell(cell.corruption, cell.severity)["accuracy"] == float(
            (ref.argmax(1) == y).double().mean()
        )
        assert cell.reads == 1  # images read once, when the cell is evaluated

    data = Cells({("fog", 1): 10, ("fog", 2): 40, ("my_warp", 1): 90, ("my_warp", 2): 120})
    res = evaluate_corruptions(model, data, corruptions="my_warp", severities=[2], progress=False)
    assert [(r["corruption"], r["severity"]) for r in res.records] == [("my_warp", 2)]
    assert [c.reads for c in data.cells] == [0, 0, 0, 1]  # unselected cells are never produced
    res = evaluate_corruptions(model, data, corruptions="fog", severities=2, progress=False)
    assert [(r["corruption"], r["severity"]) for r in res.records] == [("fog", 2)]
    with pytest.raises(ValueError, match="does not contain the requested cells"):
        evaluate_corruptions(model, data, corruptions="fog", severities=3, progress=False)


def test_cells_object_errors_name_the_problem() -> None:
    class Bad:
        cells: ClassVar = [Cell("fog", 1, np.zeros((4, 8, 8, 3), np.float32), np.zeros(4, np.int64))]

    with pytest.raises(TypeError, match=r"cell \('fog', 1\) .images"):
        evaluate_corruptions(MeanModel(), Bad(), progress=False)

    class Short:
        cells: ClassVar = [Cell("fog", 1, np.zeros((4, 8, 8, 3), np.uint8), np.zeros(3, np.int64))]

    with pytest.raises(ValueError, match=r"4 images but \.labels has 3"):
        evaluate_corruptions(MeanModel(), Short(), progress=False)

    class NoName:
        cells: ClassVar = [Cell(3, 1, np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int64))]  # type: ignore[arg-type]

    with pytest.raises(TypeError, match=r"cells\[0\] must have .corruption"):
        evaluate_corruptions(MeanModel(), NoName(), progress=False)
    with pytest.raises(TypeError, match="any object with a `cells` attribute"):
        evaluate_corruptions(MeanModel(), 42, progress=False)


# -------------------------------------------------------------------------------------------- bad cells
def test_non_finite_cell_is_recorded_as_nan_and_the_sweep_goes_on() -> None:
    data = Cells({("fog", 1): 10, ("snow", 2): 250, ("frost", 1): 30})
    model = MeanModel(nan_above=0.9)  # images of value 250 -> mean 0.98 -> NaN logits
    with pytest.warns(NonFiniteCellWarning, match=r"cell \('snow', 2\): 6 of 6 samples have NaN/inf logits"):
        res = evaluate_corruptions(model, data, progress=False)
    snow = res.cell("snow", 2)
    assert math.isnan(snow["accuracy"])
    assert math.isnan(snow["ece"])
    assert math.isnan(snow["nll"])
    assert snow["n"] == 6
    assert ("snow", 2) not in res.logits
    for key in (("fog", 1), ("frost", 1)):  # the finished and the later cells are kept
        assert math.isfinite(res.cell(*key)["accuracy"])
        assert key in res.logits
    # a summary over the bad cell says which one has no value
    with pytest.raises(ValueError, match=r"no accuracy for \('snow', 2\)"):
        mean_performance_under_corruption(res, corruptions="table")
    with pytest.raises(ValueError, match=r"cell \('snow', 2\): 6 of 6 samples"):
        evaluate_corruptions(model, Cells({("fog", 1): 10, ("snow", 2): 250}), progress=False, strict=True)


def test_accumulator_non_finite_cell() -> None:
    acc = RobustnessAccumulator()
    acc.update(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), torch.tensor([0, 1]), "fog", 1)
    acc.update(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), "fog", 2)
    with pytest.warns(NonFiniteCellWarning, match=r"\('fog', 1\): 1 of 2 samples"):
        res = acc.compute()
    assert math.isnan(res.cell("fog", 1)["ece"])
    assert res.cell("fog", 2)["accuracy"] == 1.0
    with pytest.raises(ValueError, match="1 of 2 samples"):
        acc.compute(strict=True)


# -------------------------------------------------------------------------------- model state and dtypes
def test_each_submodule_keeps_its_own_train_flag() -> None:
    model = MeanModel()
    model.train()
    model.bn.eval()  # a frozen BatchNorm inside a model in train mode
    evaluate_corruptions(model, Cells({("fog", 1): 10}), progress=False)
    assert model.training
    assert model.fc.training
    assert not model.bn.training  # model.train(was_training) would have flipped it back to train

    class Boom(MeanModel):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert not self.training  # evaluated in eval mode
            raise RuntimeError("boom")

    broken = Boom()
    broken.train()
    broken.bn.eval()
    with pytest.raises(RuntimeError, match="boom"):
        evaluate_corruptions(broken, Cells({("fog", 1): 10}), progress=False)
    assert broken.training
    assert not broken.bn.training


def test_kept_logits_are_ordinary_tensors() -> None:
    res = evaluate_corruptions(MeanModel(), Cells({("fog", 1): 10}), progress=False)
    logits = res.logits[("fog", 1)]
    assert not logits.is_inference()
    w = torch.ones(3, requires_grad=True)
    (logits * w).sum().backward()  # raises for an inference tensor
    assert w.grad is not None
    logits.add_(1.0)  # in-place edits work too


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_model_dtypes(dtype: torch.dtype) -> None:
    data = Cells({("fog", 1): 10, ("snow", 1): 200}, n=8)
    model = MeanModel().to(dtype)
    res = evaluate_corruptions(model, data, progress=False)
    for cell in data.cells:
        key = (cell.corruption, cell.severity)
        ref = _bare(model, cell._images, dtype).float()  # the same computation in the model's dtype
        assert torch.equal(res.logits[key], ref)
        y = torch.from_numpy(cell.labels)
        assert res.cell(*key)["ece"] == expected_calibration_error(ref, y)
        assert res.cell(*key)["nll"] == negative_log_likelihood(ref, y)


# ----------------------------------------------------------------------------------- table conventions
def test_conventions_are_kept_in_every_row_and_survive_csv_and_json(tmp_path: Path) -> None:
    data = Cells({("fog", 1): 10, ("snow", 1): 90})
    res = evaluate_corruptions(MeanModel(), data, n_bins=10, binning="quantile", norm="l2", progress=False)
    for r in res.records:
        assert (r["n_bins"], r["binning"], r["norm"]) == (10, "quantile", "l2")
        key = (r["corruption"], r["severity"])
        assert r["ece"] == expected_calibration_error(
            res.logits[key], res.labels[key], n_bins=10, binning="quantile", norm="l2"
        )
    for back in (
        RobustnessResult.from_csv(res.to_csv(tmp_path / "t.csv")),
        RobustnessResult.from_json(res.to_json(tmp_path / "t.json")),
    ):
        assert back.records == res.records
        assert (back.n_bins, back.binning, back.norm) == (10, "quantile", "l2")  # not 15 / uniform / l1


def _table(n_bins: int = 15, n: int = 10, binning: str = "uniform") -> list[dict[str, Any]]:
    accs = {("clean", 0): 0.9, ("fog", 1): 0.7, ("fog", 2): 0.5}
    return [
        {
            "model": "m",
            "corruption": c,
            "severity": s,
            "n": n,
            "accuracy": a,
            "ece": 0.1,
            "nll": 1.0,
            "n_bins": n_bins,
            "binning": binning,
            "norm": "l1",
        }
        for (c, s), a in accs.items()
    ]


def test_combining_tables_with_different_conventions_or_n_is_refused() -> None:
    assert mean_corruption_error(_table(), _table()) == 1.0
    with pytest.raises(
        ValueError, match=r"different metric conventions: table n_bins=10.*reference n_bins=15"
    ):
        mean_corruption_error(_table(n_bins=10), _table())
    with pytest.raises(ValueError, match="binning='quantile'"):
        mean_corruption_error(_table(binning="quantile"), _table(), relative=True)
    with pytest.raises(
        ValueError, match=r"different numbers of images per cell \(\('clean', 0\): n=10 vs 20, \('fog', 1\)"
    ):
        mean_corruption_error(_table(), _table(n=20))
    # rows without conventions (old tables, hand-made rows) are accepted
    old = [{k: v for k, v in r.items() if k not in ("n_bins", "binning", "norm")} for r in _table()]
    assert mean_corruption_error(old, _table()) == 1.0
    # one table mixing conventions cannot be averaged
    mixed = _table()
    mixed[2]["n_bins"] = 10
    with pytest.raises(ValueError, match="mixes rows computed with different ECE conventions"):
        mean_ece_by_severity(mixed)
    bad = _table()
    bad[1]["norm"] = "l3"
    with pytest.raises(ValueError, match="norm='l3'"):
        mean_performance_under_corruption(bad)


# ----------------------------------------------------------------------------------------- accumulators
def _batches(seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, str, int]]:
    g = torch.Generator().manual_seed(seed)
    for key in [("clean", 0), ("fog", 1), ("fog", 2), ("snow", 1), ("fog", 1), ("snow", 1)]:
        yield torch.randn(7, 4, generator=g) * 2, torch.randint(0, 4, (7,), generator=g), *key


def test_robustness_accumulator_merge_equals_one_accumulator() -> None:
    kw: dict[str, Any] = {"model_name": "m", "n_bins": 8, "binning": "quantile", "norm": "max"}
    one, a, b = RobustnessAccumulator(**kw), RobustnessAccumulator(**kw), RobustnessAccumulator(**kw)
    for i, batch in enumerate(_batches()):
        one.update(*batch)
        (a if i % 2 else b).update(*batch)
    merged = a.merge(b).compute()
    whole = one.compute()
    assert {(r["corruption"], r["severity"]): r for r in merged.records} == {
        (r["corruption"], r["severity"]): r for r in whole.records
    }
    assert all((r["binning"], r["norm"], r["n_bins"]) == ("quantile", "max", 8) for r in whole.records)
    with pytest.raises(ValueError, match="into itself"):
        a.merge(a)
    with pytest.raises(ValueError, match="different settings"):
        a.merge(RobustnessAccumulator(model_name="m", n_bins=15))
    with pytest.raises(TypeError, match="RobustnessAccumulator"):
        a.merge(CalibrationAccumulator())  # type: ignore[arg-type]


def test_calibration_accumulator_misuse_raises() -> None:
    acc = CalibrationAccumulator()
    acc.update(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match="into itself"):
        acc.merge(acc)
    assert acc.n_samples == 5
    with pytest.warns(DeprecationWarning, match="inputs"):
        legacy = CalibrationAccumulator(15, None, "probs")
    assert legacy.inputs == "probs"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CalibrationAccumulator(15, None, inputs="probs").inputs == "probs"


def test_pooled_ece_takes_table_like_every_summary_and_keeps_result_as_deprecated_alias() -> None:
    from prunesafe.metrics.robustness import pooled_ece_by_severity

    res = evaluate_corruptions(MeanModel(), Cells({("fog", 1): 10, ("snow", 1): 90}), progress=False)
    expected = pooled_ece_by_severity(res)
    assert pooled_ece_by_severity(table=res) == expected
    with pytest.warns(DeprecationWarning, match="result="):
        assert pooled_ece_by_severity(result=res) == expected
    with pytest.raises(TypeError, match="once"):
        pooled_ece_by_severity(res, result=res)
