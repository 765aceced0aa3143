"""Images already in memory (or memory-mapped): a map-style dataset and a fast batch iterator.

Everything here takes ``uint8`` images in NHWC layout (the layout of the CIFAR ``.npy`` files and of
``torchvision.datasets.CIFAR10.data``) and hands out ``float32`` NCHW tensors scaled to ``[0, 1]``,
exactly what ``torchvision.transforms.ToTensor`` produces.  prunesafe models normalise internally.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

__all__ = ["ArrayDataset", "BatchBuffers", "iter_batches", "load_cifar10_arrays"]

Transform = Callable[[torch.Tensor], Any]


def _as_uint8_nhwc(images: Any, name: str = "images") -> npt.NDArray[np.uint8] | torch.Tensor:
    """Check that ``images`` is a uint8 NHWC array or tensor; return it unchanged (never copies)."""
    if isinstance(images, torch.Tensor):
        dtype_ok = images.dtype == torch.uint8
        shape = tuple(images.shape)
    elif isinstance(images, np.ndarray):
        dtype_ok = images.dtype == np.uint8
        shape = images.shape
    else:
        raise TypeError(
            f"{name} must be a numpy array (or np.memmap) or a torch tensor of uint8 images, "
            f"got {type(images).__name__}"
        )
    if not dtype_ok:
        raise TypeError(
            f"{name} must have dtype uint8 (pixel values 0..255, as in the CIFAR .npy files), got "
            f"{images.dtype}; convert with (x * 255).round().astype(np.uint8) if you hold floats in [0, 1]"
        )
    if len(shape) != 4 or shape[3] not in (1, 3, 4):
        raise ValueError(
            f"{name} must be NHWC with 1, 3 or 4 channels last, e.g. (N, 32, 32, 3), got shape {shape}"
        )
    return images  # type: ignore[no-any-return]


def _as_int64_labels(labels: Any, n: int, name: str = "labels") -> torch.Tensor:
    """Return ``labels`` as a 1-D int64 CPU tensor of length ``n`` (validated)."""
    if isinstance(labels, torch.Tensor):
        tensor = labels.detach().cpu()
    else:
        try:
            array = np.asarray(labels)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name} must be array-like of integers, got {type(labels).__name__}") from exc
        if array.dtype == object:
            raise TypeError(f"{name} must be array-like of integers, got an object array")
        if array.size == 0:
            array = array.astype(np.int64)  # np.asarray([]) is float64
        tensor = torch.from_numpy(np.array(array, copy=True))
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got dtype {tensor.dtype}")
    if tensor.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class index per image), got shape {tuple(tensor.shape)}")
    if tensor.shape[0] != n:
        raise ValueError(f"{name} has {tensor.shape[0]} entries but there are {n} images; they must match")
    if n and int(tensor.min()) < 0:
        raise ValueError(f"{name} must be non-negative class indices, found {int(tensor.min())}")
    return tensor.to(torch.int64)


def _to_float_chw(image: npt.NDArray[np.uint8] | torch.Tensor) -> torch.Tensor:
    """One uint8 HWC image -> float32 CHW in [0, 1] (a fresh tensor)."""
    t = image.clone() if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image, copy=True))
    return t.permute(2, 0, 1).to(torch.float32).div_(255.0)


class ArrayDataset(Dataset[tuple[Any, int]]):
    """Map-style dataset over uint8 NHWC images held in memory or memory-mapped.

    Parameters
    ----------
    images : numpy.ndarray, numpy.memmap or torch.Tensor
        ``uint8`` images of shape ``(N, H, W, C)``.  Not copied: a memory map stays a memory map.
    labels : array-like of int
        ``N`` class indices (any integer dtype; stored as ``int64``).
    transform : callable, optional
        Applied to the ``float32`` CHW tensor in ``[0, 1]`` of each item (e.g. a
        ``torchvision.transforms.v2`` pipeline).  Without it items are that tensor.

    Examples
    --------
    >>> import numpy as np
    >>> ds = ArrayDataset(np.full((4, 32, 32, 3), 255, dtype=np.uint8), [0, 1, 2, 3])
    >>> x, y = ds[1]
    >>> tuple(x.shape), float(x.max()), y
    ((3, 32, 32), 1.0, 1)
    """

    def __init__(self, images: Any, labels: Any, transform: Transform | None = None) -> None:
        self.images = _as_uint8_nhwc(images)
        self.labels = _as_int64_labels(labels, int(self.images.shape[0])).numpy()
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.transform = transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        x = _to_float_chw(self.images[index])
        return (self.transform(x) if self.transform is not None else x), int(self.labels[index])

    def batches(
        self, batch_size: int = 500, *, device: torch.device | str | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Fast batched iteration without per-item overhead (see :func:`iter_batches`).

        ``transform`` is *not* applied on this path.
        """
        return iter_batches(self.images, self.labels, batch_size, device=device)


