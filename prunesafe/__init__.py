"""prunesafe: prune CNNs and show they are still safe.

Calibration metrics, corruption robustness and dependency-aware structural pruning for PyTorch.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
