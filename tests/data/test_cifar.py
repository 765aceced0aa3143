"""Clean CIFAR-10/100 through torchvision: the real download path against a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from prunesafe.data import DownloadError, cifar_arrays, load_cifar10, load_cifar100

N_PER_BATCH = 4


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cifar10_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, np.ndarray]]:
    """A tiny archive in the official ``cifar-10-python.tar.gz`` layout.

    torchvision's checksums are patched to it: the download path itself is the real one.
    """
    rng = np.random.default_rng(0)
    folder = tmp_path / "build" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    truth: dict[str, np.ndarray] = {}
    for name in names:
        data = rng.integers(0, 256, (N_PER_BATCH, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, 10, N_PER_BATCH).tolist()
        truth[name] = data
        truth[name + "_labels"] = np.asarray(labels)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels}, fh, protocol=2)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh, protocol=2)
    serve = tmp_path / "serve"
    serve.mkdir()
    archive = serve / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[n, _md5(folder / n)] for n in names[:5]])
    monkeypatch.setattr(cls, "test_list", [[names[5], _md5(folder / names[5])]])
    monkeypatch.setattr(cls, "tgz_md5", _md5(archive))
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / "batches.meta")})
    return serve, truth


@pytest.fixture
def http_root() -> Iterator[tuple[list[str], functools.partial[None]]]:
    """Start a threaded static server on 127.0.0.1 (free port) once the directory is known."""
    servers: list[http.server.ThreadingHTTPServer] = []
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            requests.append(self.path)

    def start(directory: Path) -> str:
        handler = functools.partial(Handler, directory=str(directory))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield requests, start  # type: ignore[misc]
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def test_download_from_local_server_gives_the_archive_contents(tmp_path, cifar10_archive, http_root) -> None:
    serve, truth = cifar10_archive
    requests, start = http_root
    base = start(serve)
    root = tmp_path / "data"
    test = load_cifar10(root, download=True, url=f"{base}/cifar-10-python.tar.gz")
    assert any("cifar-10-python.tar.gz" in r for r in requests), "nothing was fetched from the local server"
    images, labels = cifar_arrays(test)
    expected = truth["test_batch"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(labels, truth["test_batch_labels"])
    x, y = test[0]
    assert x.dtype == torch.float32
    assert x.shape == (3, 32, 32)
    assert torch.equal(x, torch.from_numpy(expected[0]).permute(2, 0, 1).float() / 255)
    assert y == int(truth["test_batch_labels"][0])
    train = load_cifar10(root, train=True)  # already there: no second download needed
    assert len(train) == 5 * N_PER_BATCH


def test_url_from_environment_variable(tmp_path, cifar10_archive, http_root, monkeypatch) -> None:
    serve, _ = cifar10_archive
    requests, start = http_root
    monkeypatch.setenv("PRUNESAFE_CIFAR10_URL", f"{start(serve)}/cifar-10-python.tar.gz")
    assert len(load_cifar10(tmp_path / "env", download=True)) == N_PER_BATCH
    assert requests


def test_corrupted_download_is_refused(tmp_path, cifar10_archive, http_root, monkeypatch) -> None:
    serve, _ = cifar10_archive
    _, start = http_root
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", "0" * 32)
    with pytest.raises(RuntimeError):
        load_cifar10(tmp_path / "bad", download=True, url=f"{start(serve)}/cifar-10-python.tar.gz")


def test_no_network_gives_a_clear_error(tmp_path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="cifar-10-batches-py"):
        load_cifar10(tmp_path, download=True, url=f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")


def test_missing_without_download_says_where_to_put_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_cifar100(tmp_path)


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(TypeError, match="transform"):
        load_cifar10(tmp_path, transform=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="url"):
        load_cifar10(tmp_path, url=5)  # type: ignore[arg-type]
