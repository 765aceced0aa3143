"""Independent float64 NumPy reference implementations (straight loops over bins, as in Guo et al.'s code)."""

from __future__ import annotations

import numpy as np


def softmax64(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def binned_error(conf: np.ndarray, hit: np.ndarray, n_bins: int, norm: str) -> float:
    """Right-closed equal-width bins (lo, hi]; a value of exactly 0 joins the first bin."""
    n = conf.shape[0]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total, worst = 0.0, 0.0
    for b in range(n_bins):
        in_bin = (conf > edges[b]) & (conf <= edges[b + 1])
        if b == 0:
            in_bin |= conf == 0.0
        k = int(in_bin.sum())
        if k == 0:
            continue
        gap = abs(hit[in_bin].mean() - conf[in_bin].mean())
        worst = max(worst, gap)
        total += k / n * (gap if norm == "l1" else gap**2)
    if norm == "max":
        return worst
    return total if norm == "l1" else float(np.sqrt(total))


def top_label_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int, norm: str = "l1") -> float:
    conf = probs.max(1)
    hit = (probs.argmax(1) == labels).astype(np.float64)
    return binned_error(conf, hit, n_bins, norm)


def classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    k = probs.shape[1]
    return float(
        np.mean([binned_error(probs[:, j], (labels == j).astype(np.float64), n_bins, "l1") for j in range(k)])
    )
