"""Reliability-diagram data: consistency with ECE, empty bins, pandas round-trip, immutability."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from prunesafe.metrics import ReliabilityDiagram, expected_calibration_error, reliability_diagram


def _data(n: int = 400, k: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 3, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_fields_are_consistent_with_ece(binning: str) -> None:
    logits, labels = _data()
    d = reliability_diagram(logits, labels, n_bins=10, binning=binning)  # type: ignore[arg-type]
    assert isinstance(d, ReliabilityDiagram)
    assert d.n_bins == 10
    assert d.count.dtype == np.int64
    assert d.count.sum() == 400
    assert d.ece == expected_calibration_error(logits, labels, n_bins=10, binning=binning)  # type: ignore[arg-type]
    nonempty = d.count > 0
    recomputed = np.sum(d.count[nonempty] / 400 * np.abs(d.gap[nonempty]))
    assert recomputed == pytest.approx(d.ece, abs=1e-12)
    np.testing.assert_allclose(d.gap[nonempty], (d.mean_confidence - d.accuracy)[nonempty])
    assert d.mce == pytest.approx(np.nanmax(np.abs(d.gap)))


def test_uniform_edges_and_empty_bins() -> None:
    probs = torch.tensor([[0.95, 0.05], [0.85, 0.15]])
    d = reliability_diagram(probs, torch.tensor([0, 1]), n_bins=4, inputs="probs")
    np.testing.assert_allclose(d.bin_lower, [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(d.bin_upper, [0.25, 0.5, 0.75, 1.0])
    assert d.count.tolist() == [0, 0, 0, 2]
    assert np.isnan(d.accuracy[:3]).all()
    assert np.isnan(d.mean_confidence[:3]).all()
    assert d.accuracy[3] == 0.5
    assert d.mean_confidence[3] == pytest.approx(0.9)
    assert d.gap[3] == pytest.approx(0.4)  # positive = over-confident


def test_pandas_round_trip() -> None:
    pd = pytest.importorskip("pandas")  # a dev extra: the module must collect without it
    d = reliability_diagram(*_data(), n_bins=7)
    df = pd.DataFrame(d.to_dict())
    assert list(df.columns) == ["bin_lower", "bin_upper", "count", "mean_confidence", "accuracy", "gap"]
    assert len(df) == 7
    assert int(df["count"].sum()) == 400
    df2 = pd.DataFrame.from_records(d.to_records())
    pd.testing.assert_frame_equal(df, df2)


def test_frozen_and_read_only() -> None:
    d = reliability_diagram(*_data(), n_bins=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.ece = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        d.count[0] = 3
