"""prunesafe.plotting: optional matplotlib figures (install with ``pip install "prunesafe[plot]"``)."""

from prunesafe.plotting.reliability import plot_reliability_diagram

__all__ = ["plot_reliability_diagram"]
