"""Download and extract the CIFAR-10-C / CIFAR-100-C archives from Zenodo (standard library only).

The download goes to ``<root>/<archive>.part`` and resumes with an HTTP ``Range`` request when that
file exists (a server that ignores ``Range`` makes it restart from zero).  The finished archive is
checked against its MD5, renamed to ``<root>/<archive>``, and unpacked member by member into a
temporary folder inside ``root`` (only regular files and folders under the expected top folder;
absolute paths, ``..``, links and devices are rejected) while each file is hashed.  The hashes go
into ``MD5SUMS`` (used by ``CIFAR10C(..., verify=True)``) and the folder is moved into place with one
``os.replace``: an interrupted or failed extraction never leaves a half-written dataset folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from prunesafe._download import DownloadError, digest_of
from prunesafe._download import fetch as _fetch
from prunesafe.data.integrity import ChecksumError, remember_md5, write_md5sums

__all__ = [
    "ARCHIVES",
    "BASE_URL_ENV",
    "ArchiveSpec",
    "DownloadError",
    "archive_url",
    "download_cifar_c",
]

#: Environment variable that overrides the download base URL (``<base>/<archive file name>``).
BASE_URL_ENV = "PRUNESAFE_CIFAR_C_URL"
_DEFAULT_BASE = "https://zenodo.org/records/{record}/files"
_CHUNK = 1 << 20

DatasetName = Literal["CIFAR-10-C", "CIFAR-100-C"]


@dataclass(frozen=True)
class ArchiveSpec:
    """Where a corruption benchmark is published and what its archive contains."""

    name: str
    record: str
    filename: str
    md5: str | None
    folder: str

    @property
    def default_url(self) -> str:
        return f"{_DEFAULT_BASE.format(record=self.record)}/{self.filename}"


ARCHIVES: dict[str, ArchiveSpec] = {
    "CIFAR-10-C": ArchiveSpec(
        "CIFAR-10-C", "2535967", "CIFAR-10-C.tar", "56bf5dcef84df0e2308c6dcbcbbd8499", "CIFAR-10-C"
    ),
    "CIFAR-100-C": ArchiveSpec(
        "CIFAR-100-C", "3555552", "CIFAR-100-C.tar", "11f0ed0f1191edbf9fa23466ae6021d3", "CIFAR-100-C"
    ),
}


def _spec(dataset: str) -> ArchiveSpec:
    if dataset not in ARCHIVES:
        raise ValueError(f"dataset must be one of {sorted(ARCHIVES)}, got {dataset!r}")
    return ARCHIVES[dataset]


def archive_url(dataset: DatasetName = "CIFAR-10-C", base_url: str | None = None) -> str:
    """URL of a dataset's archive: ``base_url`` (or ``$PRUNESAFE_CIFAR_C_URL``, or Zenodo) + file name.

    ``base_url`` may contain ``{record}``, replaced by the Zenodo record number.

    Examples
    --------
    >>> archive_url("CIFAR-10-C")
    'https://zenodo.org/records/2535967/files/CIFAR-10-C.tar'
    >>> archive_url("CIFAR-100-C", base_url="http://127.0.0.1:8000/mirror/")
    'http://127.0.0.1:8000/mirror/CIFAR-100-C.tar'
    """
    spec = _spec(dataset)
    base = base_url or os.environ.get(BASE_URL_ENV) or _DEFAULT_BASE
    return f"{base.format(record=spec.record).rstrip('/')}/{spec.filename}"


def manual_instructions(dataset: str, root: str | os.PathLike[str]) -> str:
    """How to install a dataset by hand (used in error messages)."""
    spec = _spec(dataset)
    target = Path(root) / spec.folder
    return (
        f"Download {spec.default_url} (md5 {spec.md5 or 'not published'}), then run "
        f"`tar -xf {spec.filename} -C {Path(root)}` so that {target}/ holds labels.npy and one "
        f"<corruption>.npy per corruption (uint8, 5*N x 32 x 32 x 3, severity s in rows (s-1)*N .. s*N-1). "
        f"A mirror can be used with base_url=... or the {BASE_URL_ENV} environment variable."
    )


def _md5_of(path: Path) -> str:
    return digest_of(path, "md5")


def _safe_members(tar: tarfile.TarFile, folder: str) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for m in members:
        posix = PurePosixPath(m.name)
        if m.name.startswith(("/", "\\")) or posix.is_absolute() or ".." in posix.parts or ":" in m.name:
            raise ValueError(f"refusing to extract archive member {m.name!r}: absolute path or '..'")
        if not (m.isfile() or m.isdir()):
            raise ValueError(f"refusing to extract archive member {m.name!r}: not a regular file or folder")
        parts = [p for p in posix.parts if p not in ("", ".")]
        if not parts or parts[0] != folder:
            raise ValueError(f"archive member {m.name!r} is outside the expected top folder {folder!r}/")
    return members


def _extract(archive: Path, root: Path, folder: str, *, progress: bool) -> Path:
    """Extract ``archive`` into ``root/folder`` atomically; return that folder."""
    target = root / folder
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        digests: dict[str, str] = {}
        with tarfile.open(archive, "r:*") as tar:
            members = _safe_members(tar, folder)
            files = [m for m in members if m.isfile()]
            iterator = files
            if progress:
                from tqdm.auto import tqdm

                iterator = tqdm(files, desc=f"extracting {archive.name}", unit="file")
            for m in members:
                if m.isdir():
                    (tmp / m.name).mkdir(parents=True, exist_ok=True)
            for m in iterator:
                dest = tmp / m.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                if src is None:  # pragma: no cover - isfile() members always have data
                    raise ValueError(f"archive member {m.name!r} has no data")
                h = hashlib.md5(usedforsecurity=False)
                with src, open(dest, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                digests[str(PurePosixPath(m.name).relative_to(folder))] = h.hexdigest()
        extracted = tmp / folder
        if not extracted.is_dir():
            raise ValueError(f"archive {archive} does not contain a {folder}/ folder")
        write_md5sums(extracted, digests)
        os.replace(extracted, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, digest in digests.items():
        with contextlib.suppress(OSError):
            remember_md5(target / rel, digest)
    return target


def download_cifar_c(
    root: str | os.PathLike[str],
    dataset: DatasetName = "CIFAR-10-C",
    *,
    base_url: str | None = None,
    md5: str | None = None,
    verify: bool = True,
    keep_archive: bool = False,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download and unpack CIFAR-10-C or CIFAR-100-C into ``<root>/<dataset>/``; return that folder.

    Does nothing when ``<root>/<dataset>/labels.npy`` already exists.

    Parameters
    ----------
    root : path
        Parent folder; the archive and ``.part`` file are kept there while downloading.
    dataset : {"CIFAR-10-C", "CIFAR-100-C"}
    base_url : str, optional
        Mirror to download from (``<base_url>/<dataset>.tar``); default ``$PRUNESAFE_CIFAR_C_URL``,
        else Zenodo.
    md5 : str, optional
        Expected archive MD5; default the published one (``ARCHIVES[dataset].md5``).
    verify : bool, default True
        Check the archive's MD5 before unpacking.  A mismatch of a download renames it to
        ``<root>/<dataset>.tar.bad`` (not deleted: it may be gigabytes) and raises
        :class:`~prunesafe.data.integrity.ChecksumError`.
    keep_archive : bool, default False
        Keep ``<root>/<dataset>.tar`` after unpacking.  Only an archive that prunesafe downloaded is
        ever deleted -- by this call, or by an earlier call in the same process whose extraction
        failed; an archive found in ``root`` otherwise (e.g. placed there by you) is always kept.
    timeout : float, default 60
        Socket timeout in seconds.
    progress : bool, default True
        Show tqdm progress bars.

    Raises
    ------
    DownloadError
        No connection, HTTP error or interrupted transfer (the message says how to install the
        files by hand; an interrupted transfer resumes on the next call).

    Examples
    --------
    >>> import tempfile
    >>> download_cifar_c(tempfile.mkdtemp(), base_url="http://127.0.0.1:9", progress=False, timeout=1)
    Traceback (most recent call last):
    ...
    prunesafe._download.DownloadError: could not reach http://127.0.0.1:9/CIFAR-10-C.tar: ...
    """
    spec = _spec(dataset)
    base = Path(root)
    target = base / spec.folder
    if (target / "labels.npy").is_file():
        return target
    if target.exists():
        raise FileExistsError(
            f"{target} exists but has no labels.npy (an incomplete manual copy?); remove it or complete it. "
            + manual_instructions(dataset, base)
        )
    base.mkdir(parents=True, exist_ok=True)
    url = archive_url(dataset, base_url)
    expected = (md5 or spec.md5 or "").lower() or None
    archive = base / spec.filename
    part = base / (spec.filename + ".part")
    # only an archive prunesafe fetched is ever deleted -- in this call, or in an earlier call of this
    # process whose extraction failed (a retry); an archive found in root otherwise is the user's
    downloaded = _fetched_here(archive)
    if not archive.is_file():
        try:
            _fetch(url, part, timeout=timeout, progress=progress, desc=spec.filename)
        except DownloadError as exc:
            raise DownloadError(f"{exc}\n{manual_instructions(dataset, base)}") from exc
        if verify and expected is not None:
            actual = _md5_of(part)
            if actual != expected:
                bad = base / (spec.filename + ".bad")
                os.replace(part, bad)  # keep the (multi-GB) bytes for inspection; never resumed from
                raise ChecksumError(
                    f"downloaded {url} has MD5 {actual}, expected {expected}; the download was kept as "
                    f"{bad} (inspect or delete it), call again to download afresh"
                )
        os.replace(part, archive)
        downloaded = True
        _FETCHED.add(_file_key(archive))
    elif verify and expected is not None:
        actual = _md5_of(archive)
        if actual != expected:
            raise ChecksumError(
                f"{archive} has MD5 {actual}, expected {expected}; delete it and call again to re-download"
            )
    folder = _extract(archive, base, spec.folder, progress=progress)
    if downloaded and not keep_archive:
        _FETCHED.discard(_file_key(archive))
        archive.unlink()
    return folder


#: (absolute path, size, mtime_ns) of archives this process downloaded and has not deleted yet.
_FETCHED: set[tuple[str, int, int]] = set()


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _fetched_here(archive: Path) -> bool:
    """Whether ``archive`` is (unchanged) an archive this process downloaded."""
    try:
        return _file_key(archive) in _FETCHED
    except OSError:
        return False
