"""Reliability diagram figure: per-bin accuracy bars, calibration gaps and a confidence histogram."""

from __future__ import annotations

from typing import Any

import numpy as np

from prunesafe.metrics.reliability import ReliabilityDiagram

__all__ = ["plot_reliability_diagram"]

_INSTALL_HINT = 'plotting needs matplotlib: pip install "prunesafe[plot]"'


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # tested by monkeypatching sys.modules
        raise ImportError(_INSTALL_HINT) from exc
    return plt


def _bar_extents(data: ReliabilityDiagram, nonempty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left edge and width of each bin's bar (0-width bars for empty bins).

    Equal-width bins are drawn on their edges.  Equal-mass bins span only ``[min, max]`` of their
    confidences -- zero wide when they are all equal -- so their bars are drawn contiguous instead: a
    non-empty bin's bar reaches halfway to its neighbours' confidences (0 and 1 at the ends), which
    gives every non-empty bin a positive width and keeps the bars in order without overlap.
    """
    lower, upper = data.bin_lower, data.bin_upper
    edges_ok = np.isfinite(lower) & np.isfinite(upper)
    if data.binning == "uniform":
        return np.where(edges_ok, lower, 0.0), np.where(edges_ok, upper - lower, 0.0)
    lo = np.zeros(data.n_bins, dtype=np.float64)
    width = np.zeros(data.n_bins, dtype=np.float64)
    idx = np.flatnonzero(nonempty & edges_ok)
    idx = idx[np.argsort(lower[idx], kind="stable")]
    for k, i in enumerate(idx):
        left = 0.0 if k == 0 else (upper[idx[k - 1]] + lower[i]) / 2.0
        right = 1.0 if k == len(idx) - 1 else (upper[i] + lower[idx[k + 1]]) / 2.0
        lo[i], width[i] = left, right - left
    return lo, width


def plot_reliability_diagram(
    data: ReliabilityDiagram,
    ax: Any = None,
    *,
    hist_ax: Any = None,
    show_histogram: bool = True,
    title: str | None = None,
) -> Any:
    """Draw a reliability diagram from :func:`prunesafe.metrics.reliability_diagram` data.

    Bars show the accuracy of each bin; hatched red bars show the gap to the bin's mean confidence
    (drawn from the accuracy up/down to the confidence); the dashed diagonal is perfect calibration.
    Below it (or in ``hist_ax``) a histogram shows how many samples fall in each bin.  Equal-width
    bins are drawn on their edges; equal-mass bins as contiguous bars that reach halfway to the
    neighbouring bins' confidences, so every non-empty bin is visible even when all its confidences
    are equal.

    Parameters
    ----------
    data : ReliabilityDiagram
        Per-bin data.
    ax : matplotlib Axes, optional
        Where to draw the diagram.  When None a new figure with two stacked axes (diagram and
        histogram) is created.
    hist_ax : matplotlib Axes, optional
        Where to draw the confidence histogram when ``ax`` is given (otherwise no histogram is drawn
        unless ``ax`` is None).
    show_histogram : bool, default True
        Draw the histogram (when there is an axes for it).
    title : str, optional
        Title; defaults to one stating ECE / MCE and the sample count.

    Returns
    -------
    matplotlib.figure.Figure
        The figure containing ``ax`` (save it with ``fig.savefig("reliability.png")``).

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install "prunesafe[plot]"``).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import torch
    >>> from prunesafe.metrics import reliability_diagram
    >>> from prunesafe.plotting import plot_reliability_diagram
    >>> d = reliability_diagram(torch.randn(500, 10) * 3, torch.randint(0, 10, (500,)), n_bins=10)
    >>> fig = plot_reliability_diagram(d)
    >>> len(fig.axes)
    2
    """
    if not isinstance(data, ReliabilityDiagram):
        raise TypeError(
            f"`data` must be a ReliabilityDiagram (from prunesafe.metrics.reliability_diagram), "
            f"got {type(data).__name__}."
        )
    plt = _pyplot()
    if ax is None:
        if show_histogram:
            fig, (ax, hist_ax) = plt.subplots(
                2,
                1,
                figsize=(5, 6),
                sharex=True,
                gridspec_kw={"height_ratios": [3, 1]},
                layout="constrained",
            )
        else:
            fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    fig = ax.figure
    nonempty = data.count > 0
    lo, width = _bar_extents(data, nonempty)
    acc = np.where(nonempty, data.accuracy, 0.0)
    conf = np.where(nonempty, data.mean_confidence, 0.0)
    ax.bar(lo, acc, width=width, align="edge", color="#4c72b0", edgecolor="black", linewidth=0.5,
           label="accuracy")
    ax.bar(
        lo[nonempty], (conf - acc)[nonempty], bottom=acc[nonempty], width=width[nonempty], align="edge",
        color="#dd4444", alpha=0.35, edgecolor="#aa0000", hatch="//", linewidth=0.5, label="gap",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize="small")
    if title is None:
        title = (
            f"ECE {data.ece:.4f}  MCE {data.mce:.4f}  "
            f"(n={data.n_samples}, {data.n_bins} {data.binning} bins)"
        )
    ax.set_title(title, fontsize="medium")
    if show_histogram and hist_ax is not None:
        hist_ax.bar(lo, data.count, width=width, align="edge", color="#888888", edgecolor="black",
                    linewidth=0.5)
        hist_ax.set_xlim(0, 1)
        hist_ax.set_ylabel("count")
        hist_ax.set_xlabel("confidence")
    else:
        ax.set_xlabel("confidence")
    return fig
