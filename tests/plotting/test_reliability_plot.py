"""plot_reliability_diagram: PNG output with the Agg backend, the missing-matplotlib path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from prunesafe.metrics import reliability_diagram
from prunesafe.plotting import plot_reliability_diagram

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def _diagram(binning: str = "uniform"):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(500, 10, generator=g) * 3, torch.randint(0, 10, (500,), generator=g)
    return reliability_diagram(logits, labels, n_bins=10, binning=binning)  # type: ignore[arg-type]


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_saves_png(tmp_path: Path, binning: str) -> None:
    import matplotlib.pyplot as plt

    fig = plot_reliability_diagram(_diagram(binning))
    out = tmp_path / "reliability.png"
    fig.savefig(out, dpi=60)
    plt.close(fig)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5000
    assert len(fig.axes) == 2


def test_draws_on_given_axes() -> None:
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(1, 2)
    d = _diagram()
    returned = plot_reliability_diagram(d, ax, hist_ax=hist, title="mine")
    assert returned is fig
    assert ax.get_title() == "mine"
    assert len(ax.patches) >= 10  # accuracy bars (+ gap bars)
    assert sum(p.get_height() for p in hist.patches) == pytest.approx(500)
    plt.close(fig)


def test_missing_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "prunesafe\[plot\]"'):
        plot_reliability_diagram(_diagram())


def test_rejects_wrong_data() -> None:
    with pytest.raises(TypeError, match="ReliabilityDiagram"):
        plot_reliability_diagram({"count": [1]})  # type: ignore[arg-type]
