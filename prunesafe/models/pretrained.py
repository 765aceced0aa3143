"""A registry of known CIFAR-10 checkpoints: architecture, normalisation, file hash and published accuracy.

prunesafe downloads nothing: you fetch the file (``url``) yourself and pass its path (or the
folder holding it) to :func:`pretrained_cifar_resnet`, which checks the SHA-256, builds the
right architecture with the right input normalisation and loads the weights.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from prunesafe.models.cifar_resnet import CifarResNet, cifar_resnet
from prunesafe.models.normalization import IMAGENET_MEAN, IMAGENET_STD
from prunesafe.models.weights import load_weights

__all__ = ["PRETRAINED_CHECKPOINTS", "PretrainedCheckpoint", "file_sha256", "pretrained_cifar_resnet"]

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


#: Known checkpoints, keyed by name (read-only).
PRETRAINED_CHECKPOINTS: Mapping[str, PretrainedCheckpoint] = MappingProxyType(
    {
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
)


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
    if name not in PRETRAINED_CHECKPOINTS:
        raise KeyError(f"unknown checkpoint {name!r}; known: {sorted(PRETRAINED_CHECKPOINTS)}")
    entry = PRETRAINED_CHECKPOINTS[name]
    file = Path(path)
    if file.is_dir():
        file = file / entry.filename
    if not file.is_file():
        where = f" (download: {entry.url})" if entry.url else ""
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
