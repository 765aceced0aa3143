"""Shared fixtures for the prunesafe test-suite.

Tests that need the read-only data and checkpoints in ``../shared`` use the
``shared_dir`` fixture (or one of the narrower fixtures built on it).  When the
environment variable ``CI`` is ``"true"`` a missing file is a *failure*, never a
skip, so a CI run cannot go green without having exercised them.  Elsewhere such
tests skip with a reason that says what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("PRUNESAFE_SHARED", REPO_ROOT.parent / "shared"))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_shared(*relative: str) -> Path:
    """Return ``SHARED_DIR / relative`` or fail (in CI) / skip (elsewhere) when it is missing."""
    path = SHARED_DIR.joinpath(*relative)
    if not path.exists():
        message = f"shared test data missing: {path} (set PRUNESAFE_SHARED to the shared/ folder)"
        if _in_ci():
            pytest.fail(message + " -- CI=true, so this is an error, not a skip")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    return require_shared("data", "cifar10")


@pytest.fixture(scope="session")
def cifar10c_sample_dir() -> Path:
    return require_shared("data", "CIFAR-10-C-sample")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return require_shared("models")
