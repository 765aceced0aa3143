"""CalibrationAccumulator / RobustnessAccumulator sync over torch.distributed: 2 CPU processes, gloo."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from prunesafe.metrics import CalibrationAccumulator, RobustnessAccumulator, expected_calibration_error

WORLD = 2


def _shared_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return torch.randn(1001, 10, generator=g) * 3, torch.randint(0, 10, (1001,), generator=g)


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        logits, labels = _shared_data()
        acc = CalibrationAccumulator(n_bins=15)
        shard = slice(0, 700) if rank == 0 else slice(700, None)  # unequal shards
        for i in range(shard.start, shard.stop or 1001, 97):
            end = min(i + 97, shard.stop or 1001)
            acc.update(logits[i:end], labels[i:end])
        acc.sync()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(acc.compute().to_dict()))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_sync_two_processes_gloo(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [json.loads(Path(tmp_path, f"rank{r}.json").read_text()) for r in range(WORLD)]
    logits, labels = _shared_data()
    local = CalibrationAccumulator(n_bins=15)
    local.update(logits, labels)
    expected = local.compute().to_dict()
    assert results[0] == results[1] == expected  # exact on every rank
    assert expected["ece"] == expected_calibration_error(logits, labels)
    assert expected["n_samples"] == 1001


def test_sync_without_process_group_is_noop() -> None:
    acc = CalibrationAccumulator()
    acc.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    before = acc.compute()
    assert acc.sync() is acc
    assert acc.compute() == before


# ------------------------------------------------------------------------------ RobustnessAccumulator.sync
def _cell_batches(rank: int | None) -> list[tuple[torch.Tensor, torch.Tensor, str, int]]:
    """Batches of four cells; rank r gets every other batch (rank None: all of them)."""
    g = torch.Generator().manual_seed(7)
    keys = [("clean", 0), ("fog", 1), ("fog", 2), ("snow", 1)] * 3
    batches = [
        (torch.randn(11, 5, generator=g) * 2, torch.randint(0, 5, (11,), generator=g), c, s) for c, s in keys
    ]
    return batches if rank is None else batches[rank::WORLD]


def _robustness_worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        acc = RobustnessAccumulator(model_name="m", n_bins=10, binning="quantile")
        cal = CalibrationAccumulator(n_bins=10)
        for batch in _cell_batches(rank):
            acc.update(*batch)
            cal.update(batch[0], batch[1])
        acc.sync()
        cal.sync()
        errors = []
        for call in (
            lambda: acc.update(*_cell_batches(rank)[0]),
            lambda: acc.merge(RobustnessAccumulator(model_name="m", n_bins=10, binning="quantile")),
            lambda: cal.update(torch.randn(2, 5), torch.tensor([0, 1])),
            lambda: cal.merge(CalibrationAccumulator(n_bins=10)),
        ):
            try:
                call()
                errors.append("accepted")
            except RuntimeError as exc:
                errors.append(str(exc))
        records = sorted(acc.compute().records, key=lambda r: (r["corruption"], r["severity"]))
        Path(out_dir, f"rob{rank}.json").write_text(json.dumps({"records": records, "errors": errors}))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_robustness_accumulator_sync_two_processes_gloo(tmp_path: Path) -> None:
    mp.spawn(_robustness_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    out = [json.loads(Path(tmp_path, f"rob{r}.json").read_text()) for r in range(WORLD)]
    single = RobustnessAccumulator(model_name="m", n_bins=10, binning="quantile")
    for batch in _cell_batches(None):
        single.update(*batch)
    expected = sorted(single.compute().records, key=lambda r: (r["corruption"], r["severity"]))
    assert out[0]["records"] == out[1]["records"] == json.loads(json.dumps(expected))  # 2 processes == 1
    assert [r["n"] for r in expected] == [33, 33, 33, 33]
    for o in out:  # update/merge after sync raise on every rank instead of letting the ranks diverge
        assert len(o["errors"]) == 4
        assert all("after sync()" in e for e in o["errors"]), o["errors"]
