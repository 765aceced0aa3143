"""A registry of known CIFAR-10 checkpoints: architecture, normalisation, file hash and published accuracy.

:func:`pretrained_cifar_resnet` takes a checkpoint file (or the folder holding it under its published
name), checks its SHA-256, builds the right architecture with the right input normalisation and
loads the weights. With ``download=True`` (or through :func:`download_checkpoint`) a missing file is
fetched from its published URL -- or from a mirror (``base_url=`` or ``$PRUNESAFE_CHECKPOINT_URL``,
``<base>/<file name>``) -- through the same atomic, verified code path as the CIFAR-10-C download:
the bytes reach the destination only once their SHA-256 matches the registry.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from prunesafe._download import ChecksumError, DownloadError, download_file
from prunesafe.models.cifar_resnet import CifarResNet, cifar_resnet
from prunesafe.models.normalization import IMAGENET_MEAN, IMAGENET_STD
from prunesafe.models.weights import load_weights

__all__ = [
    "CHECKPOINT_URL_ENV",
    "PRETRAINED_CHECKPOINTS",
    "PretrainedCheckpoint",
    "checkpoint_url",
    "download_checkpoint",
    "file_sha256",
    "pretrained_cifar_resnet",
    "register_checkpoint",
    "unregister_checkpoint",
]

#: Environment variable naming a mirror for checkpoints: files are fetched from ``<mirror>/<file name>``.
CHECKPOINT_URL_ENV = "PRUNESAFE_CHECKPOINT_URL"

_AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"


@dataclass(frozen=True)
class PretrainedCheckpoint:
    """Description of one public checkpoint.

    Attributes
    ----------
    name : str
        Registry key.
    filename : str
        File name as published.
    depth : int
        ``cifar_resnet`` depth.
    mean, std : tuple of float
        Normalisation of ``[0, 1]`` inputs the weights were trained with.
    sha256 : str
        SHA-256 of the file, or its first hex digits where only those are published (the
        ``-xxxxxxxx`` suffix of the file name).
    top1 : float or None
        Published top-1 accuracy (%) on the original CIFAR-10 test set.
    url : str
        Where the file is published ("" for checkpoints distributed with the project data).
    note : str
        Provenance.

    Examples
    --------
    >>> PRETRAINED_CHECKPOINTS["resnet20"].top1
    91.73
    """

    name: str
    filename: str
    depth: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    sha256: str
    top1: float | None
    url: str
    note: str


def _akamaster(depth: int, digest: str, top1: float) -> PretrainedCheckpoint:
    filename = f"resnet{depth}-{digest[:8]}.th"
    return PretrainedCheckpoint(
        name=f"resnet{depth}",
        filename=filename,
        depth=depth,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        sha256=digest,
        top1=top1,
        url=_AKAMASTER + filename,
        note="Idelbayev, pytorch_resnet_cifar10 (BSD-2-Clause), option-A shortcuts",
    )


_BUILTIN: dict[str, PretrainedCheckpoint] = {
    entry.name: entry
    for entry in (
        _akamaster(20, "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8", 91.73),
        _akamaster(32, "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850", 92.63),
        _akamaster(44, "014dd654", 93.10),
        _akamaster(56, "4bfd9763", 93.39),
        _akamaster(110, "1d1ed7c2", 93.68),
        _akamaster(1202, "f3b1deed", 93.82),
        PretrainedCheckpoint(
            name="resnet20-jpeg",
            filename="resnet20-jpeg.th",
            depth=20,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            sha256="0486cee31dc4c8b2d5e4ba3face1d7e7a0db6786f5a5352e84cfb7cfa1f775d7",
            top1=None,
            url="",
            note="resnet20 fine-tuned 4 epochs on the JPEG-decoded CIFAR-10 train split "
            "(prunesafe test data)",
        ),
    )
}
_REGISTRY: dict[str, PretrainedCheckpoint] = dict(_BUILTIN)

#: Known checkpoints, keyed by name (a read-only view; add entries with :func:`register_checkpoint`).
PRETRAINED_CHECKPOINTS: Mapping[str, PretrainedCheckpoint] = MappingProxyType(_REGISTRY)


def register_checkpoint(entry: PretrainedCheckpoint, *, overwrite: bool = False) -> None:
    """Add a checkpoint (e.g. your own CIFAR ResNet on an internal server) to the registry.

    Parameters
    ----------
    entry : PretrainedCheckpoint
        Its ``sha256`` must be the full 64-digit SHA-256 of the file: a registered checkpoint is verified
        like the built-in ones.
    overwrite : bool, default False
        Replace an existing entry of the same name (built-in entries can be replaced, and restored with
        :func:`unregister_checkpoint`).

    Examples
    --------
    >>> entry = PretrainedCheckpoint("my-r20", "my-r20.th", 20, (0.5,) * 3, (0.25,) * 3, "ab" * 32,
    ...                              None, "http://127.0.0.1:8000/my-r20.th", "example")
    >>> register_checkpoint(entry)
    >>> PRETRAINED_CHECKPOINTS["my-r20"].depth
    20
    >>> unregister_checkpoint("my-r20")
    """
    if not isinstance(entry, PretrainedCheckpoint):
        raise TypeError(f"entry must be a PretrainedCheckpoint, got {type(entry).__name__}")
    digest = entry.sha256.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(
            f"entry.sha256 must be the full 64-hex-digit SHA-256 of the file, got {entry.sha256!r}"
        )
    if entry.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"checkpoint {entry.name!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[entry.name] = entry


def unregister_checkpoint(name: str) -> None:
    """Remove a registered checkpoint; a replaced built-in entry comes back as it was.

    Examples
    --------
    >>> unregister_checkpoint("resnet20")  # a built-in that was not replaced stays
    Traceback (most recent call last):
    ...
    ValueError: 'resnet20' is a built-in checkpoint that was not replaced; nothing to unregister
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown checkpoint {name!r}; known: {sorted(_REGISTRY)}")
    if name in _BUILTIN:
        if _REGISTRY[name] is _BUILTIN[name]:
            raise ValueError(
                f"{name!r} is a built-in checkpoint that was not replaced; nothing to unregister"
            )
        _REGISTRY[name] = _BUILTIN[name]
    else:
        del _REGISTRY[name]


