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


def test_every_nonempty_quantile_bin_is_visible() -> None:
    # regression: equal-mass bars had width upper - lower, i.e. 0 when a bin's confidences are all equal
    import matplotlib.pyplot as plt
    import numpy as np

    top = torch.tensor([0.5] * 40 + [0.7] * 30 + [0.9] * 30 + [0.95] * 3, dtype=torch.float64)
    probs = torch.stack([top, 1 - top], 1)
    labels = torch.randint(0, 2, (103,), generator=torch.Generator().manual_seed(1))
    d = reliability_diagram(probs, labels, n_bins=10, binning="quantile", inputs="probs")
    full = np.flatnonzero(d.count > 0)
    assert len(full) == 4
    assert np.all(d.bin_lower[full] == d.bin_upper[full])  # every non-empty bin is one tie group
    fig = plot_reliability_diagram(d)
    ax, hist = fig.axes
    acc_bars = list(ax.containers[0])
    hist_bars = list(hist.containers[0])
    assert len(acc_bars) == len(hist_bars) == 10
    for bars in (acc_bars, hist_bars):
        widths = np.array([bars[i].get_width() for i in full])
        lefts = np.array([bars[i].get_x() for i in full])
        assert np.all(widths > 0)
        # contiguous and ordered: [0, 1] tiled without overlap, each bar covering its confidence
        assert lefts[0] == 0.0
        assert np.allclose(lefts[1:], lefts[:-1] + widths[:-1])
        assert lefts[-1] + widths[-1] == pytest.approx(1.0)
        assert np.all((lefts <= d.bin_lower[full]) & (d.bin_lower[full] <= lefts + widths))
    assert [hist_bars[i].get_height() for i in full] == d.count[full].tolist()
    plt.close(fig)


def test_missing_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "prunesafe\[plot\]"'):
        plot_reliability_diagram(_diagram())


def test_rejects_wrong_data() -> None:
    with pytest.raises(TypeError, match="ReliabilityDiagram"):
        plot_reliability_diagram({"count": [1]})  # type: ignore[arg-type]