def iter_batches(
    images: Any,
    labels: Any,
    batch_size: int = 500,
    *,
    device: torch.device | str | None = None,
    reuse_buffer: bool = True,
    release_pages: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(float32 NCHW batch in [0, 1], int64 labels)`` straight from uint8 NHWC images.

    A batch is copied from ``images`` (array, memory map or tensor) into one preallocated uint8
    staging buffer (pinned when ``device`` is CUDA) and converted into one preallocated float
    buffer, so iterating costs one memory copy and one conversion per pixel and no Python work per
    image.  The conversion divides by 255, bit-identical to ``torchvision.transforms.ToTensor``.

    Parameters
    ----------
    images : numpy.ndarray, numpy.memmap or torch.Tensor
        ``uint8`` images ``(N, H, W, C)``.
    labels : array-like of int
        ``N`` class indices.
    batch_size : int, default 500
        Images per batch (the last batch may be smaller).
    device : torch.device or str, optional
        Where the float batch lives (default CPU).  On CUDA the uint8 batch is transferred and
        converted on the device.
    reuse_buffer : bool, default True
        Reuse the float buffer between batches.  A yielded batch is then only valid until the next
        one is requested; pass ``False`` to get a fresh tensor per batch.
    release_pages : bool, default False
        For memory-mapped input: after each batch, tell the OS that this process no longer needs
        the mapped pages (``madvise(MADV_DONTNEED)``; Linux).  Keeps resident memory flat when
        streaming through many large files; the data stays in the page cache.  Only read-only maps
        (``mmap_mode="r"``) are released; copy-on-write (``"c"``) and writable maps are left alone,
        since dropping their pages would discard in-memory edits.

    Yields
    ------
    tuple of torch.Tensor
        ``(x, y)`` with ``x`` float32 ``(B, C, H, W)`` and ``y`` int64 ``(B,)`` on ``device``.

    Examples
    --------
    >>> import numpy as np
    >>> imgs = np.zeros((5, 32, 32, 3), dtype=np.uint8)
    >>> [tuple(x.shape) for x, _ in iter_batches(imgs, [0, 1, 2, 3, 4], batch_size=2)]
    [(2, 3, 32, 32), (2, 3, 32, 32), (1, 3, 32, 32)]
    """
    images = _as_uint8_nhwc(images)
    y_all = _as_int64_labels(labels, int(images.shape[0]))
    buffers = BatchBuffers(batch_size, device=device)
    yield from buffers.batches(images, y_all, reuse_buffer=reuse_buffer, release_pages=release_pages)


class BatchBuffers:
    """Preallocated uint8 staging + float32 output buffers, reused across calls to :meth:`batches`.

    The engine behind :func:`iter_batches`; evaluation loops keep one instance for many arrays so
    the buffers are allocated once.  Buffers grow when an array has larger images.

    Examples
    --------
    >>> import numpy as np, torch
    >>> buf = BatchBuffers(4)
    >>> x, y = next(buf.batches(np.zeros((6, 8, 8, 3), np.uint8), torch.arange(6)))
    >>> tuple(x.shape), y.tolist()
    ((4, 3, 8, 8), [0, 1, 2, 3])
    """

    def __init__(self, batch_size: int = 500, *, device: torch.device | str | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._shape: tuple[int, int, int] | None = None
        self._staging = torch.empty(0, dtype=torch.uint8)
        self._staging_dev = self._staging
        self._out = torch.empty(0)

    def _ensure(self, h: int, w: int, c: int) -> None:
        if self._shape == (h, w, c):
            return
        bs, dev = self.batch_size, self.device
        on_cuda = dev.type == "cuda"
        self._staging = torch.empty((bs, h, w, c), dtype=torch.uint8, pin_memory=on_cuda)
        self._staging_dev = (
            torch.empty((bs, h, w, c), dtype=torch.uint8, device=dev) if on_cuda else self._staging
        )
        self._out = torch.empty((bs, c, h, w), dtype=torch.float32, device=dev)
        self._shape = (h, w, c)

    def batches(
        self,
        images: npt.NDArray[np.uint8] | torch.Tensor,
        labels: torch.Tensor,
        *,
        reuse_buffer: bool = True,
        release_pages: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield float batches of ``images`` (validated uint8 NHWC) with int64 ``labels`` (CPU tensor)."""
        n = int(images.shape[0])
        if n == 0:
            return
        _, h, w, c = (int(s) for s in images.shape)
        self._ensure(h, w, c)
        on_cuda = self.device.type == "cuda"
        staging, staging_dev = self._staging, self._staging_dev
        staging_np = staging.numpy()
        y_dev = labels.to(self.device)
        # only a read-only map ("r") can drop its pages safely: for copy-on-write ("c") or writable
        # ("r+", "w+") maps MADV_DONTNEED would discard the caller's unsaved in-memory edits
        read_only = getattr(images, "mode", None) == "r"
        mm = getattr(images, "_mmap", None) if release_pages and read_only else None
        bs = self.batch_size
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            b = stop - start
            if isinstance(images, torch.Tensor):
                staging[:b].copy_(images[start:stop])
            else:
                np.copyto(staging_np[:b], images[start:stop], casting="no")
            if on_cuda:  # blocking: the pinned staging buffer is overwritten by the next batch
                staging_dev[:b].copy_(staging[:b])
            out = self._out if reuse_buffer else torch.empty_like(self._out)
            x = out[:b]
            # one fused pass: uint8 NHWC -> float NCHW / 255 (bit-identical to ToTensor's .float().div(255))
            torch.div(staging_dev[:b].permute(0, 3, 1, 2), 255.0, out=x)
            if mm is not None:
                _release(mm)
            yield x, y_dev[start:stop]


def _release(mm: Any) -> None:
    """Drop this process's resident pages of a read-only file mapping (data stays in page cache)."""
    import mmap as _mmap_module

    advice = getattr(_mmap_module, "MADV_DONTNEED", None)
    if advice is None or not hasattr(mm, "madvise"):
        return
    with contextlib.suppress(OSError, ValueError):  # closed map or unsupported platform
        mm.madvise(advice)


def load_cifar10_arrays(
    root: str | os.PathLike[str],
    split: Literal["test", "train"] = "test",
    *,
    mmap: bool = True,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Read CIFAR-10 stored as ``<split>_images.npy`` (uint8 NHWC) and ``<split>_labels.npy``.

    Parameters
    ----------
    root : path
        Folder holding ``test_images.npy``, ``test_labels.npy`` (and/or the ``train_`` pair).
    split : {"test", "train"}, default "test"
    mmap : bool, default True
        Memory-map the images (read-only) instead of loading them.

    Returns
    -------
    images : numpy.ndarray
        ``uint8`` ``(N, 32, 32, 3)`` (a read-only ``np.memmap`` when ``mmap``).
    labels : numpy.ndarray
        ``int64`` ``(N,)``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> np.save(f"{d}/test_images.npy", np.zeros((2, 32, 32, 3), np.uint8))
    >>> np.save(f"{d}/test_labels.npy", np.array([3, 5]))
    >>> x, y = load_cifar10_arrays(d)
    >>> x.shape, y.tolist()
    ((2, 32, 32, 3), [3, 5])
    """
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    base = Path(root)
    paths = [base / f"{split}_images.npy", base / f"{split}_labels.npy"]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(
                f"{p} not found; load_cifar10_arrays expects <root>/{split}_images.npy "
                f"(uint8, N x 32 x 32 x 3) and <root>/{split}_labels.npy (N integer labels)"
            )
    try:
        images = np.load(paths[0], mmap_mode="r" if mmap else None, allow_pickle=False)
        labels = np.load(paths[1], allow_pickle=False)
    except ValueError as exc:
        raise ValueError(
            f"could not read {paths[0]} / {paths[1]} as .npy arrays ({exc}); re-create them"
        ) from exc
    _as_uint8_nhwc(images, name=str(paths[0]))
    labels64 = _as_int64_labels(labels, int(images.shape[0]), name=str(paths[1])).numpy()
    return images, labels64
