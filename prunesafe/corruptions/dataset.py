"""On-the-fly CIFAR-C: corrupt clean images when a cell (or an item) is read, instead of loading files.

:class:`OnTheFlyCIFARC` has the reading interface of :class:`~prunesafe.data.CIFAR10C` that
:func:`~prunesafe.metrics.evaluate_corruptions` uses -- ``cells``, each with ``.corruption``,
``.severity``, ``.images`` (uint8 NHWC, generated when the attribute is read) and ``.labels`` -- plus the
usual map-style ``Dataset`` ``__len__`` / ``__getitem__`` (float32 CHW in ``[0, 1]``, corruption-major
order like CIFAR10C).  Image ``i`` of the clean array always uses random stream ``i``
(:func:`~prunesafe.corruptions.corrupt` with ``indices``), so a cell, an item and a file written by
:func:`~prunesafe.corruptions.write_cifar_c` with the same seed hold the same pixels.

Examples
--------
>>> import numpy as np
>>> imgs = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
>>> ds = OnTheFlyCIFARC(imgs, np.arange(4), ["contrast", "gaussian_noise"], [1, 5], seed=0)
>>> len(ds), [(c.corruption, c.severity) for c in ds.cells][:2]
(16, [('contrast', 1), ('contrast', 5)])
>>> cell = ds.cells[3]
>>> cell.images.shape, cell.labels.tolist()
((4, 32, 32, 3), [0, 1, 2, 3])
>>> x, y = ds[13]
>>> x.shape, y, ds.source(13)
(torch.Size([3, 32, 32]), 1, ('gaussian_noise', 5))
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from prunesafe.corruptions._random import DEFAULT_SEED
from prunesafe.corruptions.api import _on_device, corrupt
from prunesafe.data.arrays import Transform, _as_int64_labels, _as_uint8_nhwc
from prunesafe.data.cifar_c import resolve_corruptions, resolve_severities

__all__ = ["GeneratedCell", "OnTheFlyCIFARC"]


class GeneratedCell:
    """One (corruption, severity) cell whose ``images`` are generated when read.

    The owning dataset keeps the most recently generated cell, so reading ``.images`` twice in a row costs
    one generation; at most one cell is held in memory.
    """

    __slots__ = ("_owner", "corruption", "labels", "severity")

    def __init__(self, owner: OnTheFlyCIFARC, corruption: str, severity: int) -> None:
        self._owner = owner
        self.corruption = corruption
        self.severity = severity
        self.labels: npt.NDArray[np.int64] = owner._labels

    @property
    def images(self) -> npt.NDArray[np.uint8]:
        """uint8 NHWC corrupted images of the cell (read-only array)."""
        return self._owner._cell_images(self.corruption, self.severity)

    def __repr__(self) -> str:
        return f"GeneratedCell({self.corruption!r}, severity={self.severity}, n={len(self.labels)})"


class OnTheFlyCIFARC(Dataset[tuple[Any, int]]):
    """CIFAR-C generated on the fly from clean images, usable where a CIFAR10C dataset is read.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor
        Clean uint8 NHWC images ``(N, 32, 32, 3)`` (e.g. the CIFAR-10 or CIFAR-100 test set); not copied.
    labels : array-like of int
        ``N`` class indices.
    corruption : str or sequence of str, default "all"
        Names or shortcuts as for :class:`~prunesafe.data.CIFAR10C` (``"benchmark"``, ``"noise"``, ...).
    severity : int, sequence of int or "all", default "all"
    seed : int, optional
        Seed of the random corruptions (``None``: :data:`~prunesafe.corruptions.DEFAULT_SEED`).
    frost_dir : path, optional
        Frost texture folder, needed when ``"frost"`` is selected.
    transform : callable, optional
        Applied to each item's float32 CHW tensor in ``__getitem__`` (not to ``cells``).
    device : torch.device or str, optional
        Where the corruptions are computed (e.g. ``"cuda"``); results come back as numpy uint8.
    chunk_size : int, default 256
        Images corrupted at a time.

    Examples
    --------
    >>> import numpy as np
    >>> ds = OnTheFlyCIFARC(np.zeros((2, 32, 32, 3), np.uint8), [3, 4], "brightness", 5)
    >>> int(ds.cells[0].images.max()), ds.labels.tolist()
    (76, [3, 4])
    """

    def __init__(
        self,
        images: npt.NDArray[np.uint8] | torch.Tensor,
        labels: Any,
        corruption: str | Sequence[str] = "all",
        severity: int | str | Sequence[int] = "all",
        *,
        seed: int | None = None,
        frost_dir: str | os.PathLike[str] | None = None,
        transform: Transform | None = None,
        device: torch.device | str | None = None,
        chunk_size: int = 256,
    ) -> None:
        _as_uint8_nhwc(images)
        if tuple(images.shape[1:]) != (32, 32, 3):
            raise ValueError(f"images must be (N, 32, 32, 3) uint8, got shape {tuple(images.shape)}")
        self._images = images
        self._labels: npt.NDArray[np.int64] = _as_int64_labels(labels, int(images.shape[0])).numpy()
        self.corruptions = resolve_corruptions(corruption)
        self.severities = resolve_severities(severity)
        bad_seed = isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
        if seed is not None and bad_seed:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.seed = DEFAULT_SEED if seed is None else int(seed)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.transform = transform
        self.frost_dir = frost_dir
        self.device = None if device is None else torch.device(device)
        self.chunk_size = chunk_size
        if "frost" in self.corruptions and frost_dir is None:
            # fail now, not in the middle of an evaluation
            corrupt(np.zeros((1, 32, 32, 3), np.uint8), "frost", 1, frost_dir=None)
        self._cells = tuple(GeneratedCell(self, c, s) for c in self.corruptions for s in self.severities)
        self._cache: tuple[tuple[str, int], npt.NDArray[np.uint8]] | None = None

    def _source(self) -> torch.Tensor | npt.NDArray[np.uint8]:
        return _on_device(self._images, self.device)  # type: ignore[no-any-return]

    def _cell_images(self, corruption: str, severity: int) -> npt.NDArray[np.uint8]:
        key = (corruption, severity)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        out = corrupt(
            self._source(),
            corruption,
            severity,
            seed=self.seed,
            frost_dir=self.frost_dir,
            chunk_size=self.chunk_size,
        )
        arr = out.cpu().numpy() if isinstance(out, torch.Tensor) else out
        arr.setflags(write=False)
        self._cache = (key, arr)
        return arr

    @property
    def cells(self) -> tuple[GeneratedCell, ...]:
        """Selected cells, corruption-major then severity (like :attr:`CIFAR10C.cells`)."""
        return self._cells

    def iter_cells(self) -> Iterator[GeneratedCell]:
        """Iterate over the selected cells (images are generated when a cell's ``images`` is read)."""
        return iter(self._cells)

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        """int64 labels of all items, in dataset order."""
        return np.tile(self._labels, len(self._cells))

    def source(self, index: int) -> tuple[str, int]:
        """``(corruption, severity)`` of item ``index``."""
        cell, _ = self._locate(index)
        return self._cells[cell].corruption, self._cells[cell].severity

    def _locate(self, index: int) -> tuple[int, int]:
        total = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -total <= index < total:
            raise IndexError(f"index {index} out of range for a dataset of {total} images")
        i = int(index) % total
        n = len(self._labels)
        return i // n, i % n

    def __len__(self) -> int:
        return len(self._cells) * len(self._labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        cell, row = self._locate(index)
        c = self._cells[cell]
        key = (c.corruption, c.severity)
        if self._cache is not None and self._cache[0] == key:
            img = torch.from_numpy(self._cache[1][row].copy())
        else:
            one = corrupt(
                self._images[row : row + 1],
                c.corruption,
                c.severity,
                seed=self.seed,
                indices=[row],
                frost_dir=self.frost_dir,
            )
            img = one[0] if isinstance(one, torch.Tensor) else torch.from_numpy(one[0])
        x = img.cpu().permute(2, 0, 1).to(torch.float32).div_(255.0)
        return (self.transform(x) if self.transform is not None else x), int(self._labels[row])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self._labels)}, corruptions={len(self.corruptions)}, "
            f"severities={self.severities}, seed={self.seed})"
        )
