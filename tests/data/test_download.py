"""download_cifar_c against a local threaded HTTP server (no network)."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import HTTPServerState as Server

from prunesafe.data import (
    BASE_URL_ENV,
    CIFAR10C,
    CIFAR100C,
    ChecksumError,
    DownloadError,
    archive_url,
    download_cifar_c,
    read_md5sums,
)

CORRUPTIONS = ("fog", "snow", "contrast")
N = 4


def build_tar(top: str = "CIFAR-10-C", extra: list[tuple[str, bytes]] | None = None) -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        d = tarfile.TarInfo(top)
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        arrays = {f"{c}.npy": rng.integers(0, 256, (5 * N, 32, 32, 3), dtype=np.uint8) for c in CORRUPTIONS}
        arrays["labels.npy"] = np.tile(np.arange(N, dtype=np.int64), 5)
        for name, arr in arrays.items():
            payload = io.BytesIO()
            np.save(payload, arr)
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(payload.getvalue())
            tar.addfile(info, io.BytesIO(payload.getvalue()))
        for name, data in extra or []:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def server(http_server: Server) -> Server:
    return http_server


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_download_extract_and_load(server: Server, tmp_path: Path) -> None:
    tar = build_tar()
    server.files["CIFAR-10-C.tar"] = tar
    folder = download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False)
    assert folder == tmp_path / "CIFAR-10-C"
    assert leftovers(tmp_path) == ["CIFAR-10-C"]  # archive removed, no temp dirs
    sums = read_md5sums(folder)
    assert set(sums) == {"fog.npy", "snow.npy", "contrast.npy", "labels.npy"}
    assert sums["fog.npy"] == md5((folder / "fog.npy").read_bytes())
    ds = CIFAR10C(tmp_path, "fog", [1, 5], verify=True)
    assert len(ds) == 2 * N
    # second call: already there, nothing requested
    n_requests = len(server.ranges)
    assert download_cifar_c(tmp_path, base_url=server.base_url, progress=False) == folder
    assert len(server.ranges) == n_requests


def test_dataset_download_flag_and_env_var(server: Server, tmp_path: Path, monkeypatch) -> None:
    tar = build_tar("CIFAR-100-C")
    server.files["CIFAR-100-C.tar"] = tar
    monkeypatch.setenv(BASE_URL_ENV, server.base_url)
    assert archive_url("CIFAR-100-C") == f"{server.base_url}/CIFAR-100-C.tar"
    with pytest.raises(ChecksumError):  # the published md5 is checked by default
        CIFAR100C(tmp_path, "snow", 2, download=True)
    assert leftovers(tmp_path) == ["CIFAR-100-C.tar.bad"]  # the bad download is kept, not deleted
    import prunesafe.data.download as dl

    spec = dl.ArchiveSpec("CIFAR-100-C", "3555552", "CIFAR-100-C.tar", md5(tar), "CIFAR-100-C")
    monkeypatch.setitem(dl.ARCHIVES, "CIFAR-100-C", spec)
    ds = CIFAR100C(tmp_path, "snow", 2, download=True)
    assert ds.root == tmp_path / "CIFAR-100-C"
    assert ds.labels.tolist() == list(range(N))


def test_checksum_mismatch_keeps_download_as_bad(server: Server, tmp_path: Path) -> None:
    # a mismatching multi-GB download is renamed to <name>.bad (and the error says so), not deleted
    tar = build_tar()
    server.files["CIFAR-10-C.tar"] = tar
    bad = tmp_path / "CIFAR-10-C.tar.bad"
    kept = rf"expected 0{{32}}; the download was kept as {re.escape(str(bad))}"
    with pytest.raises(ChecksumError, match=kept):
        download_cifar_c(tmp_path, base_url=server.base_url, md5="0" * 32, progress=False)
    assert leftovers(tmp_path) == ["CIFAR-10-C.tar.bad"]
    assert bad.read_bytes() == tar
    # a retry downloads afresh (the .bad file is not resumed from) and succeeds
    n = len(server.ranges)
    download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False)
    assert server.ranges[n:] == [None]
    assert leftovers(tmp_path) == ["CIFAR-10-C", "CIFAR-10-C.tar.bad"]


def test_user_placed_archive_is_never_deleted(server: Server, tmp_path: Path) -> None:
    # regression: with keep_archive=False an archive the user put in root was deleted after extraction
    tar = build_tar()
    (tmp_path / "CIFAR-10-C.tar").write_bytes(tar)
    n = len(server.ranges)
    folder = download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False)
    assert len(server.ranges) == n  # nothing downloaded
    assert (folder / "labels.npy").is_file()
    assert leftovers(tmp_path) == ["CIFAR-10-C", "CIFAR-10-C.tar"]
    assert (tmp_path / "CIFAR-10-C.tar").read_bytes() == tar


def test_resume_truncated_part(server: Server, tmp_path: Path) -> None:
    tar = build_tar()
    server.files["CIFAR-10-C.tar"] = tar
    (tmp_path / "CIFAR-10-C.tar.part").write_bytes(tar[:12345])
    download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False)
    assert server.ranges == ["bytes=12345-"]
    assert (tmp_path / "CIFAR-10-C" / "labels.npy").is_file()


def test_interrupted_transfer_keeps_part_then_resumes(server: Server, tmp_path: Path) -> None:
    tar = build_tar()
    server.files["CIFAR-10-C.tar"] = tar
    server.cut_after = 50_000
    with pytest.raises(DownloadError, match="call again to resume"):
        download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False)
    part = tmp_path / "CIFAR-10-C.tar.part"
    assert part.stat().st_size == 50_000
    assert not (tmp_path / "CIFAR-10-C").exists()
    server.cut_after = None
    download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False)
    assert server.ranges[-1] == "bytes=50000-"
    assert leftovers(tmp_path) == ["CIFAR-10-C"]


def test_server_ignoring_range_restarts(server: Server, tmp_path: Path) -> None:
    tar = build_tar()
    server.files["CIFAR-10-C.tar"] = tar
    server.honour_range = False
    (tmp_path / "CIFAR-10-C.tar.part").write_bytes(b"garbage that must be discarded")
    download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False, keep_archive=True)
    assert (tmp_path / "CIFAR-10-C.tar").read_bytes() == tar


def test_complete_part_gets_416_and_is_used(server: Server, tmp_path: Path) -> None:
    tar = build_tar()
    server.files["CIFAR-10-C.tar"] = tar
    (tmp_path / "CIFAR-10-C.tar.part").write_bytes(tar)
    download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False)
    assert (tmp_path / "CIFAR-10-C" / "fog.npy").is_file()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ([("../evil.npy", b"x")], "absolute path or '..'"),
        ([("/abs.npy", b"x")], "absolute path or '..'"),
        ([("CIFAR-10-C/../../evil", b"x")], "absolute path or '..'"),
        ([("other/file.npy", b"x")], "outside the expected top folder"),
    ],
)
def test_unsafe_members_rejected_without_leftovers(server: Server, tmp_path: Path, extra, match) -> None:
    tar = build_tar(extra=extra)
    server.files["CIFAR-10-C.tar"] = tar
    with pytest.raises(ValueError, match=match):
        download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False)
    assert leftovers(tmp_path) == ["CIFAR-10-C.tar"]  # verified archive kept, no half-written folder
    assert not (tmp_path.parent / "evil.npy").exists()


def test_symlink_member_rejected(server: Server, tmp_path: Path) -> None:
    buf = io.BytesIO(build_tar())
    with tarfile.open(fileobj=buf, mode="a") as tar:
        link = tarfile.TarInfo("CIFAR-10-C/link.npy")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    server.files["CIFAR-10-C.tar"] = buf.getvalue()
    with pytest.raises(ValueError, match="not a regular file"):
        download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(buf.getvalue()), progress=False)
    assert not (tmp_path / "CIFAR-10-C").exists()


def test_failed_extraction_midway_leaves_nothing(server: Server, tmp_path: Path, monkeypatch) -> None:
    tar = build_tar()
    server.files["CIFAR-10-C.tar"] = tar
    import prunesafe.data.download as dl

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(dl, "write_md5sums", broken)  # fails after every member was written
    with pytest.raises(OSError, match="disk full"):
        download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False)
    assert leftovers(tmp_path) == ["CIFAR-10-C.tar"]
    monkeypatch.undo()
    # the kept archive is re-verified and extracted without a new download
    n = len(server.ranges)
    download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(tar), progress=False)
    assert len(server.ranges) == n
    assert leftovers(tmp_path) == ["CIFAR-10-C"]


def test_corrupt_archive(server: Server, tmp_path: Path) -> None:
    data = b"this is not a tar file" * 100
    server.files["CIFAR-10-C.tar"] = data
    with pytest.raises(tarfile.TarError):
        download_cifar_c(tmp_path, base_url=server.base_url, md5=md5(data), progress=False)
    assert leftovers(tmp_path) == ["CIFAR-10-C.tar"]


def test_http_404(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"(?s)HTTP 404.*tar -xf CIFAR-10-C\.tar"):
        download_cifar_c(tmp_path, base_url=server.base_url, progress=False)


def test_no_network_message(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at exit: nothing listens there
    with pytest.raises(DownloadError) as info:
        download_cifar_c(tmp_path, base_url=f"http://127.0.0.1:{port}", progress=False, timeout=5)
    message = str(info.value)
    assert f"http://127.0.0.1:{port}/CIFAR-10-C.tar" in message
    assert "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar" in message
    assert "56bf5dcef84df0e2308c6dcbcbbd8499" in message
    assert str(tmp_path / "CIFAR-10-C") in message
    assert "labels.npy" in message


def test_bad_dataset_name_and_incomplete_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CIFAR-10-C"):
        download_cifar_c(tmp_path, "CIFAR-10", progress=False)  # type: ignore[arg-type]
    (tmp_path / "CIFAR-10-C").mkdir()
    with pytest.raises(FileExistsError, match=r"no labels\.npy"):
        download_cifar_c(tmp_path, progress=False)


def test_default_urls(monkeypatch) -> None:
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    assert archive_url("CIFAR-10-C") == "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar"
    assert archive_url("CIFAR-100-C") == "https://zenodo.org/records/3555552/files/CIFAR-100-C.tar"
    assert archive_url("CIFAR-100-C", base_url="https://m/{record}") == "https://m/3555552/CIFAR-100-C.tar"
