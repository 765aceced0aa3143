"""Shared fixtures for the prunesafe test-suite.

Tests that need the read-only data and checkpoints in ``../shared`` use the
``shared_dir`` fixture (or one of the narrower fixtures built on it).  When the
environment variable ``CI`` is ``"true"`` a missing file is a *failure*, never a
skip, so a CI run cannot go green without having exercised them.  Elsewhere such
tests skip with a reason that says what is missing.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("PRUNESAFE_SHARED", REPO_ROOT.parent / "shared"))


def pytest_configure(config: pytest.Config) -> None:
    """Give each xdist worker its share of the cores (``-n 2`` on 2 cores: one torch thread each).

    Without this every worker starts as many intra-op threads as the machine has cores, so two workers
    run four busy threads on two cores and the heavy model tests slow each other down.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and workers.isdigit() and int(workers) > 0:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def run_cli(
    args: list[str],
    *,
    env_extra: dict[str, str] | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in a subprocess with one torch thread and this checkout on ``PYTHONPATH``.

    The working directory is the repository root unless ``cwd`` is given; stdout/stderr are captured.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **(env_extra or {})}
    return subprocess.run(
        args, cwd=cwd or REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


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


@dataclass
class HTTPServerState:
    """Files served by the ``http_server`` fixture (name -> bytes) and what the server saw."""

    base_url: str
    files: dict[str, bytes]
    ranges: list[str | None] = field(default_factory=list)
    honour_range: bool = True
    cut_after: int | None = None  # send only this many body bytes, then close


@pytest.fixture
def http_server() -> Iterator[HTTPServerState]:
    """A threaded HTTP server on 127.0.0.1 serving ``state.files`` under ``state.base_url`` (Range-aware)."""
    state = HTTPServerState("", {})

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            data = state.files.get(name)
            rng = self.headers.get("Range")
            state.ranges.append(rng)
            if data is None:
                self.send_error(404)
                return
            start = 0
            if rng and state.honour_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after is not None:
                self.wfile.write(body[: state.cut_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/files"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _autograd_left_enabled() -> Iterator[None]:
    """A test that switches autograd off globally (``torch.set_grad_enabled(False)``) fails here, not in the
    unrelated tests that the same xdist worker runs after it."""
    import torch

    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("the test left autograd disabled; use `with torch.no_grad():` instead")


def checkpoint_bytes(depth: int, seed: int = 0) -> bytes:
    """A random ``cifar_resnet(depth)`` checkpoint in the published-repo format (``module.`` keys)."""
    import io

    import torch

    from prunesafe.models import cifar_resnet

    torch.manual_seed(seed)
    buf = io.BytesIO()
    torch.save({"state_dict": {f"module.{k}": v for k, v in cifar_resnet(depth).state_dict().items()}}, buf)
    return buf.getvalue()


@contextlib.contextmanager
def served_checkpoint(server: HTTPServerState, name: str, depth: int) -> Iterator[tuple[Any, bytes]]:
    """Register a test checkpoint (with its SHA-256) in the registry and serve it from ``server``."""
    import hashlib

    from prunesafe.models.pretrained import PretrainedCheckpoint, register_checkpoint, unregister_checkpoint

    data = checkpoint_bytes(depth)
    entry = PretrainedCheckpoint(
        name=name,
        filename=f"{name}.th",
        depth=depth,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        sha256=hashlib.sha256(data).hexdigest(),
        top1=None,
        url=f"{server.base_url}/{name}.th",
        note="built by the test",
    )
    register_checkpoint(entry)
    server.files[entry.filename] = data
    try:
        yield entry, data
    finally:
        unregister_checkpoint(name)