def _entry(name: str) -> PretrainedCheckpoint:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise KeyError(f"unknown checkpoint {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def checkpoint_url(name: str, base_url: str | None = None) -> str:
    """Where a registered checkpoint is downloaded from.

    ``base_url`` (else ``$PRUNESAFE_CHECKPOINT_URL``) is a mirror holding the files under their published
    names; without one, the entry's own ``url``.

    Examples
    --------
    >>> checkpoint_url("resnet20").endswith("/resnet20-12fca82f.th")
    True
    >>> checkpoint_url("resnet20", base_url="http://127.0.0.1:8000/ckpt/")
    'http://127.0.0.1:8000/ckpt/resnet20-12fca82f.th'
    """
    entry = _entry(name)
    base = base_url or os.environ.get(CHECKPOINT_URL_ENV)
    if base:
        return f"{base.rstrip('/')}/{entry.filename}"
    if not entry.url:
        raise ValueError(
            f"checkpoint {name!r} ({entry.filename}) is not published at a URL ({entry.note}); pass "
            f"base_url= (or set {CHECKPOINT_URL_ENV}) to a mirror that holds it, or give its path"
        )
    return entry.url


def download_checkpoint(
    name: str,
    root: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Fetch a registered checkpoint into ``root/<file name>`` (SHA-256 verified, atomic); return the path.

    A file already there with the right SHA-256 is kept (nothing is downloaded); one with another
    digest raises rather than being overwritten. A download whose digest differs is deleted and raises
    :class:`~prunesafe.data.ChecksumError`: the destination only ever holds verified bytes. Entries whose
    published digest is an 8-digit prefix (``resnet44`` ... ``resnet1202``) are checked against that prefix.

    Parameters
    ----------
    name : str
        A key of :data:`PRETRAINED_CHECKPOINTS`.
    root : path
        Folder to download into (created if needed).
    base_url : str, optional
        Mirror (``<base_url>/<file name>``); default ``$PRUNESAFE_CHECKPOINT_URL``, else the entry's URL.
    timeout : float, default 60
    progress : bool, default True

    Raises
    ------
    prunesafe.data.DownloadError
        No connection / HTTP error (the message names the URL and the mirror override).

    Examples
    --------
    >>> import tempfile
    >>> download_checkpoint("resnet20", tempfile.mkdtemp(), base_url="http://127.0.0.1:9",
    ...                     timeout=1, progress=False)
    Traceback (most recent call last):
    ...
    prunesafe._download.DownloadError: could not reach http://127.0.0.1:9/resnet20-12fca82f.th: ...
    """
    entry = _entry(name)
    target = Path(root) / entry.filename
    if target.is_file():
        actual = file_sha256(target)
        if not actual.startswith(entry.sha256):
            raise ChecksumError(
                f"{target} exists with SHA-256 {actual[:16]}..., not the {entry.sha256[:16]}... of {name!r}; "
                "delete it (or move it away) and call again to download the published file"
            )
        return target
    url = checkpoint_url(name, base_url)
    try:
        return download_file(url, target, sha256=entry.sha256, timeout=timeout, progress=progress)
    except DownloadError as exc:
        raise DownloadError(
            f"{exc}\nFetch {url} by hand into {target}, or point base_url= / ${CHECKPOINT_URL_ENV} at a "
            "mirror that holds it."
        ) from exc


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d, "x.bin"); _ = p.write_bytes(b"abc")
    ...     file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pretrained_cifar_resnet(
    name: str,
    path: str | os.PathLike[str],
    *,
    verify_hash: bool = True,
    map_location: str | torch.device = "cpu",
    download: bool = False,
    base_url: str | None = None,
    progress: bool = True,
) -> CifarResNet:
    """Build the architecture of a registered checkpoint with its normalisation and load the weights.

    Parameters
    ----------
    name : str
        A key of :data:`PRETRAINED_CHECKPOINTS` (``"resnet20"``, ``"resnet32"``, ..., ``"resnet20-jpeg"``).
    path : str or os.PathLike
        The checkpoint file, or a folder that contains it under its published file name.
    verify_hash : bool, default True
        Check the file's SHA-256 against the registry (full digest, or its published prefix).
    map_location : str or torch.device, default "cpu"
    download : bool, default False
        When ``path`` is a folder without the file, fetch it there with :func:`download_checkpoint`.
    base_url : str, optional
        Mirror for the download (see :func:`checkpoint_url`).
    progress : bool, default True
        Progress bar of the download.

    Returns
    -------
    CifarResNet
        In eval mode.

    Raises
    ------
    KeyError
        Unknown ``name`` (the message lists the known ones).
    FileNotFoundError
        No such file (or the folder lacks the published file name).
    ValueError
        SHA-256 mismatch (corrupt or different file) or a key/shape mismatch.

    Examples
    --------
    >>> import pathlib, tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d:  # a stand-in file; use the downloaded one
    ...     _ = torch.save({"state_dict": cifar_resnet(20).state_dict()}, pathlib.Path(d, "w.th"))
    ...     model = pretrained_cifar_resnet("resnet20", pathlib.Path(d, "w.th"), verify_hash=False)
    >>> model.normalize
    Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    """
    entry = _entry(name)
    file = Path(path)
    if file.is_dir() or (download and not file.exists() and not file.suffix):
        file = file / entry.filename
    if not file.is_file() and download:
        file = download_checkpoint(name, file.parent, base_url=base_url, progress=progress)
    if not file.is_file():
        where = f" (download=True fetches {entry.url})" if entry.url else ""
        raise FileNotFoundError(f"checkpoint {name!r} not found at {file}{where}")
    if verify_hash:
        actual = file_sha256(file)
        if not actual.startswith(entry.sha256):
            raise ValueError(
                f"{file} has SHA-256 {actual[:16]}..., but {name!r} ({entry.filename}) has "
                f"{entry.sha256[:16]}...: "
                "the file is corrupt or a different checkpoint. Re-download it, or pass verify_hash=False "
                "if you knowingly use other weights of the same architecture."
            )
    model = cifar_resnet(entry.depth, mean=entry.mean, std=entry.std)
    load_weights(model, file, map_location=map_location)
    return model.eval()
