"""One download code path for every file prunesafe fetches (standard library only; private).

:func:`fetch` streams a URL into ``<dest>.part``, resuming with an HTTP ``Range`` request when that
file exists (a server that ignores ``Range`` makes it start over). :func:`download_file` adds the rest
of the contract: the finished bytes are checked against an expected digest (SHA-256 or MD5) *before*
they are moved to ``dest`` with one ``os.replace``, so ``dest`` is either absent or complete and
verified -- never a half-written or corrupted file. A download whose digest differs is removed (or
kept as ``<dest>.bad`` for inspection when asked) and raises :class:`ChecksumError`.

The CIFAR-10-C / CIFAR-100-C archives (:mod:`prunesafe.data.download`) and the checkpoint registry
(:mod:`prunesafe.models.pretrained`) both download through here.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

__all__ = ["ChecksumError", "DownloadError", "digest_of", "download_file", "fetch"]

_CHUNK = 1 << 20

HashName = Literal["sha256", "md5"]


class DownloadError(RuntimeError):
    """A file could not be fetched (no network, HTTP error, interrupted transfer)."""


class ChecksumError(ValueError):
    """A file's digest (MD5 or SHA-256) differs from the expected one."""


def digest_of(path: str | os.PathLike[str], algorithm: HashName = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d, "x.bin"); _ = p.write_bytes(b"abc")
    ...     digest_of(p)[:16], digest_of(p, "md5")[:8]
    ('ba7816bf8f01cfea', '90015098')
    """
    h = hashlib.sha256() if algorithm == "sha256" else hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, part: Path, *, timeout: float, progress: bool, desc: str) -> None:
    """Download ``url`` into ``part``, resuming from its current size when the server allows it.

    Raises :class:`DownloadError` on any network failure; an interrupted transfer keeps ``part``
    so that the next call resumes.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "prunesafe", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return  # the partial file is already complete; the checksum decides
        raise DownloadError(f"HTTP {exc.code} ({exc.reason}) for {url}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"could not reach {url}: {getattr(exc, 'reason', exc)}") from exc
    with response:
        status = getattr(response, "status", 200)
        if status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise DownloadError(
                    f"server answered Range request for byte {offset} with Content-Range "
                    f"{content_range!r}; delete {part} and retry"
                )
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # server ignored Range: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None and length.isdigit() else None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=desc)
        received = 0
        try:
            with open(part, mode) as fh:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (OSError, urllib.error.URLError) as exc:
            raise DownloadError(
                f"transfer of {url} interrupted after {offset + received} bytes ({exc}); the partial "
                f"file {part} is kept: call again to resume"
            ) from exc
        finally:
            if bar is not None:
                bar.close()
        if total is not None and offset + received < total:
            raise DownloadError(
                f"transfer of {url} ended early ({offset + received} of {total} bytes); the partial file "
                f"{part} is kept: call again to resume"
            )


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    keep_bad: bool = False,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verified against ``sha256`` (or ``md5``); return ``dest``.

    Parameters
    ----------
    url : str
        Source (``http(s)://`` or ``file://``).
    dest : path
        Final file. Bytes go to ``<dest>.part`` first (resumed on the next call after an
        interruption) and reach ``dest`` only once the digest matches.
    sha256, md5 : str, optional
        Expected hex digest (a prefix of at least 8 hex digits is accepted where only that is published, e.g.
        the ``-xxxxxxxx`` suffix of a checkpoint's file name). SHA-256 wins when both are given. With neither,
        the file is not verified.
    keep_bad : bool, default False
        Keep a download whose digest differs as ``<dest>.bad`` (for multi-GB archives); by default
        it is deleted.
    timeout : float, default 60
        Socket timeout in seconds.
    progress : bool, default True
        Show a tqdm progress bar.

    Raises
    ------
    DownloadError
        Network failure or interrupted transfer.
    ChecksumError
        The downloaded bytes do not have the expected digest; ``dest`` is not created.

    Examples
    --------
    >>> import hashlib, pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     src = pathlib.Path(d, "src.bin"); _ = src.write_bytes(b"weights")
    ...     good = hashlib.sha256(b"weights").hexdigest()
    ...     out = download_file(src.as_uri(), pathlib.Path(d, "w.th"), sha256=good, progress=False)
    ...     out.read_bytes()
    b'weights'
    """
    target = Path(dest)
    expected, algorithm = _expected(sha256, md5)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    fetch(url, part, timeout=timeout, progress=progress, desc=target.name)
    if expected is not None:
        actual = digest_of(part, algorithm)
        if not actual.startswith(expected):
            if keep_bad:
                bad = target.with_name(target.name + ".bad")
                os.replace(part, bad)
                kept = f"the download was kept as {bad} (inspect or delete it)"
            else:
                part.unlink()
                kept = "the download was deleted"
            raise ChecksumError(
                f"downloaded {url} has {algorithm.upper()} {actual}, expected {expected}; {kept}. "
                "Call again to download afresh; if a mirror serves a different file, fix the mirror."
            )
    os.replace(part, target)
    return target


def _expected(sha256: str | None, md5: str | None) -> tuple[str | None, HashName]:
    for value, name, full in ((sha256, "sha256", 64), (md5, "md5", 32)):
        if value:
            digest = value.strip().lower()
            if not (8 <= len(digest) <= full) or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"{name} must be 8 to {full} hex digits, got {value!r}")
            return digest, name  # type: ignore[return-value]
    return None, "sha256"
