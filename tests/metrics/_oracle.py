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


def kumar_marginal(probs: np.ndarray, labels: np.ndarray, n_bins: int, p: float) -> float:
    """Kumar et al. (2019) ``get_calibration_error(..., mode="marginal", debias=False)``, transcribed.

    Their code computes, for every class k, the plug-in error ``ce_k`` of (probs[:, k], labels == k) and
    returns ``mean_k(ce_k ** p) ** (1 / p)``; here with equal-width right-closed bins (their binning
    differs) and ``p = inf`` for the maximum.
    """
    k = probs.shape[1]
    norm = {1: "l1", 2: "l2"}.get(p, "max")  # type: ignore[call-overload]
    ces = np.array(
        [binned_error(probs[:, j], (labels == j).astype(np.float64), n_bins, norm) for j in range(k)]
    )
    if norm == "max":
        return float(ces.max())
    return float(np.mean(ces**p) ** (1.0 / p))


def equal_mass_bins(values: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Index sets of equal-mass bins of tie-free ``values``: sorted ranks split as floor(r * M / N)."""
    order = np.argsort(values)
    rank_bin = (np.arange(len(values)) * n_bins) // len(values)
    return [order[rank_bin == b] for b in range(n_bins) if np.any(rank_bin == b)]


def kumar_unbiased_l2_squared(conf: np.ndarray, hit: np.ndarray, bins: list[np.ndarray]) -> float:
    """Kumar et al.'s ``unbiased_l2_ce`` (calibration/utils.py) before the final ``max(., 0) ** 0.5``.

    Transcribed from their per-bin loop: ``bin_error = |mean(prob - label)|**2 - mean_label * (1 -
    mean_label) / (len - 1)`` (0 for bins with fewer than 2 samples), weighted by ``len(bin) / N``.
    """
    n = sum(len(b) for b in bins)
    total = 0.0
    for b in bins:
        data = list(zip(conf[b], hit[b], strict=True))
        if len(data) < 2:
            continue
        biased = abs(np.mean([pr - lab for pr, lab in data])) ** 2
        mean_label = np.mean([lab for _, lab in data])
        total += len(data) / n * (biased - mean_label * (1.0 - mean_label) / (len(data) - 1.0))
    return total
