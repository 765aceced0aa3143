"""MD5 checksums with a small on-disk cache, and ``MD5SUMS`` manifests.

Hashing the 19 CIFAR-10-C files (about 3 GB) takes tens of seconds, so a file's digest is cached in
a JSON sidecar keyed by absolute path, size and modification time (``mtime_ns``).  Any change to the
file changes the key and forces a re-hash.  The cache lives in ``<folder>/.prunesafe-md5-cache.json``
when that folder is writable, else in ``$XDG_CACHE_HOME/prunesafe/md5-cache.json`` (``~/.cache``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from prunesafe._download import ChecksumError as _ChecksumError

__all__ = ["ChecksumError", "file_md5", "read_md5sums", "verify_md5", "write_md5sums"]

CACHE_NAME = ".prunesafe-md5-cache.json"
MANIFEST_NAME = "MD5SUMS"
_CHUNK = 1 << 20


#: One class for every digest mismatch (MD5 or SHA-256); defined beside the shared fetcher.
ChecksumError = _ChecksumError


def _user_cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "prunesafe" / "md5-cache.json"


def _cache_files(folder: Path) -> list[Path]:
    return [folder / CACHE_NAME, _user_cache_file()]


def _read_json(path: Path) -> dict[str, dict[str, object]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json_atomic(path: Path, data: Mapping[str, object]) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _cache_lookup(path: Path) -> str | None:
    name, size, mtime = _key(path)
    for cache in _cache_files(path.parent):
        entry = _read_json(cache).get(name)
        if isinstance(entry, dict) and entry.get("size") == size and entry.get("mtime_ns") == mtime:
            digest = entry.get("md5")
            if isinstance(digest, str):
                return digest
    return None


def remember_md5(path: str | os.PathLike[str], digest: str) -> None:
    """Record ``digest`` as the MD5 of ``path`` in its folder's cache (or the user cache)."""
    p = Path(path)
    name, size, mtime = _key(p)
    entry = {"size": size, "mtime_ns": mtime, "md5": digest.lower()}
    for cache in _cache_files(p.parent):
        data = _read_json(cache)
        data[name] = entry
        if _write_json_atomic(cache, data):
            return


def file_md5(path: str | os.PathLike[str], *, use_cache: bool = True) -> str:
    """MD5 hex digest of a file, served from the cache when size and mtime are unchanged.

    Parameters
    ----------
    path : path
        File to hash.
    use_cache : bool, default True
        Look the digest up in (and store it into) the cache described in the module docstring.

    Examples
    --------
    >>> import tempfile, os
    >>> fd, p = tempfile.mkstemp(); _ = os.write(fd, b"abc"); os.close(fd)
    >>> file_md5(p, use_cache=False)
    '900150983cd24fb0d6963f7d28e17f72'
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"cannot checksum {p}: no such file")
    if use_cache:
        cached = _cache_lookup(p)
        if cached is not None:
            return cached
    h = hashlib.md5(usedforsecurity=False)
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if use_cache:
        remember_md5(p, digest)
    return digest


def verify_md5(path: str | os.PathLike[str], expected: str, *, use_cache: bool = True) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has MD5 ``expected``.

    Examples
    --------
    >>> import tempfile, os
    >>> fd, p = tempfile.mkstemp(); _ = os.write(fd, b"abc"); os.close(fd)
    >>> verify_md5(p, "900150983cd24fb0d6963f7d28e17f72", use_cache=False)
    """
    actual = file_md5(path, use_cache=use_cache)
    if actual != expected.strip().lower():
        raise ChecksumError(
            f"MD5 mismatch for {path}: expected {expected.strip().lower()}, got {actual}. The file is "
            "corrupted or incomplete; delete it and download it again."
        )


def read_md5sums(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Parse ``<folder>/MD5SUMS`` (``md5sum`` format: ``<digest>  <file name>`` per line).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "MD5SUMS").write_text("900150983cd24fb0d6963f7d28e17f72  a.npy\\n")
    >>> read_md5sums(d)
    {'a.npy': '900150983cd24fb0d6963f7d28e17f72'}
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no checksum manifest {path}; it is written by prunesafe's downloader. Create one with "
            f"`md5sum *.npy > {MANIFEST_NAME}` from files you trust, or pass verify=<dict of name -> md5>"
        )
    out: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 32:
            raise ValueError(f"{path}:{lineno}: expected '<32-hex-digit md5>  <file name>', got {line!r}")
        out[parts[1].lstrip("*").strip()] = parts[0].lower()
    return out


def write_md5sums(folder: str | os.PathLike[str], digests: Mapping[str, str]) -> Path:
    """Write ``<folder>/MD5SUMS`` in ``md5sum`` format (sorted by file name); return its path.

    Examples
    --------
    >>> import tempfile
    >>> p = write_md5sums(tempfile.mkdtemp(), {"a.npy": "900150983cd24fb0d6963f7d28e17f72"})
    >>> p.read_text()
    '900150983cd24fb0d6963f7d28e17f72  a.npy\\n'
    """
    path = Path(folder) / MANIFEST_NAME
    path.write_text("".join(f"{digests[k]}  {k}\n" for k in sorted(digests)), encoding="utf-8")
    return path
