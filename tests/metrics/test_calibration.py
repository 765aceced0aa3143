"""Correctness of the functional calibration metrics: oracles, documented differences, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _oracle import (
    binned_error,
    classwise_ece,
    equal_mass_bins,
    kumar_marginal,
    kumar_unbiased_l2_squared,
    softmax64,
    top_label_ece,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import multiclass_calibration_error

from prunesafe.metrics import (
    UndefinedMetricWarning,
    bootstrap_ci,
    brier_score,
    classwise_calibration_error,
    debiased_l2_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_diagram,
)


def _data(n: int, k: int, seed: int, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * scale, torch.randint(0, k, (n,), generator=g)


# --------------------------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("k", [2, 10, 100])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [5, 15])
def test_matches_torchmetrics(k: int, norm: str, n_bins: int) -> None:
    logits, labels = _data(3000, k, seed=k * 31 + n_bins)
    ours = expected_calibration_error(logits, labels, n_bins=n_bins, norm=norm)  # type: ignore[arg-type]
    ref = float(multiclass_calibration_error(logits, labels, num_classes=k, n_bins=n_bins, norm=norm))
    assert abs(ours - ref) <= 1e-6


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_matches_float64_oracle(norm: str) -> None:
    logits, labels = _data(4000, 10, seed=3)
    probs = softmax64(logits.double().numpy())
    ref = top_label_ece(probs, labels.numpy(), 15, norm)
    ours = expected_calibration_error(torch.from_numpy(probs), labels, n_bins=15, norm=norm, inputs="probs")
    assert ours == pytest.approx(ref, abs=1e-11)
    # float64 logits go through the exp(max)/sum(exp) kernel: same value to rounding
    assert expected_calibration_error(logits.double(), labels, norm=norm) == pytest.approx(ref, abs=1e-11)


def test_classwise_matches_oracle() -> None:
    logits, labels = _data(3000, 7, seed=4)
    probs = softmax64(logits.double().numpy())
    ref = classwise_ece(probs, labels.numpy(), 10)
    ours = classwise_calibration_error(torch.from_numpy(probs), labels, n_bins=10, inputs="probs")
    assert ours == pytest.approx(ref, abs=1e-11)


def test_mce_is_max_norm() -> None:
    logits, labels = _data(2000, 10, seed=5)
    assert maximum_calibration_error(logits, labels) == expected_calibration_error(logits, labels, norm="max")


def test_brier_and_nll_match_direct_formulas() -> None:
    logits, labels = _data(2000, 10, seed=6, scale=3.0)
    p = torch.softmax(logits.double(), 1)
    onehot = F.one_hot(labels, 10).double()
    assert brier_score(logits, labels) == pytest.approx(float(((p - onehot) ** 2).sum(1).mean()), abs=1e-7)
    ref_nll = float(F.cross_entropy(logits.double(), labels))
    assert negative_log_likelihood(logits, labels) == pytest.approx(ref_nll, abs=1e-9)
    assert negative_log_likelihood(p, labels, inputs="probs") == pytest.approx(ref_nll, abs=1e-9)


def test_nll_of_zero_probability_is_inf() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert negative_log_likelihood(probs, torch.tensor([1, 0]), inputs="probs") == math.inf


# ------------------------------------------------------------------- documented differences vs torchmetrics
def test_bin_edge_convention_differs_from_torchmetrics() -> None:
    # n_bins=4: confidence 0.75 sits exactly on an edge.  prunesafe: right-closed (0.5, 0.75] -> bin 2,
    # alone; torchmetrics (bucketize right=True): [0.75, 1.0) -> shares bin 3 with 0.8.
    probs = torch.tensor([[0.75, 0.25], [0.8, 0.2]], dtype=torch.float64)
    labels = torch.tensor([0, 1])  # 0.75 correct, 0.8 wrong
    ours = expected_calibration_error(probs, labels, n_bins=4, inputs="probs")
    ref = float(multiclass_calibration_error(probs, labels, num_classes=2, n_bins=4))
    assert ours == pytest.approx(0.5 * 0.25 + 0.5 * 0.8)
    assert ref == pytest.approx(abs(0.5 - 0.775))


def test_confidence_one_differs_from_torchmetrics() -> None:
    # prunesafe puts confidence 1.0 in the last bin (0.9, 1]; torchmetrics gives it an extra bin [1, 1.07).
    probs = torch.tensor([[1.0, 0.0], [0.95, 0.05]], dtype=torch.float64)
    labels = torch.tensor([1, 0])  # the 1.0 prediction is wrong, 0.95 right
    ours = expected_calibration_error(probs, labels, n_bins=10, inputs="probs")
    ref = float(multiclass_calibration_error(probs, labels, num_classes=2, n_bins=10))
    assert ours == pytest.approx(abs(0.5 - 0.975))
    assert ref == pytest.approx(0.5 * 1.0 + 0.5 * 0.05)
    d = reliability_diagram(probs, labels, n_bins=10, inputs="probs")
    assert d.count.tolist() == [0] * 9 + [2]


def test_confidence_zero_goes_to_first_bin() -> None:
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    # class 1 has probability exactly 0 for both samples: one bin [0, 0.1], positive rate 1/2
    # class 0 has probability 1 for both: last bin, positive rate 1/2 -> each class contributes 0.5
    assert classwise_calibration_error(probs, labels, n_bins=10, inputs="probs") == pytest.approx(0.5)


def test_ties_resolve_to_first_index_like_argmax() -> None:
    probs = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    ece = expected_calibration_error(probs, torch.tensor([0, 0]), n_bins=10, inputs="probs")
    assert ece == pytest.approx(0.5)  # both predicted class 0 -> correct, confidence .5
    d = reliability_diagram(probs, torch.tensor([1, 1]), n_bins=10, inputs="probs")
    assert float(np.nansum(d.accuracy)) == 0.0  # predicted class 0 -> wrong


def test_extreme_logits_use_the_stable_path() -> None:
    logits = torch.tensor([[500.0, 0.0, -3.0], [-200.0, -201.0, -250.0], [1.0, 2.0, 3.0], [90.0, 89.0, 0.0]])
    labels = torch.tensor([0, 1, 2, 0])
    probs = softmax64(logits.double().numpy())
    ref = top_label_ece(probs, labels.numpy(), 15)
    assert expected_calibration_error(logits, labels) == pytest.approx(ref, abs=1e-6)
    assert expected_calibration_error(logits.double(), labels) == pytest.approx(ref, abs=1e-12)


# ---------------------------------------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    k=st.integers(2, 12),
    scale=st.floats(0.01, 30.0),
    seed=st.integers(0, 10_000),
    n_bins=st.integers(1, 30),
    binning=st.sampled_from(["uniform", "quantile"]),
)
def test_ece_in_unit_interval_and_order_invariant(
    n: int, k: int, scale: float, seed: int, n_bins: int, binning: str
) -> None:
    logits, labels = _data(n, k, seed, scale)
    kw = {"n_bins": n_bins, "binning": binning}
    ece = expected_calibration_error(logits, labels, **kw)  # type: ignore[arg-type]
    assert 0.0 <= ece <= 1.0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    assert expected_calibration_error(logits[perm], labels[perm], **kw) == ece  # type: ignore[arg-type]
    mce = maximum_calibration_error(logits, labels, **kw)  # type: ignore[arg-type]
    assert ece <= mce + 1e-12 <= 1.0 + 1e-12
    cw = classwise_calibration_error(logits, labels, n_bins=n_bins)
    assert 0.0 <= cw <= 1.0
    assert classwise_calibration_error(logits[perm], labels[perm], n_bins=n_bins) == cw
    assert brier_score(logits[perm], labels[perm]) == brier_score(logits, labels)
    assert negative_log_likelihood(logits[perm], labels[perm]) == negative_log_likelihood(logits, labels)


def test_perfectly_calibrated_construction_gives_zero() -> None:
    # per-bin accuracy == confidence exactly: confidence c with round(c * m) of m predictions correct
    rows, labels = [], []
    for c, m in ((0.55, 20), (0.6, 10), (0.75, 4), (0.9, 10), (0.35, 20)):
        for i in range(m):
            rest = (1.0 - c) / 2.0
            rows.append([c, rest, rest])
            labels.append(0 if i < round(c * m) else 1)
    probs = torch.tensor(rows, dtype=torch.float64)
    y = torch.tensor(labels)
    for binning in ("uniform", "quantile"):
        for norm in ("l1", "l2", "max"):
            kw = {"n_bins": 10, "binning": binning, "norm": norm, "inputs": "probs"}
            assert expected_calibration_error(probs, y, **kw) < 1e-9, kw  # type: ignore[arg-type]
    # the construction is not trivially zero: move one label and every binning sees the gap
    y_off = y.clone()
    y_off[0] = 1 - y_off[0]
    for binning in ("uniform", "quantile"):
        assert expected_calibration_error(probs, y_off, n_bins=10, binning=binning, inputs="probs") > 1e-3


def test_sampled_labels_are_nearly_calibrated() -> None:
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(100_000, 10, generator=g) * 2
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=g).squeeze(1)
    assert expected_calibration_error(logits, labels) < 0.01
    assert expected_calibration_error(logits * 3, labels) > 0.1  # over-confident version is not
    assert classwise_calibration_error(logits, labels) < 0.005


def test_equal_width_equals_equal_mass_when_bins_hold_equal_counts() -> None:
    g = torch.Generator().manual_seed(12)
    confs = [0.15, 0.3, 0.5, 0.7, 0.9]  # one per equal-width bin of n_bins=5
    rows = []
    for c in confs:
        for _ in range(7):
            rows.append([c] + [(1.0 - c) / 9.0] * 9)
    probs = torch.tensor(rows, dtype=torch.float64)
    labels = torch.randint(0, 10, (len(rows),), generator=g)
    u = expected_calibration_error(probs, labels, n_bins=5, inputs="probs")
    q = expected_calibration_error(probs, labels, n_bins=5, inputs="probs", binning="quantile")
    assert u == q
    du = reliability_diagram(probs, labels, n_bins=5, inputs="probs")
    dq = reliability_diagram(probs, labels, n_bins=5, inputs="probs", binning="quantile")
    assert du.count.tolist() == dq.count.tolist() == [7] * 5


def test_quantile_bins_are_equal_mass() -> None:
    logits, labels = _data(1003, 10, seed=13)
    d = reliability_diagram(logits, labels, n_bins=10, binning="quantile")
    assert d.count.sum() == 1003
    assert d.count.max() - d.count.min() <= 1
    assert np.all(d.bin_lower <= d.bin_upper)
    assert np.all(d.bin_upper[:-1] <= d.bin_lower[1:])


def test_numpy_torch_and_dtypes_agree() -> None:
    logits, labels = _data(500, 10, seed=14)
    ref = expected_calibration_error(logits, labels)
    assert expected_calibration_error(logits.numpy(), labels.numpy()) == ref
    assert expected_calibration_error(logits, labels.int()) == ref
    assert expected_calibration_error(logits, labels.numpy().astype(np.uint8)) == ref  # CIFAR-10-C labels
    # half precision is upcast to float32 exactly, so it equals the float32 computation on the upcast
    half = logits.half()
    assert expected_calibration_error(half, labels) == expected_calibration_error(half.float(), labels)
    assert expected_calibration_error(logits.bfloat16(), labels) == expected_calibration_error(
        logits.bfloat16().float(), labels
    )


def test_large_input_multiple_blocks() -> None:
    # more rows than one block of the kernel: the blocked path must equal the oracle
    logits, labels = _data(250_000, 10, seed=15)
    probs = softmax64(logits.double().numpy())
    ref = top_label_ece(probs, labels.numpy(), 15)
    assert expected_calibration_error(logits, labels) == pytest.approx(ref, abs=1e-6)


# --------------------------------------------------------------------------------------------- debiased L2
def test_debiased_l2_matches_formula() -> None:
    logits, labels = _data(3000, 5, seed=16)
    probs = softmax64(logits.double().numpy())
    conf, hit = probs.max(1), (probs.argmax(1) == labels.numpy()).astype(float)
    idx = np.clip(np.ceil(conf * 10) - 1, 0, 9).astype(int)
    total = 0.0
    for b in range(10):
        sel = idx == b
        k = sel.sum()
        if k < 2:
            continue
        a, c = hit[sel].mean(), conf[sel].mean()
        total += k / 3000 * ((c - a) ** 2 - a * (1 - a) / (k - 1))
    p64 = torch.from_numpy(probs)
    ours = debiased_l2_calibration_error(p64, labels, n_bins=10, inputs="probs", squared=True)
    assert ours == pytest.approx(total, abs=1e-12)
    root = debiased_l2_calibration_error(torch.from_numpy(probs), labels, n_bins=10, inputs="probs")
    assert root == pytest.approx(math.sqrt(max(total, 0.0)), abs=1e-12)


def test_debiased_l2_removes_bias_on_calibrated_data() -> None:
    g = torch.Generator().manual_seed(17)
    biased, debiased = [], []
    for _ in range(20):
        p = torch.rand(400, generator=g, dtype=torch.float64) * 0.5 + 0.5
        probs = torch.stack([p, 1 - p], 1)
        labels = (torch.rand(400, generator=g, dtype=torch.float64) > p).long()  # calibrated
        biased.append(expected_calibration_error(probs, labels, inputs="probs", norm="l2") ** 2)
        debiased.append(debiased_l2_calibration_error(probs, labels, inputs="probs", squared=True))
    # true squared error is 0: the plug-in estimate is biased upwards, the debiased one is not
    assert np.mean(biased) > 5 * abs(np.mean(debiased))
    assert abs(np.mean(debiased)) < 2e-3


# ---------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    logits, labels = _data(800, 10, seed=18, scale=3.0)
    a = bootstrap_ci(expected_calibration_error, logits, labels, n_resamples=60, seed=1, n_bins=10)
    b = bootstrap_ci(expected_calibration_error, logits, labels, n_resamples=60, seed=1, n_bins=10)
    c = bootstrap_ci(expected_calibration_error, logits, labels, n_resamples=60, seed=2, n_bins=10)
    assert a == b
    assert np.array_equal(a.replicates, b.replicates)
    assert not np.array_equal(a.replicates, c.replicates)
    assert a.estimate == expected_calibration_error(logits, labels, n_bins=10)
    assert a.low < a.estimate < a.high
    assert a.high - a.low < 0.2
    assert set(a.to_dict()) == {"estimate", "low", "high", "method", "confidence", "n_resamples", "std_error"}
    assert a.method == "basic"


def test_bootstrap_interval_narrows_with_more_data_and_passes_kwargs() -> None:
    small = _data(200, 10, seed=19, scale=3.0)
    large = _data(5000, 10, seed=19, scale=3.0)
    ws = bootstrap_ci(brier_score, *small, n_resamples=100)
    wl = bootstrap_ci(brier_score, *large, n_resamples=100)
    assert (wl.high - wl.low) < (ws.high - ws.low)
    probs = torch.softmax(small[0], 1)
    r = bootstrap_ci(negative_log_likelihood, probs, small[1], n_resamples=20, inputs="probs")
    assert r.estimate == pytest.approx(negative_log_likelihood(small[0], small[1]), abs=1e-6)


def test_bootstrap_bad_arguments() -> None:
    logits, labels = _data(50, 3, seed=20)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(expected_calibration_error, logits, labels, n_resamples=1)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(expected_calibration_error, logits, labels, confidence=95)
    with pytest.raises(TypeError, match="metric_fn"):
        bootstrap_ci("ece", logits, labels)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same number of rows"):
        bootstrap_ci(expected_calibration_error, logits, labels[:10])


def test_inputs_are_not_modified() -> None:
    logits, labels = _data(50, 4, seed=21)
    probs = torch.softmax(logits.double(), 1)
    before_l, before_p, before_y = logits.clone(), probs.clone(), labels.clone()
    for inputs, x in (("logits", logits), ("probs", probs)):
        expected_calibration_error(x, labels, inputs=inputs)  # type: ignore[arg-type]
        expected_calibration_error(x, labels, inputs=inputs, binning="quantile")  # type: ignore[arg-type]
        classwise_calibration_error(x, labels, inputs=inputs)  # type: ignore[arg-type]
        brier_score(x, labels, inputs=inputs)  # type: ignore[arg-type]
        negative_log_likelihood(x, labels, inputs=inputs)  # type: ignore[arg-type]
        reliability_diagram(x, labels, inputs=inputs)  # type: ignore[arg-type]
    assert torch.equal(logits, before_l)
    assert torch.equal(probs, before_p)
    assert torch.equal(labels, before_y)


def test_block_sizes_do_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    # shrink the kernel's blocks so that every blocked / sub-chunked code path runs on small data
    import prunesafe.metrics.calibration as cal

    logits, labels = _data(2000, 7, seed=22, scale=4.0)
    logits[::50, 0] += 200.0  # some rows need the over/underflow fallback

    def everything() -> list[float]:
        return [
            expected_calibration_error(logits, labels),
            expected_calibration_error(logits, labels, binning="quantile"),
            classwise_calibration_error(logits, labels),
            brier_score(logits, labels),
            negative_log_likelihood(logits, labels),
            debiased_l2_calibration_error(logits, labels, squared=True),
        ]

    ref = everything()
    monkeypatch.setattr(cal, "_CHUNK_ELEMS", 200)
    monkeypatch.setattr(cal, "_MAX_ADD", 999)
    assert everything() == ref


# ------------------------------------------------------------------------------ equal-mass tie rule
def test_quantile_bins_keep_equal_confidences_together() -> None:
    # regression: ties in confidence used to be split by correctness into an all-wrong and an all-right bin
    probs = torch.full((1000, 2), 0.5, dtype=torch.float64)
    labels = torch.zeros(1000, dtype=torch.int64)
    labels[::2] = 1  # prediction is class 0 (first max), so exactly half are correct
    kw = {"n_bins": 2, "inputs": "probs"}
    assert expected_calibration_error(probs, labels, **kw) == 0.0  # type: ignore[arg-type]
    assert expected_calibration_error(probs, labels, binning="quantile", **kw) == 0.0  # type: ignore[arg-type]
    assert maximum_calibration_error(probs, labels, binning="quantile", **kw) == 0.0  # type: ignore[arg-type]
    d = reliability_diagram(probs, labels, binning="quantile", **kw)  # type: ignore[arg-type]
    assert d.count.tolist() == [1000, 0]
    assert d.accuracy[0] == 0.5
    assert d.bin_lower[0] == d.bin_upper[0] == 0.5
    assert np.isnan(d.bin_lower[1])
    # debiased plug-in on one bin with gap 0: 0 - 0.25 / 999, exactly as by hand
    sq = debiased_l2_calibration_error(probs, labels, binning="quantile", squared=True, **kw)  # type: ignore[arg-type]
    assert sq == pytest.approx(-0.25 / 999, rel=1e-12)


def _quantile_reference(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    """Brute force: rank bins floor(r M / N), then every tie group moved to the bin of its first rank."""
    order = np.argsort(conf, kind="stable")
    c, k = conf[order], correct[order]
    n = len(c)
    bins = (np.arange(n) * n_bins) // n
    for i in range(1, n):
        if c[i] == c[i - 1]:
            bins[i] = bins[i - 1]
    ece = 0.0
    for b in np.unique(bins):
        sel = bins == b
        ece += sel.sum() / n * abs(k[sel].mean() - c[sel].mean())
    return float(ece)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 200),
    levels=st.integers(1, 6),
    n_bins=st.integers(1, 12),
    seed=st.integers(0, 10_000),
)
def test_quantile_ties_match_reference(n: int, levels: int, n_bins: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    top = rng.choice(np.linspace(0.5, 1.0, levels), size=n)  # few distinct confidences: many ties
    probs = np.stack([top, 1.0 - top], 1)
    labels = rng.integers(0, 2, n)
    correct = labels == 0  # argmax is column 0 (first index on the 0.5 tie)
    got = expected_calibration_error(probs, labels, n_bins=n_bins, inputs="probs", binning="quantile")
    assert got == pytest.approx(_quantile_reference(top, correct, n_bins), abs=1e-12)
    d = reliability_diagram(probs, labels, n_bins=n_bins, inputs="probs", binning="quantile")
    full = d.count > 0
    # no confidence value appears in two bins: non-empty bins are strictly ordered
    assert np.all(d.bin_upper[full][:-1] < d.bin_lower[full][1:])


# ------------------------------------------------------------------------------ classwise: Kumar's marginal
@pytest.mark.parametrize(("norm", "p"), [("l1", 1), ("l2", 2), ("max", math.inf)])
def test_classwise_norms_match_kumar_marginal_transcription(norm: str, p: float) -> None:
    logits, labels = _data(4000, 6, seed=31, scale=2.5)
    probs = softmax64(logits.double().numpy())
    ref = kumar_marginal(probs, labels.numpy(), 12, p)
    got = classwise_calibration_error(torch.from_numpy(probs), labels, n_bins=12, norm=norm, inputs="probs")
    assert got == pytest.approx(ref, abs=1e-12)


def test_classwise_l2_is_not_the_mean_of_per_class_rms() -> None:
    # regression: norm="l2" used to average per-class RMS errors, which is a different (smaller) number
    logits, labels = _data(4000, 6, seed=32, scale=3.0)
    logits[:, 0] += 2.0  # one badly calibrated class
    probs = softmax64(logits.double().numpy())
    per_class = [binned_error(probs[:, j], (labels.numpy() == j).astype(float), 15, "l2") for j in range(6)]
    got = classwise_calibration_error(torch.from_numpy(probs), labels, norm="l2", inputs="probs")
    assert got == pytest.approx(math.sqrt(np.mean(np.square(per_class))), abs=1e-12)
    assert got > float(np.mean(per_class)) + 1e-3


def test_classwise_equal_mass_bins_match_a_tie_free_reference() -> None:
    logits, labels = _data(3000, 4, seed=33, scale=2.0)
    probs = softmax64(logits.double().numpy())
    y = labels.numpy()
    for n_bins in (1, 7, 15):
        per_class = []
        for j in range(4):
            col, hit = probs[:, j], (y == j).astype(float)
            per_class.append(
                sum(len(b) / 3000 * abs(hit[b].mean() - col[b].mean()) for b in equal_mass_bins(col, n_bins))
            )
        got = classwise_calibration_error(
            torch.from_numpy(probs), labels, n_bins=n_bins, binning="quantile", inputs="probs"
        )
        assert got == pytest.approx(float(np.mean(per_class)), abs=1e-12)
    assert classwise_calibration_error(logits, labels, binning="quantile") != classwise_calibration_error(
        logits, labels
    )


# --------------------------------------------------------------------------- debiased L2: Kumar transcription
@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_debiased_l2_matches_kumar_transcription(binning: str) -> None:
    logits, labels = _data(2500, 5, seed=34, scale=2.0)
    probs = softmax64(logits.double().numpy())
    conf, hit = probs.max(1), (probs.argmax(1) == labels.numpy()).astype(float)
    if binning == "uniform":
        idx = np.clip(np.ceil(conf * 10) - 1, 0, 9).astype(int)
        bins = [np.nonzero(idx == b)[0] for b in range(10) if np.any(idx == b)]
    else:
        bins = equal_mass_bins(conf, 10)  # confidences of continuous logits are tie-free
    ref = kumar_unbiased_l2_squared(conf, hit, bins)
    kw = {"n_bins": 10, "binning": binning, "inputs": "probs"}
    got = debiased_l2_calibration_error(torch.from_numpy(probs), labels, squared=True, **kw)  # type: ignore[arg-type]
    assert got == pytest.approx(ref, abs=1e-12)
    root = debiased_l2_calibration_error(torch.from_numpy(probs), labels, **kw)  # type: ignore[arg-type]
    assert root == pytest.approx(max(ref, 0.0) ** 0.5, abs=1e-12)


def test_debiased_l2_is_nan_with_a_warning_when_no_bin_holds_two_samples() -> None:
    probs = torch.tensor([[0.95, 0.05], [0.55, 0.45], [0.75, 0.25]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0])
    with pytest.warns(UndefinedMetricWarning, match="no bin holds two or more samples"):
        assert math.isnan(debiased_l2_calibration_error(probs, labels, n_bins=15, inputs="probs"))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(
            debiased_l2_calibration_error(probs, labels, n_bins=15, inputs="probs", squared=True)
        )
    # one bin with two samples is enough
    assert math.isfinite(debiased_l2_calibration_error(probs, labels, n_bins=1, inputs="probs"))
