# ruff: noqa: F811  (pytest fixtures imported from _study_fixtures are redefined as arguments)
"""Resume after SIGKILL and the 2-process torchrun split give exactly the rows of one uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _study_fixtures import PY, REPO_ROOT, base_config, checkpoint, run_cli, tiny_data, write_config  # noqa: F401

from prunesafe.study import run_study

ROWS_PER_JOB = 1 + 2 * 2  # clean + 2 corruptions x severities [1, 2]


def _grid(base: dict[str, Any]) -> dict[str, Any]:
    # 6 jobs (none, control, unstructured/filter x 0.3/0.6) with a 1-epoch fine-tune each
    return {**base, "methods": ["unstructured", "filter"], "ratios": [0.3, 0.6], "finetune_epochs": 1,
            "figures": False}  # fmt: skip


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["job"], r["corruption"], r["severity"])


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, tiny_data: Path, checkpoint: Path
) -> tuple[dict[str, Any], Path]:
    """One uninterrupted 1-process run (a subprocess, OMP_NUM_THREADS=1 like the others)."""
    folder = tmp_path_factory.mktemp("reference")
    cfg = _grid({
        "models": [{"name": "resnet20", "checkpoint": str(checkpoint)}], "seeds": [0], "n_holdout": 32,
        "corruptions": ["fog", "contrast"], "severities": [1, 2], "data_dir": str(tiny_data),
        "progress": False, "bootstrap_resamples": 100, "batch_size": 64, "out": str(folder / "run"),
    })  # fmt: skip
    proc = run_cli([PY, "-m", "prunesafe", "study", "--config", str(write_config(folder / "c.json", cfg))])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cfg, folder / "run"


@pytest.mark.slow
def test_resume_after_sigkill_loses_and_duplicates_nothing(
    reference: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    cfg, ref_out = reference
    out = tmp_path / "killed"
    config = write_config(tmp_path / "c.json", {**cfg, "out": str(out)})
    cmd = [PY, "-m", "prunesafe", "study", "--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # kill it once two jobs are written, mid-run
            f = out / "results.jsonl"
            if f.is_file() and len(f.read_text().splitlines()) >= 2 * ROWS_PER_JOB:
                break
            if proc.poll() is not None:
                pytest.fail("the run finished before it could be killed; make the grid larger")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = _rows(out)
    assert 2 * ROWS_PER_JOB <= len(partial) < 6 * ROWS_PER_JOB
    assert not (out / "report.md").exists()
    again = run_cli(cmd)
    assert again.returncode == 0, again.stderr[-3000:]
    rows, expected = _rows(out), _rows(ref_out)
    assert len({_key(r) for r in rows}) == len(rows) == 6 * ROWS_PER_JOB  # no duplicate, none lost
    assert sorted(rows, key=_key) == sorted(expected, key=_key)  # identical numbers
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(
        p.name for p in (ref_out / "checkpoints").iterdir()
    )
    assert (out / "report.md").is_file()


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one_process(
    reference: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    cfg, ref_out = reference
    out = tmp_path / "torchrun"
    config = write_config(tmp_path / "c.json", {**cfg, "out": str(out)})
    proc = run_cli([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "prunesafe", "study", "--config", str(config)])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on rank 1)" in proc.stderr  # the second process did run jobs
    rows, expected = _rows(out), _rows(ref_out)
    assert rows == expected  # same rows, same order (rank 0 writes in job order), same numbers
    ref_summary = (ref_out / "summary.csv").read_text()
    assert (out / "summary.csv").read_text() == ref_summary


@pytest.mark.slow
def test_half_written_line_is_cut_and_rewritten(base_config: dict[str, Any]) -> None:
    cfg = {
        **base_config,
        "control": False,
        "figures": False,
        "temperature_scaling": False,
        "ratios": [0.3, 0.6],
    }
    out = Path(cfg["out"])
    run_study(cfg, stop_after=1)
    first = (out / "results.jsonl").read_bytes()
    with open(out / "results.jsonl", "ab") as fh:  # a job killed in the middle of its write
        fh.write(
            first.splitlines(keepends=True)[0][:-1].replace(b'"job": 0', b'"job": 1')
            + b"\n"
            + b'{"model": "res'
        )
    result = run_study(cfg)
    keys = [_key(r) for r in result.records]
    assert len(keys) == len(set(keys)) == 3 * ROWS_PER_JOB
    assert (out / "results.jsonl").read_bytes().startswith(first)
