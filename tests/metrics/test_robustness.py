"""evaluate_corruptions and the robustness summaries (mPC, rPC, mCE, per-severity ECE)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _oracle import softmax64, top_label_ece
from torch import nn

from prunesafe.data import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    CIFAR10C,
    ArrayDataset,
    load_cifar10_arrays,
)
from prunesafe.metrics.calibration import expected_calibration_error, negative_log_likelihood
from prunesafe.metrics.robustness import (
    CLEAN,
    COLUMNS,
    RobustnessAccumulator,
    RobustnessResult,
    evaluate_corruptions,
    mean_corruption_error,
    mean_ece_by_severity,
    mean_performance_under_corruption,
    pooled_ece_by_severity,
    relative_performance_under_corruption,
)
from prunesafe.models import cifar_resnet, load_weights


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def tiny_model(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.BatchNorm1d(48), nn.Linear(48, num_classes)
    )


def make_cifar_c(root: Path, corruptions=("fog", "snow", "frost"), n: int = 6) -> Path:
    rng = np.random.default_rng(3)
    root.mkdir(parents=True, exist_ok=True)
    for c in corruptions:
        np.save(root / f"{c}.npy", rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8))
    np.save(root / "labels.npy", np.tile(rng.integers(0, 10, n), 5).astype(np.uint8))
    return root


def bare_logits(model: nn.Module, images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return model.eval()(x)


def rows(accs: dict[tuple[str, int], float], model: str = "m", ece: float = 0.0) -> list[dict]:
    return [
        {"model": model, "corruption": c, "severity": s, "n": 10, "accuracy": a, "ece": ece, "nll": 1.0}
        for (c, s), a in accs.items()
    ]


def load_resnet20(path: Path) -> nn.Module:
    return load_weights(cifar_resnet(20), path)


# ---------------------------------------------------------------------------------------------
# evaluation on the shared sample with the real checkpoint
# ---------------------------------------------------------------------------------------------
def test_resnet20_jpeg_matches_published_sample_accuracies(models_dir, cifar10c_sample_dir) -> None:
    model = load_resnet20(models_dir / "resnet20-jpeg.th")
    model.train()
    bn_before = model.bn1.running_mean.clone()
    ds = CIFAR10C(cifar10c_sample_dir, ["gaussian_noise", "contrast"], [1, 5])
    res = evaluate_corruptions(model, ds, corruptions="gaussian_noise", batch_size=128, progress=False)
    # shared/README.md: gaussian_noise .825 (s1) .470 (s5)
    assert [(r["corruption"], r["severity"]) for r in res.records] == [
        ("gaussian_noise", 1),
        ("gaussian_noise", 5),
    ]
    assert res.cell("gaussian_noise", 1)["accuracy"] == pytest.approx(0.825, abs=1e-12)
    assert res.cell("gaussian_noise", 5)["accuracy"] == pytest.approx(0.470, abs=1e-12)
    assert model.training  # mode restored
    assert torch.equal(model.bn1.running_mean, bn_before)  # ran in eval mode
    # ECE/NLL are the calibration functions applied to an independently computed forward pass
    cell = next(c for c in ds.cells if (c.corruption, c.severity) == ("gaussian_noise", 5))
    ref = bare_logits(model, cell.images)
    model.train()
    assert torch.allclose(res.logits[("gaussian_noise", 5)], ref, atol=1e-4)
    y = torch.from_numpy(cell.labels)
    assert res.cell("gaussian_noise", 5)["ece"] == pytest.approx(expected_calibration_error(ref, y), abs=1e-5)
    assert res.cell("gaussian_noise", 5)["nll"] == pytest.approx(negative_log_likelihood(ref, y), abs=1e-5)


def test_clean_row_from_shared_cifar10(models_dir, cifar10_dir) -> None:
    model = load_resnet20(models_dir / "resnet20-12fca82f.th")
    x, y = load_cifar10_arrays(cifar10_dir)
    res = evaluate_corruptions(model, clean=ArrayDataset(x[:300], y[:300]), progress=False)
    (row,) = res.records
    ref = bare_logits(model, x[:300])
    expected = float((ref.argmax(1) == torch.from_numpy(y[:300])).double().mean())
    assert row["corruption"] == CLEAN
    assert row["severity"] == 0
    assert row["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert 0.7 < row["accuracy"] < 0.95  # README: 81 % on the full split


# ---------------------------------------------------------------------------------------------
# evaluation mechanics with a tiny model
# ---------------------------------------------------------------------------------------------
def test_table_structure_and_io(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")  # a dev extra: the module must collect without it
    d = make_cifar_c(tmp_path / "c")
    model = tiny_model()
    clean = (np.random.default_rng(1).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8), np.arange(9) % 10)
    res = evaluate_corruptions(
        model,
        CIFAR10C(d, ["fog", "snow", "frost"], [2, 4]),
        clean=clean,
        batch_size=4,
        progress=False,
        model_name="tiny",
    )
    keys = [(r["corruption"], r["severity"]) for r in res.records]
    cells = [(c, s) for c in ("fog", "snow", "frost") for s in (2, 4)]
    assert keys == [("clean", 0), *cells]
    assert all(set(r) == set(COLUMNS) and r["model"] == "tiny" for r in res.records)
    assert res.records[0]["n"] == 9
    assert all(r["n"] == 6 for r in res.records[1:])
    # accuracy per cell agrees with a bare forward pass
    ds = CIFAR10C(d, "snow", 4)
    ref = bare_logits(model, ds.images)
    acc = float((ref.argmax(1) == torch.from_numpy(ds.labels)).double().mean())
    assert res.cell("snow", 4)["accuracy"] == pytest.approx(acc, abs=1e-12)
    # CSV / JSON read by pandas and by the result class
    for writer, reader in ((res.to_csv, pd.read_csv), (res.to_json, pd.read_json)):
        path = writer(tmp_path / f"t.{writer.__name__[3:]}")
        df = reader(path)
        assert list(df.columns) == list(COLUMNS)
        assert df["accuracy"].tolist() == pytest.approx([r["accuracy"] for r in res.records])
        assert df["severity"].tolist() == [r["severity"] for r in res.records]
    back = RobustnessResult.from_csv(tmp_path / "t.csv")
    assert back.records == res.records  # floats are written with repr(): exact round trip
    assert RobustnessResult.from_json(tmp_path / "t.json").records == res.records
    assert mean_performance_under_corruption(pd.read_csv(tmp_path / "t.csv")) == pytest.approx(
        mean_performance_under_corruption(res)
    )
    assert res.to_pandas().shape == (7, len(COLUMNS))


def test_root_path_defaults_to_benchmark_and_validates(tmp_path: Path) -> None:
    d = make_cifar_c(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="gaussian_noise"):
        evaluate_corruptions(tiny_model(), d, progress=False)  # benchmark set needs all 15 files
    res = evaluate_corruptions(tiny_model(), d, corruptions="fog", severities=3, progress=False)
    assert [(r["corruption"], r["severity"]) for r in res.records] == [("fog", 3)]
    ds = CIFAR10C(d, "fog", [1, 2])
    with pytest.raises(ValueError, match="does not contain the requested cells"):
        evaluate_corruptions(tiny_model(), ds, severities=[3], progress=False)


def test_keep_logits_false_and_pooled_requires_logits(tmp_path: Path) -> None:
    d = make_cifar_c(tmp_path / "c")
    res = evaluate_corruptions(tiny_model(), CIFAR10C(d, "fog", "all"), keep_logits=False, progress=False)
    assert res.logits == {}
    with pytest.raises(ValueError, match="keep_logits=True"):
        pooled_ece_by_severity(res)
    with pytest.raises(TypeError, match="mean_ece_by_severity"):
        pooled_ece_by_severity(res.records)  # type: ignore[arg-type]


def test_bad_evaluation_inputs(tmp_path: Path) -> None:
    d = make_cifar_c(tmp_path / "c")
    ds = CIFAR10C(d, "fog", 1)
    m = tiny_model()
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        evaluate_corruptions(lambda x: x, ds)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_corruptions(m)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_corruptions(m, ds, batch_size=0)
    with pytest.raises(ValueError, match="n_bins"):
        evaluate_corruptions(m, ds, n_bins=0)
    with pytest.raises(ValueError, match=r"model is on cpu but device=meta"):
        evaluate_corruptions(m, ds, device="meta")
    with pytest.raises(TypeError, match="CIFAR-C folder"):
        evaluate_corruptions(m, [1, 2, 3])
    with pytest.raises(TypeError, match="clean must be"):
        evaluate_corruptions(m, clean=object())
    with pytest.raises(TypeError, match="uint8"):
        evaluate_corruptions(m, clean=(np.zeros((2, 32, 32, 3), np.float32), [0, 1]))
    with pytest.raises(ValueError, match="must match"):
        evaluate_corruptions(m, clean=(np.zeros((2, 32, 32, 3), np.uint8), [0]))
    with pytest.raises(ValueError, match="corruptions/severities given but data is None"):
        evaluate_corruptions(m, corruptions="fog", clean=(np.zeros((2, 32, 32, 3), np.uint8), [0, 1]))
    with pytest.raises(ValueError, match="outputs 3 classes"):
        evaluate_corruptions(tiny_model(3), ds, progress=False)
    m.train()
    with pytest.raises(ValueError, match="outputs 3 classes"):
        evaluate_corruptions(m[:-1].append(nn.Linear(48, 3)), ds, progress=False)
    assert m.training  # restored even after an error


# ---------------------------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------------------------
GRID = {("clean", 0): 0.9, ("fog", 1): 0.8, ("fog", 2): 0.6, ("snow", 1): 0.7, ("snow", 2): 0.5}
REF = {("clean", 0): 0.95, ("fog", 1): 0.9, ("fog", 2): 0.8, ("snow", 1): 0.85, ("snow", 2): 0.75}


def test_mpc_and_rpc_by_hand() -> None:
    assert mean_performance_under_corruption(rows(GRID)) == pytest.approx((0.8 + 0.6 + 0.7 + 0.5) / 4)
    per = mean_performance_under_corruption(rows(GRID), per_severity=True)
    assert per == pytest.approx({1: 0.75, 2: 0.55})
    assert relative_performance_under_corruption(rows(GRID)) == pytest.approx(0.65 / 0.9)


def test_mce_and_relative_mce_by_hand() -> None:
    ce_fog = (0.2 + 0.4) / (0.1 + 0.2)
    ce_snow = (0.3 + 0.5) / (0.15 + 0.25)
    assert mean_corruption_error(rows(GRID), rows(REF), per_corruption=True) == pytest.approx(
        {"fog": ce_fog, "snow": ce_snow}
    )
    assert mean_corruption_error(rows(GRID), rows(REF)) == pytest.approx((ce_fog + ce_snow) / 2)
    rce_fog = ((0.2 - 0.1) + (0.4 - 0.1)) / ((0.1 - 0.05) + (0.2 - 0.05))
    rce_snow = ((0.3 - 0.1) + (0.5 - 0.1)) / ((0.15 - 0.05) + (0.25 - 0.05))
    rmce = mean_corruption_error(rows(GRID), rows(REF), relative=True)
    assert rmce == pytest.approx((rce_fog + rce_snow) / 2)
    # against itself: exactly 1; several models in one table are picked by name
    both = rows(GRID, "pruned") + rows(REF, "dense")
    assert mean_corruption_error(both, both, model="dense", reference_model="dense") == pytest.approx(1.0)
    assert mean_corruption_error(both, both, model="pruned", reference_model="dense") == pytest.approx(
        (ce_fog + ce_snow) / 2
    )
    # reference may have extra corruptions; only the table's are averaged
    ref_more = rows({**REF, ("fog", 3): 0.1, ("frost", 1): 0.5, ("frost", 2): 0.4, ("snow", 3): 0.2})
    assert mean_corruption_error(rows(GRID), ref_more) == pytest.approx((ce_fog + ce_snow) / 2)


def test_mce_against_reference_errors_keyed_by_corruption() -> None:
    # issue 4: the reference may be published errors keyed by corruption name instead of a table
    per_sev = {c: {s: 1 - a for (cc, s), a in REF.items() if cc == c} for c in ("fog", "snow")}
    table_mce = mean_corruption_error(rows(GRID), rows(REF))
    assert mean_corruption_error(rows(GRID), per_sev) == pytest.approx(table_mce)
    assert mean_corruption_error(rows(GRID), per_sev, per_corruption=True) == pytest.approx(
        {"fog": 0.6 / 0.3, "snow": 0.8 / 0.4}
    )
    # float form: the reference's mean error over severities -> CE_c = mean_s E_{s,c} / that float
    means = {"fog": 0.15, "snow": 0.2, "frost": 0.9}  # extra corruptions are ignored
    assert mean_corruption_error(rows(GRID), means, per_corruption=True) == pytest.approx(
        {"fog": 0.3 / 0.15, "snow": 0.4 / 0.2}
    )
    # relative mCE: clean error as a "clean" entry or as reference_clean_error
    rel = mean_corruption_error(rows(GRID), rows(REF), relative=True)
    assert mean_corruption_error(rows(GRID), {**per_sev, "clean": 0.05}, relative=True) == pytest.approx(rel)
    assert mean_corruption_error(
        rows(GRID), per_sev, relative=True, reference_clean_error=0.05
    ) == pytest.approx(rel)
    assert mean_corruption_error(
        rows(GRID), means, relative=True, reference_clean_error=0.05, per_corruption=True
    ) == pytest.approx({"fog": (0.3 - 0.1) / (0.15 - 0.05), "snow": (0.4 - 0.1) / (0.2 - 0.05)})
    with pytest.raises(ValueError, match=r"needs a clean row in the reference.*reference_clean_error"):
        mean_corruption_error(rows(GRID), per_sev, relative=True)
    with pytest.raises(ValueError, match="given twice"):
        mean_corruption_error(rows(GRID), {**means, "clean": 0.05}, relative=True, reference_clean_error=0.05)
    with pytest.raises(ValueError, match="only for a reference given as a mapping"):
        mean_corruption_error(rows(GRID), rows(REF), reference_clean_error=0.05)
    with pytest.raises(ValueError, match=r"reference lacks corruption\(s\) \['snow'\]"):
        mean_corruption_error(rows(GRID), {"fog": 0.2})
    with pytest.raises(ValueError, match="reference lacks severities"):
        mean_corruption_error(rows(GRID), {"fog": {1: 0.1}, "snow": 0.2})
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        mean_corruption_error(rows(GRID), {"fog": 0.2, "snow": 80.0})
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        mean_corruption_error(rows(GRID), {"fog": 0.2, "snow": float("nan")})
    with pytest.raises(TypeError, match="int severities"):
        mean_corruption_error(rows(GRID), {"fog": {"1": 0.2}, "snow": 0.2})
    with pytest.raises(TypeError, match="must be a number"):
        mean_corruption_error(rows(GRID), {"fog": "0.2", "snow": 0.2})
    with pytest.raises(ValueError, match="zero error on 'fog'"):
        mean_corruption_error(rows(GRID), {"fog": 0.0, "snow": 0.2})
    with pytest.raises(ValueError, match="reference_model selects rows"):
        mean_corruption_error(rows(GRID), means, reference_model="dense")


def test_summary_errors() -> None:
    with pytest.raises(ValueError, match="several models"):
        mean_performance_under_corruption(rows(GRID, "a") + rows(GRID, "b"))
    with pytest.raises(ValueError, match="no rows for model 'c'"):
        mean_performance_under_corruption(rows(GRID), model="c")
    holey = {k: v for k, v in GRID.items() if k != ("snow", 2)}
    with pytest.raises(ValueError, match=r"not a complete corruption x severity grid.*\('snow', 2\)"):
        mean_performance_under_corruption(rows(holey))
    with pytest.raises(ValueError, match="duplicate"):
        mean_performance_under_corruption(rows(GRID) + rows({("fog", 1): 0.1}))
    with pytest.raises(ValueError, match="no corruption rows"):
        mean_performance_under_corruption(rows({("clean", 0): 0.9}))
    with pytest.raises(ValueError, match="no clean row"):
        relative_performance_under_corruption(rows({k: v for k, v in GRID.items() if k[0] != "clean"}))
    with pytest.raises(ValueError, match="clean accuracy is 0"):
        relative_performance_under_corruption(rows({**GRID, ("clean", 0): 0.0}))
    with pytest.raises(ValueError, match=r"reference lacks corruption\(s\) \['snow'\]"):
        mean_corruption_error(rows(GRID), rows({k: v for k, v in REF.items() if k[0] != "snow"}))
    with pytest.raises(ValueError, match="reference lacks severities"):
        mean_corruption_error(rows({**GRID, ("fog", 3): 0.5, ("snow", 3): 0.5}), rows(REF))
    with pytest.raises(ValueError, match="zero error on 'fog'"):
        mean_corruption_error(rows(GRID), rows({**REF, ("fog", 1): 1.0, ("fog", 2): 1.0}))
    with pytest.raises(ValueError, match="does not exceed its clean error"):
        mean_corruption_error(rows(GRID), rows({**REF, ("clean", 0): 0.85}), relative=True)
    no_clean = rows({k: v for k, v in REF.items() if k[0] != "clean"})
    with pytest.raises(ValueError, match="clean row in the reference"):
        mean_corruption_error(rows(GRID), no_clean, relative=True)
    with pytest.raises(TypeError, match="RobustnessResult, a list of records"):
        mean_performance_under_corruption(42)
    with pytest.raises(ValueError, match="lacks column"):
        mean_performance_under_corruption([{"model": "m", "corruption": "fog"}])
    with pytest.raises(ValueError, match="empty"):
        mean_performance_under_corruption([])
    bad = rows(GRID)
    bad[1]["accuracy"] = float("nan")
    with pytest.raises(ValueError, match="no accuracy for"):
        mean_performance_under_corruption(bad)


def test_clean_row_without_accuracy_is_an_error(tmp_path: Path) -> None:
    # regression: an empty clean accuracy in a CSV made rPC return nan silently
    path = RobustnessResult(rows(GRID)).to_csv(tmp_path / "t.csv")  # type: ignore[arg-type]
    text = path.read_text().replace("m,clean,0,10,0.9,", "m,clean,0,10,,")
    path.write_text(text)
    table = RobustnessResult.from_csv(path)
    with pytest.raises(ValueError, match=r"no accuracy for the clean row \('clean', 0\)"):
        relative_performance_under_corruption(table)
    with pytest.raises(ValueError, match=r"no accuracy for the clean row"):
        mean_corruption_error(table, rows(REF), relative=True)
    with pytest.raises(ValueError, match=r"no accuracy for the clean row"):
        mean_corruption_error(rows(GRID), table, relative=True)


def test_summaries_restricted_to_requested_corruptions() -> None:
    # regression: summaries averaged over whatever the table held (19 corruptions for CIFAR10C's default)
    acc = {(c, s): (0.6 if c in BENCHMARK_CORRUPTIONS else 0.1) for c in ALL_CORRUPTIONS for s in (1, 2)}
    full = rows({("clean", 0): 0.8, **acc}, ece=0.0)
    for r in full:
        r["ece"] = 0.1 if r["corruption"] in BENCHMARK_CORRUPTIONS else 0.5
    # the default is the literature's 15 whatever the table holds; the extra four only when asked
    assert mean_performance_under_corruption(full) == pytest.approx(0.6)
    all19 = (15 * 0.6 + 4 * 0.1) / 19
    assert mean_performance_under_corruption(full, corruptions="table") == pytest.approx(all19)
    assert mean_performance_under_corruption(full, corruptions="all") == pytest.approx(all19)
    assert mean_performance_under_corruption(full, corruptions="extra") == pytest.approx(0.1)
    assert mean_performance_under_corruption(full, corruptions="benchmark") == pytest.approx(0.6)
    assert mean_performance_under_corruption(full, per_severity=True, corruptions="benchmark") == (
        pytest.approx({1: 0.6, 2: 0.6})
    )
    assert relative_performance_under_corruption(full, corruptions="benchmark") == pytest.approx(0.6 / 0.8)
    assert relative_performance_under_corruption(full) == pytest.approx(0.6 / 0.8)
    assert relative_performance_under_corruption(full, corruptions="table") == pytest.approx(
        (15 * 0.6 + 4 * 0.1) / 19 / 0.8
    )
    assert mean_ece_by_severity(full)[1] == pytest.approx(0.1)
    assert mean_ece_by_severity(full, corruptions="table")[1] == pytest.approx((15 * 0.1 + 4 * 0.5) / 19)
    assert mean_ece_by_severity(full, corruptions="benchmark") == pytest.approx({1: 0.1, 2: 0.1})
    ref = rows({("clean", 0): 0.9, **{k: 0.8 for k in acc}})
    assert mean_corruption_error(full, ref, corruptions="benchmark") == pytest.approx(0.4 / 0.2)
    assert mean_corruption_error(full, ref) == pytest.approx(0.4 / 0.2)
    ce19 = (15 * 2.0 + 4 * 0.9 / 0.2) / 19
    assert mean_corruption_error(full, ref, corruptions="table") == pytest.approx(ce19)
    # names, groups and custom (non CIFAR-C) names present in the table
    extra = {("speckle_noise", 1): 0.1, ("speckle_noise", 2): 0.0, ("my_blur", 1): 0.0, ("my_blur", 2): 0.0}
    table = rows({**GRID, **extra})
    for sel in (["fog", "snow"], ("fog", "snow", "fog")):
        assert mean_performance_under_corruption(table, corruptions=sel) == pytest.approx(0.65)
        assert mean_corruption_error(table, rows({**REF, **extra}), corruptions=sel) == pytest.approx(
            mean_corruption_error(rows(GRID), rows(REF))
        )
    assert mean_performance_under_corruption(table, corruptions="fog") == pytest.approx(0.7)
    assert mean_performance_under_corruption(table, corruptions=["my_blur"]) == 0.0
    with pytest.raises(ValueError, match=r"table lacks corruption\(s\) \['frost'\] requested"):
        mean_performance_under_corruption(table, corruptions=["fog", "frost"])
    with pytest.raises(ValueError, match=r"lacks corruption\(s\) \['gaussian_noise'"):
        mean_corruption_error(table, rows({**REF, **extra}), corruptions="benchmark")
    with pytest.raises(ValueError, match="unknown corruption 'fgo'"):
        mean_ece_by_severity(table, corruptions="fgo")
    with pytest.raises(TypeError, match="corruptions must be"):
        relative_performance_under_corruption(table, corruptions=3)  # type: ignore[arg-type]


def test_pooled_ece_corruptions_and_model() -> None:
    g = torch.Generator().manual_seed(1)
    keys = [("fog", 1), ("snow", 1), ("speckle_noise", 1)]
    logits = {k: torch.randn(30, 10, generator=g) * (1 + i) for i, k in enumerate(keys)}
    labels = {k: torch.randint(0, 10, (30,), generator=g) for k in logits}
    res = RobustnessResult(rows(dict.fromkeys(logits, 0.5), model="dense"), logits, labels, n_bins=10)  # type: ignore[arg-type]
    both = torch.cat([logits[("fog", 1)], logits[("snow", 1)]])
    both_y = torch.cat([labels[("fog", 1)], labels[("snow", 1)]])
    expected = expected_calibration_error(both, both_y, n_bins=10)
    assert pooled_ece_by_severity(res, corruptions=["fog", "snow"]) == {1: expected}
    assert pooled_ece_by_severity(res, corruptions=["snow", "fog"], model="dense") == {1: expected}
    every = torch.cat(list(logits.values()))
    every_y = torch.cat(list(labels.values()))
    pooled_all = expected_calibration_error(every, every_y, n_bins=10)
    assert pooled_ece_by_severity(res, corruptions="table")[1] == pytest.approx(pooled_all)
    assert pooled_ece_by_severity(res)[1] == expected  # default leaves the extra corruption out
    with pytest.raises(ValueError, match=r"model\(s\) \['dense'\], not only 'pruned'"):
        pooled_ece_by_severity(res, model="pruned")
    with pytest.raises(ValueError, match=r"result lacks corruption\(s\) \['frost'\]"):
        pooled_ece_by_severity(res, corruptions="frost")
    with pytest.raises(ValueError, match=r"lacks corruption\(s\) \['gaussian_noise'"):
        pooled_ece_by_severity(res, corruptions="benchmark")


def test_pooled_vs_mean_ece() -> None:
    g = torch.Generator().manual_seed(0)
    logits = {
        ("fog", 1): torch.randn(50, 10, generator=g) * 3,
        ("snow", 1): torch.randn(70, 10, generator=g) * 0.3,
        ("fog", 2): torch.randn(40, 10, generator=g),
        ("snow", 2): torch.randn(40, 10, generator=g),
    }
    labels = {k: torch.randint(0, 10, (v.shape[0],), generator=g) for k, v in logits.items()}
    records = [
        {
            "model": "m",
            "corruption": c,
            "severity": s,
            "n": v.shape[0],
            "accuracy": float((v.argmax(1) == labels[(c, s)]).double().mean()),
            "ece": expected_calibration_error(v, labels[(c, s)], n_bins=10),
            "nll": 0.0,
        }
        for (c, s), v in logits.items()
    ]
    res = RobustnessResult(records, logits, labels, n_bins=10)  # type: ignore[arg-type]
    pooled = pooled_ece_by_severity(res)
    for s in (1, 2):
        cat = torch.cat([logits[("fog", s)], logits[("snow", s)]])
        lab = torch.cat([labels[("fog", s)], labels[("snow", s)]])
        assert pooled[s] == pytest.approx(expected_calibration_error(cat, lab, n_bins=10))
    mean = mean_ece_by_severity(res)
    for s in (1, 2):
        assert mean[s] == pytest.approx(
            (
                expected_calibration_error(logits[("fog", s)], labels[("fog", s)], n_bins=10)
                + expected_calibration_error(logits[("snow", s)], labels[("snow", s)], n_bins=10)
            )
            / 2
        )
    assert not math.isclose(pooled[1], mean[1], rel_tol=1e-3)  # the two definitions differ
    # pooled MCE against an independent float64 oracle of the concatenated severity-1 cells
    cat1 = torch.cat([logits[("fog", 1)], logits[("snow", 1)]]).double().numpy()
    lab1 = torch.cat([labels[("fog", 1)], labels[("snow", 1)]]).numpy()
    mce_oracle = top_label_ece(softmax64(cat1), lab1, 10, "max")
    assert pooled_ece_by_severity(res, norm="max")[1] == pytest.approx(mce_oracle, abs=1e-6)
    assert pooled[1] == pytest.approx(top_label_ece(softmax64(cat1), lab1, 10, "l1"), abs=1e-6)
    del res.logits[("snow", 2)]
    with pytest.raises(ValueError, match="complete grid"):
        pooled_ece_by_severity(res)


def test_accumulator_matches_evaluate_corruptions(tmp_path: Path) -> None:
    d = make_cifar_c(tmp_path / "c")
    model = tiny_model()
    ds = CIFAR10C(d, ["fog", "snow"], [1, 3])
    res = evaluate_corruptions(model, ds, progress=False, model_name="t", n_bins=7)
    acc = RobustnessAccumulator(model_name="t", n_bins=7)
    for cell in ds.cells:
        logits = bare_logits(model, cell.images)
        acc.update(logits[:4], cell.labels[:4], cell.corruption, cell.severity)  # two batches
        acc.update(logits[4:].numpy(), torch.from_numpy(cell.labels[4:]), cell.corruption, cell.severity)
    out = acc.compute()
    assert [(r["corruption"], r["severity"], r["n"]) for r in out.records] == [
        (r["corruption"], r["severity"], r["n"]) for r in res.records
    ]
    for a, b in zip(out.records, res.records, strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-12)
        assert a["ece"] == pytest.approx(b["ece"], abs=1e-5)
        assert a["nll"] == pytest.approx(b["nll"], abs=1e-5)
    assert pooled_ece_by_severity(out) == pytest.approx(pooled_ece_by_severity(res), abs=1e-5)
    assert acc.compute(keep_logits=False).logits == {}
    acc.reset()
    with pytest.raises(ValueError, match="nothing accumulated"):
        acc.compute()


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((torch.zeros(2, 3), [0, 1], "clean", 1), ValueError, r"\('clean', 0\)"),
        ((torch.zeros(2, 3), [0, 1], "fog", 0), ValueError, "severities >= 1"),
        ((torch.zeros(2, 3), [0, 1], "", 1), TypeError, "non-empty str"),
        ((torch.zeros(2, 3), [0, 1], "fog", 1.0), TypeError, "severity must be an int"),
        ((torch.zeros(2), [0, 1], "fog", 1), ValueError, r"\(batch, classes\)"),
        ((torch.zeros(2, 3, dtype=torch.long), [0, 1], "fog", 1), ValueError, "float"),
        ((torch.zeros(2, 3), [0], "fog", 1), ValueError, "must match"),
        ((torch.zeros(2, 3), [0, 3], "fog", 1), ValueError, "labels go up to 3"),
    ],
)
def test_accumulator_bad_updates(args, exc, match) -> None:
    acc = RobustnessAccumulator()
    with pytest.raises(exc, match=match):
        acc.update(*args)


def test_accumulator_class_count_must_not_change() -> None:
    acc = RobustnessAccumulator()
    acc.update(torch.zeros(2, 3), [0, 1], "fog", 1)
    with pytest.raises(ValueError, match="earlier batches had 3"):
        acc.update(torch.zeros(2, 4), [0, 1], "fog", 1)
    with pytest.raises(ValueError, match="n_bins"):
        RobustnessAccumulator(n_bins=0)


def test_numpy_integer_n_bins_accepted_everywhere(tmp_path: Path) -> None:
    # regression: evaluate_corruptions / RobustnessAccumulator rejected np.int64 that check_n_bins accepts
    ds = CIFAR10C(make_cifar_c(tmp_path / "c", ("fog",)), ["fog"], [1])
    res = evaluate_corruptions(tiny_model(), ds, progress=False, n_bins=np.int64(7))
    assert res.n_bins == 7
    assert type(res.n_bins) is int
    acc = RobustnessAccumulator(n_bins=np.int32(5))
    assert acc.n_bins == 5
    assert type(acc.n_bins) is int
    with pytest.raises(TypeError, match="n_bins"):
        RobustnessAccumulator(n_bins=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="n_bins"):
        evaluate_corruptions(tiny_model(), ds, n_bins=True)
