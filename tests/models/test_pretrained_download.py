"""The checkpoint registry downloads through the shared verified fetcher (local http.server, no network)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import HTTPServerState, checkpoint_bytes, served_checkpoint

from prunesafe._download import download_file
from prunesafe.data import ChecksumError, DownloadError
from prunesafe.models import cifar_resnet
from prunesafe.models.pretrained import (
    CHECKPOINT_URL_ENV,
    PRETRAINED_CHECKPOINTS,
    PretrainedCheckpoint,
    checkpoint_url,
    download_checkpoint,
    pretrained_cifar_resnet,
    register_checkpoint,
    unregister_checkpoint,
)


@pytest.fixture
def tiny_entry(http_server: HTTPServerState) -> Iterator[tuple[PretrainedCheckpoint, bytes]]:
    with served_checkpoint(http_server, "tiny-r8", depth=8) as served:
        yield served


def test_download_verifies_and_loads(tiny_entry: tuple[PretrainedCheckpoint, bytes], tmp_path: Path) -> None:
    _, data = tiny_entry
    model = pretrained_cifar_resnet("tiny-r8", tmp_path, download=True, progress=False)
    path = tmp_path / "tiny-r8.th"
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-r8.th"]  # no .part left
    reference = cifar_resnet(8)
    saved = torch.load(io.BytesIO(data), weights_only=True)["state_dict"]
    reference.load_state_dict({k.removeprefix("module."): v for k, v in saved.items()})
    for (k, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_second_call_downloads_nothing(
    tiny_entry: tuple[PretrainedCheckpoint, bytes], http_server: HTTPServerState, tmp_path: Path
) -> None:
    download_checkpoint("tiny-r8", tmp_path, progress=False)
    n = len(http_server.ranges)
    download_checkpoint("tiny-r8", tmp_path, progress=False)
    assert len(http_server.ranges) == n


def test_corrupted_download_refused_and_not_left_in_place(
    tiny_entry: tuple[PretrainedCheckpoint, bytes], http_server: HTTPServerState, tmp_path: Path
) -> None:
    http_server.files["tiny-r8.th"] = checkpoint_bytes(8, seed=1)  # another file under the same name
    with pytest.raises(ChecksumError, match=r"SHA256 .* expected .*the download was deleted"):
        download_checkpoint("tiny-r8", tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_with_other_digest_is_not_overwritten(
    tiny_entry: tuple[PretrainedCheckpoint, bytes], tmp_path: Path
) -> None:
    (tmp_path / "tiny-r8.th").write_bytes(b"my own weights")
    with pytest.raises(ChecksumError, match="delete it"):
        download_checkpoint("tiny-r8", tmp_path, progress=False)
    assert (tmp_path / "tiny-r8.th").read_bytes() == b"my own weights"


def test_mirror_by_argument_and_environment(
    tiny_entry: tuple[PretrainedCheckpoint, bytes],
    http_server: HTTPServerState,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, data = tiny_entry
    mirror = http_server.base_url.replace("/files", "/mirror")
    assert checkpoint_url("tiny-r8", base_url=mirror) == f"{mirror}/tiny-r8.th"
    monkeypatch.setenv(CHECKPOINT_URL_ENV, mirror + "/")
    assert checkpoint_url("tiny-r8") == f"{mirror}/tiny-r8.th"
    assert download_checkpoint("tiny-r8", tmp_path, progress=False).read_bytes() == data


def test_offline_error_names_url_and_override(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=rf"127\.0\.0\.1:9/resnet20-12fca82f\.th.*{CHECKPOINT_URL_ENV}"):
        download_checkpoint("resnet20", tmp_path, base_url="http://127.0.0.1:9", timeout=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unpublished_checkpoint_needs_a_mirror() -> None:
    with pytest.raises(ValueError, match="not published at a URL"):
        checkpoint_url("resnet20-jpeg")


def test_missing_file_without_download_says_how() -> None:
    with pytest.raises(FileNotFoundError, match="download=True fetches"):
        pretrained_cifar_resnet("resnet20", "/nonexistent-folder/resnet20-12fca82f.th")


def test_registry_validation() -> None:
    good = PRETRAINED_CHECKPOINTS["resnet20"]
    with pytest.raises(ValueError, match="already registered"):
        register_checkpoint(good)
    with pytest.raises(ValueError, match="full 64-hex-digit"):
        register_checkpoint(
            PretrainedCheckpoint("x", "x.th", 20, good.mean, good.std, "014dd654", None, "", "short digest")
        )
    with pytest.raises(TypeError, match="PretrainedCheckpoint"):
        register_checkpoint({"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="unknown checkpoint"):
        unregister_checkpoint("never-registered")


def test_replaced_builtin_comes_back() -> None:
    original = PRETRAINED_CHECKPOINTS["resnet20"]
    register_checkpoint(
        PretrainedCheckpoint("resnet20", "r.th", 20, original.mean, original.std, "0" * 64, None, "", "mine"),
        overwrite=True,
    )
    assert PRETRAINED_CHECKPOINTS["resnet20"].note == "mine"
    unregister_checkpoint("resnet20")
    assert PRETRAINED_CHECKPOINTS["resnet20"] is original


def test_download_file_resumes_a_partial_transfer(http_server: HTTPServerState, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    http_server.files["blob.bin"] = data
    (tmp_path / "blob.bin.part").write_bytes(data[:1000])
    url = f"{http_server.base_url}/blob.bin"
    out = download_file(url, tmp_path / "blob.bin", md5=hashlib.md5(data).hexdigest(), progress=False)
    assert out.read_bytes() == data
    assert http_server.ranges[-1] == "bytes=1000-"


def test_download_file_rejects_malformed_digest(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256 must be 8 to 64 hex digits"):
        download_file("http://127.0.0.1:9/x", tmp_path / "x", sha256="xyz")
