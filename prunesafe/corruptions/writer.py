"""Write a standard-layout CIFAR-C folder (``<corruption>.npy`` + ``labels.npy``) that CIFAR10C reads.

Layout (the released CIFAR-10-C's)::

    <corruption>.npy   uint8 (5*N, 32, 32, 3); severity s in rows [(s-1)*N, s*N)
    labels.npy         the N labels tiled 5 times (uint8 when they fit, as released; else int64)
    make_c.json        what was written: seed, N, severities per corruption, engine settings

Files are filled through ``np.lib.format.open_memmap``, one chunk at a time, so memory stays bounded.
Writing a subset of the severities leaves the other rows as they were (zeros in a new file) and records
the filled severities in ``make_c.json``; a later call with the others completes the file.

Examples
--------
>>> import tempfile, numpy as np
>>> from prunesafe.data import CIFAR10C
>>> d = tempfile.mkdtemp()
>>> imgs = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
>>> _ = write_cifar_c(d, imgs, [0, 1, 2], ["contrast", "pixelate"], progress=False)
>>> ds = CIFAR10C(d, "contrast", 5)
>>> len(ds), bool((ds.images == corrupt(imgs, "contrast", 5)).all())
(3, True)
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm.auto import tqdm

from prunesafe.corruptions._random import DEFAULT_SEED
from prunesafe.corruptions.api import _on_device, corrupt
from prunesafe.data.arrays import _as_int64_labels, _as_uint8_nhwc
from prunesafe.data.cifar_c import SEVERITIES, resolve_corruptions, resolve_severities

__all__ = ["MANIFEST", "write_cifar_c"]

#: Name of the JSON file describing what the writer produced.
MANIFEST = "make_c.json"


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it or write to another folder") from exc
    return data if isinstance(data, dict) else {}


def write_cifar_c(
    out_dir: str | os.PathLike[str],
    images: npt.NDArray[np.uint8] | torch.Tensor,
    labels: Any,
    corruptions: str | Sequence[str] = "all",
    severities: int | str | Sequence[int] = "all",
    *,
    seed: int | None = None,
    frost_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    device: torch.device | str | None = None,
    chunk_size: int = 1000,
    progress: bool = True,
) -> Path:
    """Corrupt ``images`` and write them in the CIFAR-10-C layout under ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Folder to write (created if missing).
    images : numpy.ndarray or torch.Tensor
        Clean uint8 NHWC ``(N, 32, 32, 3)`` images (a memory map is fine: read chunk by chunk).
    labels : array-like of int
        ``N`` labels.
    corruptions, severities
        Selection, as for :class:`~prunesafe.data.CIFAR10C` (default: all 19 x 5).
    seed : int, optional
        Seed of the random corruptions (``None``: :data:`~prunesafe.corruptions.DEFAULT_SEED`).
        Image ``i`` uses stream ``i``, so the result does not depend on ``chunk_size``.
    frost_dir : path, optional
        Frost texture folder (needed for ``"frost"``).
    overwrite : bool, default False
        Replace existing ``<corruption>.npy`` files.  Without it, an existing file of the right shape
        written by this function with the same seed and N is completed (other severities), anything else
        is an error.
    device : torch.device or str, optional
        Where to compute (e.g. ``"cuda"``).
    chunk_size : int, default 1000
        Images per :func:`~prunesafe.corruptions.corrupt` call.
    progress : bool, default True
        Show a tqdm bar over all images of all selected cells.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    _as_uint8_nhwc(images)
    if tuple(images.shape[1:]) != (32, 32, 3):
        raise ValueError(f"images must be (N, 32, 32, 3) uint8, got shape {tuple(images.shape)}")
    n = int(images.shape[0])
    if n == 0:
        raise ValueError("images is empty; nothing to write")
    lab = _as_int64_labels(labels, n).numpy()
    names = resolve_corruptions(corruptions)
    sevs = resolve_severities(severities)
    seed = DEFAULT_SEED if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if "frost" in names and frost_dir is None:
        corrupt(np.zeros((1, 32, 32, 3), np.uint8), "frost", 1, frost_dir=None)  # raises the clear error
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = _read_manifest(manifest_path)
    if manifest and not overwrite and (manifest.get("seed") != int(seed) or manifest.get("n") != n):
        raise ValueError(
            f"{out} holds files made with seed={manifest.get('seed')} for n={manifest.get('n')} images; "
            f"this call has seed={int(seed)}, n={n}. Pass overwrite=True or another folder"
        )
    filled: dict[str, list[int]] = {} if overwrite else dict(manifest.get("severities", {}))
    labels_out = np.tile(lab, 5)
    labels_out = labels_out.astype(np.uint8) if lab.max(initial=0) < 256 else labels_out
    np.save(out / "labels.npy", labels_out)

    src: Any = _on_device(images, device)
    shape = (5 * n, 32, 32, 3)
    bar = tqdm(total=len(names) * len(sevs) * n, unit="img", disable=not progress, desc="make-c")
    try:
        for name in names:
            path = out / f"{name}.npy"
            exists = path.is_file()
            if exists and not overwrite and name not in filled:
                raise FileExistsError(
                    f"{path} exists and was not written by write_cifar_c; pass overwrite=True"
                )
            if exists and not overwrite:
                arr = np.lib.format.open_memmap(path, mode="r+")
                if arr.dtype != np.uint8 or arr.shape != shape:
                    raise ValueError(f"{path} has {arr.dtype} {arr.shape}, expected uint8 {shape}")
            else:
                arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
                filled[name] = []
            for s in sevs:
                bar.set_postfix_str(f"{name} s{s}")
                for lo in range(0, n, int(chunk_size)):
                    hi = min(n, lo + int(chunk_size))
                    y = corrupt(src[lo:hi], name, s, seed=int(seed), start_index=lo, frost_dir=frost_dir)
                    rows = slice((s - 1) * n + lo, (s - 1) * n + hi)
                    arr[rows] = y.cpu().numpy() if isinstance(y, torch.Tensor) else y
                    bar.update(hi - lo)
                filled[name] = sorted({*filled.get(name, []), s})
            arr.flush()
            del arr
            record = {"seed": int(seed), "n": n, "severities": filled, "layout": "CIFAR-10-C"}
            manifest_path.write_text(json.dumps(record, indent=1))
    finally:
        bar.close()
    missing = {k: [s for s in SEVERITIES if s not in v] for k, v in filled.items()}
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        warnings.warn(
            f"severities not written yet (rows are zeros): {missing}; run again with those severities",
            stacklevel=2,
        )
    return out
