"""CIFAR-10-C and CIFAR-100-C (Hendrycks & Dietterich, ICLR 2019), memory-mapped.

Standard layout of a dataset folder::

    <corruption>.npy   uint8 (5*N, 32, 32, 3); severity s in rows [(s-1)*N, s*N)
    labels.npy         integer labels, length 5*N (released files: the N test labels tiled 5 times) or N

The released files have N = 10000.  Files are opened with ``np.load(mmap_mode="r")``: selecting all
19 corruptions costs a few kilobytes of memory until pixels are actually read.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt
from torch.utils.data import Dataset

from prunesafe.data.arrays import Transform, _to_float_chw
from prunesafe.data.download import ARCHIVES, download_cifar_c, manual_instructions
from prunesafe.data.integrity import read_md5sums, verify_md5

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "CIFAR10C",
    "CIFAR100C",
    "CORRUPTION_GROUPS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "CorruptedCIFAR",
    "CorruptionCell",
    "resolve_corruptions",
    "resolve_severities",
]

#: The 15 benchmark corruptions, grouped as in Hendrycks & Dietterich (2019), Fig. 1.
CORRUPTION_GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
BENCHMARK_CORRUPTIONS: tuple[str, ...] = tuple(c for g in CORRUPTION_GROUPS.values() for c in g)
#: The four held-out corruptions released alongside (validation set in the paper's appendix).
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
_SHORTCUTS: dict[str, tuple[str, ...]] = {
    "all": ALL_CORRUPTIONS,
    "benchmark": BENCHMARK_CORRUPTIONS,
    "extra": EXTRA_CORRUPTIONS,
    **CORRUPTION_GROUPS,
}


def resolve_corruptions(corruption: str | Sequence[str]) -> tuple[str, ...]:
    """Expand a corruption name, shortcut or list of them into corruption names (order kept, no repeats).

    Shortcuts: ``"all"`` (19), ``"benchmark"`` (15), ``"extra"`` (4) and the groups ``"noise"``,
    ``"blur"``, ``"weather"``, ``"digital"``.

    Examples
    --------
    >>> resolve_corruptions("noise")
    ('gaussian_noise', 'shot_noise', 'impulse_noise')
    >>> resolve_corruptions(["fog", "extra"])[:2]
    ('fog', 'speckle_noise')
    """
    names = [corruption] if isinstance(corruption, str) else corruption
    if not isinstance(names, Sequence) or isinstance(names, (bytes, bytearray)):
        raise TypeError(f"corruption must be a str or a sequence of str, got {type(corruption).__name__}")
    out: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"corruption names must be str, got {name!r}")
        expanded = _SHORTCUTS.get(name, (name,) if name in ALL_CORRUPTIONS else None)
        if expanded is None:
            raise ValueError(
                f"unknown corruption {name!r}; valid names: {', '.join(ALL_CORRUPTIONS)}; "
                f"shortcuts: {', '.join(_SHORTCUTS)}"
            )
        out.extend(c for c in expanded if c not in out)
    if not out:
        raise ValueError("corruption selects nothing; pass a name, a list of names or 'all'")
    return tuple(out)


def resolve_severities(severity: int | str | Sequence[int]) -> tuple[int, ...]:
    """Validate a severity (1..5), a sequence of them, or ``"all"``.

    Examples
    --------
    >>> resolve_severities(3), resolve_severities("all")
    ((3,), (1, 2, 3, 4, 5))
    """
    if isinstance(severity, str):
        if severity != "all":
            raise ValueError(
                f"severity must be an int in 1..5, a sequence of them or 'all', got {severity!r}"
            )
        return SEVERITIES
    values = [severity] if isinstance(severity, (int, np.integer)) else severity
    if not isinstance(values, Sequence):
        raise TypeError(
            f"severity must be an int, a sequence of ints or 'all', got {type(severity).__name__}"
        )
    out: list[int] = []
    for s in values:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"severities must be ints in 1..5, got {s!r}")
        if not 1 <= int(s) <= 5:
            raise ValueError(f"severity must be between 1 and 5 (inclusive), got {int(s)}")
        if int(s) in out:
            raise ValueError(f"severity {int(s)} is listed twice")
        out.append(int(s))
    if not out:
        raise ValueError("severity selects nothing; pass an int in 1..5, a list of them or 'all'")
    return tuple(out)


class CorruptionCell(NamedTuple):
    """One (corruption, severity) slice: ``images`` is a read-only memory-mapped view."""

    corruption: str
    severity: int
    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]


def _open_npy(path: Path, what: str, dataset: str, folder: Path) -> npt.NDArray[Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} file {path} not found. " + manual_instructions(dataset, folder.parent)
        )
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)  # type: ignore[no-any-return]
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(
            f"{path} is truncated or not a valid .npy file ({exc}); delete it and extract it again from "
            f"{ARCHIVES[dataset].filename}"
        ) from exc


class CorruptedCIFAR(Dataset[tuple[Any, int]]):
    """Base class of :class:`CIFAR10C` / :class:`CIFAR100C`; see :class:`CIFAR10C` for the parameters."""

    dataset_name: ClassVar[str] = ""
    num_classes: ClassVar[int] = 0
    image_shape: ClassVar[tuple[int, int, int]] = (32, 32, 3)

    def __init__(
        self,
        root: str | os.PathLike[str],
        corruption: str | Sequence[str] = "all",
        severity: int | str | Sequence[int] = "all",
        transform: Transform | None = None,
        *,
        download: bool = False,
        verify: bool | Mapping[str, str] = False,
        base_url: str | None = None,
    ) -> None:
        self.corruptions = resolve_corruptions(corruption)
        self.severities = resolve_severities(severity)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.transform = transform
        self.root = self._locate(Path(root), download=download, base_url=base_url)
        if verify is not False:
            self._verify(verify)
        self._cells = self._open_cells()
        sizes = [len(c.labels) for c in self._cells]
        self._offsets = np.cumsum([0, *sizes]).tolist()

    # -- locating and opening files -------------------------------------------------------------
    def _locate(self, root: Path, *, download: bool, base_url: str | None) -> Path:
        folder = ARCHIVES[self.dataset_name].folder
        for candidate in (root, root / folder):
            if (candidate / "labels.npy").is_file():
                return candidate
        if download:
            return download_cifar_c(root, self.dataset_name, base_url=base_url)  # type: ignore[arg-type]
        raise FileNotFoundError(
            f"no {self.dataset_name} files in {root} (looked for {root / 'labels.npy'} and "
            f"{root / folder / 'labels.npy'}); pass download=True or install them by hand. "
            + manual_instructions(self.dataset_name, root)
        )

    def _verify(self, verify: bool | Mapping[str, str]) -> None:
        if isinstance(verify, bool):
            if not verify:
                return
            expected = read_md5sums(self.root)
        else:
            expected = {str(k): str(v).lower() for k, v in verify.items()}
        for name in ["labels.npy", *(f"{c}.npy" for c in self.corruptions)]:
            if name not in expected:
                raise ValueError(f"no MD5 known for {name} (checksums available for: {sorted(expected)})")
            verify_md5(self.root / name, expected[name])

    def _open_cells(self) -> list[CorruptionCell]:
        labels_raw = _open_npy(self.root / "labels.npy", "labels", self.dataset_name, self.root)
        if labels_raw.ndim != 1 or labels_raw.dtype.kind not in "iu":
            raise ValueError(
                f"{self.root / 'labels.npy'} must be a 1-D integer array, got dtype {labels_raw.dtype} "
                f"shape {labels_raw.shape}"
            )
        labels_all = np.asarray(labels_raw, dtype=np.int64)
        if labels_all.size and (labels_all.min() < 0 or labels_all.max() >= self.num_classes):
            raise ValueError(
                f"{self.root / 'labels.npy'} holds labels in [{labels_all.min()}, {labels_all.max()}], "
                f"outside 0..{self.num_classes - 1} for {self.dataset_name}; wrong labels file?"
            )
        cells: list[CorruptionCell] = []
        self._files: dict[str, npt.NDArray[np.uint8]] = {}
        n_ref: int | None = None
        for name in self.corruptions:
            path = self.root / f"{name}.npy"
            images = _open_npy(path, f"corruption {name!r}", self.dataset_name, self.root)
            if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
                raise ValueError(
                    f"{path} must be uint8 of shape (5*N, {', '.join(map(str, self.image_shape))}), got "
                    f"{images.dtype} {tuple(images.shape)}"
                )
            rows = int(images.shape[0])
            if rows == 0 or rows % 5:
                raise ValueError(
                    f"{path} has {rows} rows; expected 5*N (N images per severity, 5 severities)"
                )
            n = rows // 5
            if n_ref is not None and n != n_ref:
                raise ValueError(f"{path} has {rows} rows but the other corruption files have {5 * n_ref}")
            n_ref = n
            self._files[name] = images
            if labels_all.shape[0] not in (n, 5 * n):
                raise ValueError(
                    f"labels.npy has {labels_all.shape[0]} labels but {path.name} has {rows} images "
                    f"(N = {n} per severity); labels must have length N or 5*N"
                )
            for s in self.severities:
                lo, hi = (s - 1) * n, s * n
                lab = labels_all if labels_all.shape[0] == n else labels_all[lo:hi]
                cells.append(CorruptionCell(name, s, images[lo:hi], lab))
        return cells

    # -- public API ------------------------------------------------------------------------------
    @property
    def cells(self) -> tuple[CorruptionCell, ...]:
        """Selected (corruption, severity) cells in order: corruption-major, then severity."""
        return tuple(self._cells)

    def iter_cells(self) -> Iterator[CorruptionCell]:
        """Iterate over the selected cells (memory-mapped views, nothing is loaded)."""
        return iter(self._cells)

    @property
    def images(self) -> npt.NDArray[np.uint8]:
        """Memory-mapped uint8 NHWC view of the selected rows (one corruption, consecutive severities).

        A selection spanning several files (or non-consecutive severities) is not one array; use
        :attr:`cells` / :meth:`iter_cells` then.
        """
        first = self._cells[0]
        if len(self.corruptions) == 1:
            sev = self.severities
            if list(sev) == list(range(sev[0], sev[0] + len(sev))):
                n = len(first.labels)
                return self._files[first.corruption][(sev[0] - 1) * n : sev[-1] * n]
        raise ValueError(
            f"this selection spans {len(self.corruptions)} corruption(s) x severities {self.severities}, "
            "which are not one contiguous array; use .cells or .iter_cells() for per-cell memory-mapped views"
        )

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        """int64 labels of all selected items, in dataset order."""
        return np.concatenate([c.labels for c in self._cells])

    @property
    def cell_index(self) -> npt.NDArray[np.int64]:
        """For every item, the position of its cell in :attr:`cells`."""
        return np.repeat(np.arange(len(self._cells)), [len(c.labels) for c in self._cells])

    def source(self, index: int) -> tuple[str, int]:
        """``(corruption, severity)`` that item ``index`` comes from."""
        cell, _ = self._locate_index(index)
        return self._cells[cell].corruption, self._cells[cell].severity

    def _locate_index(self, index: int) -> tuple[int, int]:
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        i = int(index) % n
        cell = bisect.bisect_right(self._offsets, i) - 1
        return cell, i - self._offsets[cell]

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        cell, row = self._locate_index(index)
        c = self._cells[cell]
        x = _to_float_chw(c.images[row])
        return (self.transform(x) if self.transform is not None else x), int(c.labels[row])

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers (spawn) and copy.deepcopy pickle the dataset: ship the selection, not the
        # pixels (pickling a memmap view would copy it), and re-open the memory maps on arrival.
        state = self.__dict__.copy()
        state.pop("_cells", None)
        state.pop("_files", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cells = self._open_cells()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, corruptions={len(self.corruptions)}, "
            f"severities={self.severities}, n={len(self)})"
        )


class CIFAR10C(CorruptedCIFAR):
    """CIFAR-10-C: the CIFAR-10 test set under 19 corruptions at 5 severities.

    Parameters
    ----------
    root : path
        The folder holding ``labels.npy`` and ``<corruption>.npy``, or its parent (containing
        ``CIFAR-10-C/``).
    corruption : str or sequence of str, default "all"
        Corruption name(s) or shortcut(s): ``"all"``, ``"benchmark"`` (15), ``"extra"`` (4),
        ``"noise"``, ``"blur"``, ``"weather"``, ``"digital"``.
    severity : int, sequence of int or "all", default "all"
        Severity levels in 1..5.
    transform : callable, optional
        Applied to each item's float32 CHW tensor in ``[0, 1]`` in ``__getitem__``.
    download : bool, default False
        Fetch and unpack the Zenodo archive into ``root`` when the files are missing.
    verify : bool or mapping, default False
        Check the MD5 of ``labels.npy`` and every selected file: ``True`` uses ``<folder>/MD5SUMS``
        (written by the downloader), a mapping gives ``{file name: md5}``.  Digests are cached by
        path, size and mtime, so only the first check reads the files.
    base_url : str, optional
        Download mirror (see :func:`~prunesafe.data.download.download_cifar_c`).

    Attributes
    ----------
    cells : tuple of CorruptionCell
        ``(corruption, severity, images, labels)`` per selected cell; ``images`` is a read-only
        memory-mapped view (never a copy), ``labels`` int64.
    images : numpy.memmap
        For one corruption and consecutive severities: the selected rows as one view.
    labels : numpy.ndarray
        int64 labels of all items.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> np.save(f"{d}/fog.npy", np.zeros((5 * 4, 32, 32, 3), np.uint8))
    >>> np.save(f"{d}/labels.npy", np.arange(20) % 10)
    >>> ds = CIFAR10C(d, "fog", [2, 3])
    >>> len(ds), ds.source(5), ds.images.shape
    (8, ('fog', 3), (8, 32, 32, 3))
    """

    dataset_name = "CIFAR-10-C"
    num_classes = 10


class CIFAR100C(CorruptedCIFAR):
    """CIFAR-100-C (same layout and parameters as :class:`CIFAR10C`, labels in 0..99).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> np.save(f"{d}/snow.npy", np.zeros((5 * 2, 32, 32, 3), np.uint8))
    >>> np.save(f"{d}/labels.npy", np.array([7, 99], dtype=np.uint8))
    >>> CIFAR100C(d, "snow", 5).labels.tolist()
    [7, 99]
    """

    dataset_name = "CIFAR-100-C"
    num_classes = 100
