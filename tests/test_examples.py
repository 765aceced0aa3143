"""The scripts in examples/ run end to end (small sizes; each in a subprocess with one thread).

``examples/quickstart.py`` on the shared data evaluates 4 models on all 19 x 5 sample cells (minutes), so
here it runs on its synthetic fallback (no ``--shared`` data); ``examples/study_example.py`` is the quick
study, which ``tests/study`` covers piece by piece.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SHARED_DIR, require_shared, run_cli

EXAMPLES = REPO_ROOT / "examples"


def _run(args: list[str], cwd: Path) -> str:
    proc = run_cli(
        [sys.executable, *args], cwd=cwd, env_extra={"MPLBACKEND": "Agg", "PRUNESAFE_SHARED": str(SHARED_DIR)}
    )
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("calibration_example.py", ["--shared", str(SHARED_DIR), "--n", "500", "--out", "r.png"], "r.png"),
        ("corruptions_example.py", ["--n", "40", "--out", "c10c"], "c10c/labels.npy"),
        (
            "finetune_example.py",
            ["--shared", str(SHARED_DIR), "--train-images", "128", "--test-images", "128", "--out", "h.csv"],
            "h.csv",
        ),
    ],
)
def test_example_runs_on_the_shared_data(tmp_path: Path, script: str, args: list[str], expect: str) -> None:
    require_shared("models")
    require_shared("data", "cifar10")
    _run([str(EXAMPLES / script), *args], tmp_path)
    assert (tmp_path / expect).exists()


@pytest.mark.slow
@pytest.mark.shared
def test_prune_example_on_the_shared_checkpoint(tmp_path: Path) -> None:
    ckpt = require_shared("models", "resnet20-jpeg.th")
    cifar = require_shared("data", "cifar10")
    out = _run(
        [str(EXAMPLES / "prune_example.py"), str(ckpt), "--cifar10", str(cifar), "--out", "pruned"], tmp_path
    )
    assert out.strip()
    assert any((tmp_path / "pruned").iterdir())


@pytest.mark.slow
def test_quickstart_example_on_its_synthetic_fallback(tmp_path: Path) -> None:
    _run(
        [str(EXAMPLES / "quickstart.py"), "--shared", str(tmp_path / "absent"), "--n-clean", "100",
         "--no-progress", "--out", "res"],
        tmp_path,
    )  # fmt: skip
    assert (tmp_path / "res" / "quickstart.csv").exists()
