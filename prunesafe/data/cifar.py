"""Clean CIFAR-10 / CIFAR-100 through torchvision, with tensors in ``[0, 1]`` by default."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

from prunesafe.data.arrays import Transform
from prunesafe.data.download import DownloadError

__all__ = ["cifar_arrays", "load_cifar10", "load_cifar100"]

_URLS = {
    "CIFAR10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "CIFAR100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
_FOLDERS = {"CIFAR10": "cifar-10-batches-py", "CIFAR100": "cifar-100-python"}


#: Environment variables that override the download address (a mirror of the official archive).
URL_ENV = {"CIFAR10": "PRUNESAFE_CIFAR10_URL", "CIFAR100": "PRUNESAFE_CIFAR100_URL"}


def _load(
    kind: str,
    root: str | os.PathLike[str],
    train: bool,
    download: bool,
    transform: Transform | None,
    url: str | None,
) -> Any:
    import torchvision
    from torchvision.transforms import ToTensor

    cls = getattr(torchvision.datasets, kind)
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
    if url is not None and not isinstance(url, str):
        raise TypeError(f"url must be a str (the archive's address) or None, got {type(url).__name__}")
    url = url or os.environ.get(URL_ENV[kind]) or None
    if url is not None:  # same archive (same checksums) from a mirror
        cls = type(cls.__name__, (cls,), {"url": url})
    pipeline: Any = ToTensor() if transform is None else _Compose(ToTensor(), transform)
    try:
        return cls(root=os.fspath(root), train=train, download=download, transform=pipeline)
    except OSError as exc:  # urllib errors: no network, refused connection, HTTP error
        source = url or _URLS[kind]
        raise DownloadError(
            f"could not download {kind} from {source} ({exc}). Without network, download "
            f"{source} elsewhere and extract it so that {os.fspath(root)}/{_FOLDERS[kind]}/ exists, "
            "then call again with download=False"
        ) from exc
    except RuntimeError as exc:
        if download:
            raise
        raise FileNotFoundError(
            f"{kind} not found or corrupted in {os.fspath(root)} ({exc}). Pass download=True, or put the "
            f"extracted {_FOLDERS[kind]}/ folder from {_URLS[kind]} into {os.fspath(root)}"
        ) from exc


class _Compose:
    """ToTensor followed by the user's transform (picklable, unlike a lambda)."""

    def __init__(self, first: Any, second: Transform) -> None:
        self.first, self.second = first, second

    def __call__(self, x: Any) -> Any:
        return self.second(self.first(x))


def load_cifar10(
    root: str | os.PathLike[str],
    *,
    train: bool = False,
    download: bool = False,
    transform: Transform | None = None,
    url: str | None = None,
) -> Any:
    """The clean CIFAR-10 split as a ``torchvision.datasets.CIFAR10``.

    Parameters
    ----------
    root : path
        Folder holding (or receiving) ``cifar-10-batches-py/``.
    train : bool, default False
        Training split instead of the test split.
    download : bool, default False
        Download from the official site when missing (needs network).
    transform : callable, optional
        Applied to the float32 CHW tensor in ``[0, 1]`` (items are that tensor without it).
    url : str, optional
        Download address of ``cifar-10-python.tar.gz`` instead of the official one (a mirror; the
        archive must be byte-identical, its md5 is checked).  Default: the environment variable
        ``PRUNESAFE_CIFAR10_URL``, else the official site.

    Returns
    -------
    torchvision.datasets.CIFAR10
        ``.data`` is uint8 NHWC and ``.targets`` the labels, so :func:`cifar_arrays` and
        :func:`~prunesafe.data.iter_batches` can skip per-item work.

    Examples
    --------
    >>> import tempfile
    >>> load_cifar10(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: CIFAR10 not found or corrupted in ...
    """
    return _load("CIFAR10", root, train, download, transform, url)


def load_cifar100(
    root: str | os.PathLike[str],
    *,
    train: bool = False,
    download: bool = False,
    transform: Transform | None = None,
    url: str | None = None,
) -> Any:
    """The clean CIFAR-100 split as a ``torchvision.datasets.CIFAR100`` (see :func:`load_cifar10`).

    ``url`` defaults to the environment variable ``PRUNESAFE_CIFAR100_URL``, else the official site.

    Examples
    --------
    >>> import tempfile
    >>> load_cifar100(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: CIFAR100 not found or corrupted in ...
    """
    return _load("CIFAR100", root, train, download, transform, url)


def cifar_arrays(dataset: Any) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """``(uint8 NHWC images, int64 labels)`` behind a torchvision CIFAR dataset (no copy of images).

    Examples
    --------
    >>> import numpy as np, types
    >>> fake = types.SimpleNamespace(data=np.zeros((2, 32, 32, 3), np.uint8), targets=[1, 2])
    >>> x, y = cifar_arrays(fake)
    >>> x.shape, y.dtype
    ((2, 32, 32, 3), dtype('int64'))
    """
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", None)
    if not isinstance(data, np.ndarray) or targets is None:
        raise TypeError(
            "dataset must expose .data (uint8 NHWC numpy array) and .targets like torchvision's CIFAR10, "
            f"got {type(dataset).__name__}"
        )
    if data.dtype != np.uint8 or data.ndim != 4:
        raise ValueError(f"dataset.data must be uint8 NHWC, got {data.dtype} {data.shape}")
    labels = np.asarray(targets, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise ValueError(f"dataset.targets has {labels.shape} entries for {data.shape[0]} images")
    return data, labels
