"""``corrupt``: apply one CIFAR-10-C corruption at one severity to a batch of 32x32 RGB images.

Conventions (they decide the numbers, so they are part of the contract):

* **uint8 in, uint8 out** -- NHWC (``(N, 32, 32, 3)``, or one ``(32, 32, 3)`` image), numpy or torch on
  any device; the output has the input's type, device and layout.  Pixels enter as ``uint8 / 255`` and
  leave as ``floor(clamp(y, 0, 255))`` of the corruption's ``[0, 255]``-scale float result ``y`` --
  the reference's ``np.uint8(np.clip(x, 0, 1) * 255)``, i.e. truncation, not rounding.
* **float in, float out** -- NCHW (``(N, 3, 32, 32)`` or ``(3, 32, 32)``), float16/32/64 with values in
  ``[0, 1]``; returned in the input's dtype as ``clamp(y, 0, 255) / 255`` (not quantised to 1/255 steps).
  Computation is float32 either way.
* **Randomness** -- image ``k`` of the batch uses the stream keyed by
  ``(seed, name, severity, indices[k])`` (see :class:`~prunesafe.corruptions._random.ImageRNG`), with
  ``indices = start_index + arange(N)`` unless given.  ``seed=None`` means :data:`DEFAULT_SEED` (0), so
  a call without a seed is reproducible too.  Same seed and indices -> bit-identical output on the same
  device, whatever the batch split.  The streams are not numpy's: outputs of random corruptions match
  the reference in distribution, not pixel for pixel.

Examples
--------
>>> import numpy as np
>>> x = np.full((2, 32, 32, 3), 100, np.uint8)
>>> y = corrupt(x, "contrast", 5)
>>> y.dtype, y.shape, int(y[0, 0, 0, 0])
(dtype('uint8'), (2, 32, 32, 3), 100)
>>> a = corrupt(x, "gaussian_noise", 3, seed=7)
>>> b = np.concatenate([corrupt(x[:1], "gaussian_noise", 3, seed=7),
...                     corrupt(x[1:], "gaussian_noise", 3, seed=7, start_index=1)])
>>> bool((a == b).all())
True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar, overload

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from prunesafe.corruptions._random import DEFAULT_SEED, ImageRNG
from prunesafe.corruptions._registry import ALL_CORRUPTIONS, get_corruption

__all__ = ["DEFAULT_SEED", "corrupt"]

ImagesT = TypeVar("ImagesT", Tensor, npt.NDArray[Any])

#: Smallest chunk of the direct uint8 path (``uint8_fn``; its working set is 8-bit, ~3 KB per image).
_UINT8_CHUNK = 2048

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)):
        raise TypeError(f"severity must be an int in 1..5, got {type(severity).__name__} {severity!r}")
    if not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be between 1 and 5 (inclusive), got {int(severity)}")
    return int(severity)


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a corruption name (str), got {type(name).__name__}")
    if name not in ALL_CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(ALL_CORRUPTIONS)}")
    return name


def _as_tensor(images: Any) -> tuple[Tensor, bool]:
    if isinstance(images, Tensor):
        return images, False
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8 or images.dtype.kind == "f":
            arr = np.ascontiguousarray(images)
            if not arr.flags.writeable:  # e.g. a read-only memory map: torch wants writable memory
                arr = arr.copy()
            return torch.from_numpy(arr), True
        raise TypeError(
            f"images must be uint8 (NHWC) or float (NCHW in [0, 1]), got numpy dtype {images.dtype}"
        )
    raise TypeError(f"images must be a numpy array or a torch tensor, got {type(images).__name__}")


def _on_device(images: Any, device: torch.device | str | None) -> Any:
    """``images`` as a tensor on ``device``, or unchanged when ``device`` is None."""
    if device is None:
        return images
    t = images if isinstance(images, Tensor) else torch.from_numpy(np.asarray(images))
    return t.to(device)


def _validate_images(t: Tensor) -> tuple[Tensor, bool, bool]:
    """Validate layout, size, dtype and range; returns (4-D batch view, was_uint8, was_single_image)."""
    single = t.ndim == 3
    if t.ndim not in (3, 4):
        raise ValueError(
            f"images must be a batch (4-D) or one image (3-D), got shape {tuple(t.shape)}"
        )
    b = t[None] if single else t
    if t.dtype == torch.uint8:
        if tuple(b.shape[1:]) != (32, 32, 3):
            nchw = tuple(b.shape[1:]) == (3, 32, 32)
            hint = " (looks like NCHW: pass x.permute(0, 2, 3, 1))" if nchw else ""
            raise ValueError(
                f"uint8 images must be NHWC of shape (N, 32, 32, 3), got {tuple(t.shape)}{hint}; the CIFAR "
                "severity parameters are defined for 32x32 RGB images"
            )
        return b, True, single
    if t.dtype in _FLOAT_DTYPES:
        if tuple(b.shape[1:]) != (3, 32, 32):
            nhwc = tuple(b.shape[1:]) == (32, 32, 3)
            hint = " (looks like NHWC: pass x.permute(0, 3, 1, 2))" if nhwc else ""
            raise ValueError(
                f"float images must be NCHW of shape (N, 3, 32, 32) with values in [0, 1], got "
                f"{tuple(t.shape)}{hint}"
            )
        x = b
        if x.numel():
            lo, hi = float(x.min()), float(x.max())
            if not (lo >= 0.0 and hi <= 1.0):
                raise ValueError(
                    f"float images must have values in [0, 1], got range [{lo:g}, {hi:g}]"
                    + (" (0..255 floats? divide by 255 or pass uint8)" if hi > 1.0 else "")
                )
        return x, False, single
    raise TypeError(f"images must be uint8 (NHWC) or float (NCHW in [0, 1]), got dtype {t.dtype}")


def _resolve_indices(n: int, start_index: int, indices: Sequence[int] | Tensor | None) -> list[int]:
    if indices is None:
        if isinstance(start_index, bool) or not isinstance(start_index, (int, np.integer)) or start_index < 0:
            raise ValueError(f"start_index must be a non-negative int, got {start_index!r}")
        return list(range(int(start_index), int(start_index) + n))
    idx = indices.tolist() if isinstance(indices, (Tensor, np.ndarray)) else list(indices)
    if len(idx) != n:
        raise ValueError(f"indices has {len(idx)} entries but images has {n}")
    if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0 for i in idx):
        raise ValueError("indices must be non-negative ints (the images' global indices)")
    return [int(i) for i in idx]


@overload
def corrupt(
    images: Tensor,
    name: str,
    severity: int,
    *,
    seed: int | None = ...,
    start_index: int = ...,
    indices: Sequence[int] | Tensor | None = ...,
    frost_dir: str | os.PathLike[str] | None = ...,
    chunk_size: int = ...,
) -> Tensor: ...
@overload
def corrupt(
    images: npt.NDArray[Any],
    name: str,
    severity: int,
    *,
    seed: int | None = ...,
    start_index: int = ...,
    indices: Sequence[int] | Tensor | None = ...,
    frost_dir: str | os.PathLike[str] | None = ...,
    chunk_size: int = ...,
) -> npt.NDArray[Any]: ...
def corrupt(
    images: Tensor | npt.NDArray[Any],
    name: str,
    severity: int,
    *,
    seed: int | None = None,
    start_index: int = 0,
    indices: Sequence[int] | Tensor | None = None,
    frost_dir: str | os.PathLike[str] | None = None,
    chunk_size: int = 256,
) -> Tensor | npt.NDArray[Any]:
    """Apply corruption ``name`` at ``severity`` to a batch of 32x32 RGB images.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor
        uint8 NHWC ``(N, 32, 32, 3)`` (the CIFAR-10-C file layout) or float NCHW ``(N, 3, 32, 32)`` in
        ``[0, 1]``; a single image without the batch dimension is accepted too.  Any torch device.
    name : str
        One of the 19 names of :data:`~prunesafe.data.cifar_c.ALL_CORRUPTIONS`.
    severity : int
        1..5, with the CIFAR-10-C parameters of the reference (Hendrycks & Dietterich, 2019).
    seed : int, optional
        Non-negative seed; ``None`` means :data:`DEFAULT_SEED` (0).  Deterministic corruptions ignore it.
    start_index : int, default 0
        Global index of the first image (image ``k`` uses stream ``start_index + k``); lets a data set
        corrupted in pieces give the same result as in one call.
    indices : sequence of int, optional
        Global index of every image (overrides ``start_index``).
    frost_dir : path, optional
        Folder with the frost textures (``frost1.png`` ... ``frost6.jpg``), needed by ``"frost"`` only;
        ignored by the others.  See docs/corruptions.md for where to get them.
    chunk_size : int, default 256
        Images processed at a time (bounds memory; does not change the result).  Corruptions that are
        8-bit operations end to end (``jpeg_compression`` on uint8 input) use chunks of at least 2,048.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type, device, dtype and layout as ``images``.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), severity outside 1..5, wrong shape or layout,
        float values outside [0, 1].
    TypeError
        Unsupported type or dtype.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(4, 3, 32, 32)
    >>> y = corrupt(x, "brightness", 2)
    >>> y.shape, y.dtype, bool(y.mean() > x.mean())
    (torch.Size([4, 3, 32, 32]), torch.float32, True)
    """
    name = _check_name(name)
    severity = _check_severity(severity)
    if seed is None:
        seed = DEFAULT_SEED
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    spec = get_corruption(name)
    t, from_numpy = _as_tensor(images)
    in_dtype = t.dtype
    x, was_uint8, single = _validate_images(t)
    n = x.shape[0]
    idx = _resolve_indices(n, start_index, indices)
    options: dict[str, Any] = {}
    if "frost_dir" in spec.options:
        options["frost_dir"] = frost_dir
    if was_uint8:
        out = torch.empty((n, 32, 32, 3), dtype=torch.uint8, device=x.device)
    else:
        out = torch.empty((n, 3, 32, 32), dtype=in_dtype, device=x.device)
    direct = spec.uint8_fn if was_uint8 else None  # an 8-bit operation end to end (JPEG): no float round trip
    step = max(int(chunk_size), _UINT8_CHUNK) if direct else int(chunk_size)  # 8-bit sets: larger chunks
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        if direct is not None:
            out[lo:hi] = direct(x[lo:hi], severity)
            continue
        if was_uint8:  # uint8 NHWC -> float32 NCHW / 255, one chunk at a time (cache-sized)
            xc = torch.empty((hi - lo, 3, 32, 32), dtype=torch.float32, device=x.device)
            xc.copy_(x[lo:hi].permute(0, 3, 1, 2)).div_(255.0)
        else:
            xc = x[lo:hi].to(torch.float32)
        rng = ImageRNG(int(seed), name, severity, idx[lo:hi], device=x.device)
        y = spec.fn(xc, severity, rng, **options)
        if y.shape != xc.shape or y.dtype not in (torch.float32, torch.float64):
            raise RuntimeError(
                f"corruption {name!r} returned {y.dtype} {tuple(y.shape)}, expected float {tuple(xc.shape)}"
            )
        y = y.clamp(0.0, 255.0)
        if was_uint8:
            # float -> uint8 conversion truncates, i.e. floors these non-negative values (np.uint8's rule),
            # in the dtype the corruption computed in; written straight into the NHWC output
            out[lo:hi].permute(0, 3, 1, 2).copy_(y)
        else:
            out[lo:hi].copy_(y.div_(255.0))
    if single:
        out = out[0]
    return out.numpy() if from_numpy else out
