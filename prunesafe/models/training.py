"""Training and fine-tuning with the study's recipes: :func:`fit`, :func:`evaluate`, :class:`TrainConfig`.

``fit`` is deliberately small: SGD with momentum, a step learning-rate schedule, optional
random-crop + horizontal-flip augmentation done on whole batches of tensors (no per-image
PIL work), a seeded shuffling/augmentation stream, and a per-epoch history.  It never touches
the ``torch.nn.utils.prune`` machinery, so masks of unstructured pruning survive fine-tuning:
the optimiser updates ``weight_orig`` and the forward pre-hook keeps multiplying it by
``weight_mask``.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from prunesafe._utils import module_device
from prunesafe.models.normalization import Normalize

__all__ = [
    "BASELINE",
    "FINETUNE",
    "RECIPES",
    "DataLike",
    "History",
    "TrainConfig",
    "evaluate",
    "fit",
    "random_crop_flip",
]

#: ``(images, labels)`` arrays/tensors, a ``Dataset`` of ``(image, label)`` pairs, or a ``DataLoader``.
DataLike: TypeAlias = "tuple[Any, Any] | list[Any] | Dataset[Any] | DataLoader[Any]"
RecipeName = Literal["finetune", "baseline"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training recipe (frozen; derive variants with ``dataclasses.replace``).

    Parameters
    ----------
    epochs : int
        Number of passes over the training data.
    batch_size : int
        Mini-batch size (ignored when ``fit`` is given a ``DataLoader``).
    lr : float
        Initial learning rate of SGD.
    momentum : float, default 0.9
    weight_decay : float, default 1e-4
        L2 penalty of SGD (applied to every trainable parameter, BN included, as in the references).
    nesterov : bool, default False
    milestones : tuple of int, default ()
        Epochs (0-based: the epoch index at which the new rate starts) where the learning rate is
        multiplied by ``gamma``.
    gamma : float, default 0.1
    augment : bool, default True
        Random 32x32 crop of the image zero-padded by ``crop_padding`` pixels plus a horizontal
        flip with probability 1/2, applied to whole batches on the training device.  ``fit``
        applies it to ``(images, labels)`` array inputs only (a ``Dataset``/``DataLoader`` brings
        its own transforms) unless ``fit(..., augment=True)``.
    crop_padding : int, default 4
    label_smoothing : float, default 0.0
        Passed to ``torch.nn.CrossEntropyLoss``.
    eval_batch_size : int, default 500
        Batch size used for ``val_data``.

    Examples
    --------
    >>> import dataclasses
    >>> short = dataclasses.replace(FINETUNE, epochs=5, lr=5e-4)
    >>> short.epochs, short.batch_size, short.lr
    (5, 64, 0.0005)
    """

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: bool = True
    crop_padding: int = 4
    label_smoothing: float = 0.0
    eval_batch_size: int = 500

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        if (
            isinstance(self.crop_padding, bool)
            or not isinstance(self.crop_padding, int)
            or self.crop_padding < 0
        ):
            raise ValueError(f"TrainConfig.crop_padding must be an int >= 0, got {self.crop_padding!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be a positive finite number, got {self.lr!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"TrainConfig.momentum must be in [0, 1), got {self.momentum!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("TrainConfig.nesterov=True needs momentum > 0")
        if not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"TrainConfig.gamma must be in (0, 1], got {self.gamma!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        milestones = tuple(self.milestones)
        if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in milestones) or list(
            milestones
        ) != sorted(set(milestones)):
            raise ValueError(
                f"TrainConfig.milestones must be strictly increasing positive ints, got {self.milestones!r}"
            )
        object.__setattr__(self, "milestones", milestones)

    def lr_at(self, epoch: int) -> float:
        """Learning rate used during 0-based ``epoch``.

        Examples
        --------
        >>> [BASELINE.lr_at(e) for e in (0, 79, 80, 119, 120)]
        [0.1, 0.1, 0.010000000000000002, 0.010000000000000002, 0.0010000000000000002]
        """
        return float(self.lr * self.gamma ** sum(1 for m in self.milestones if epoch >= m))


#: Fine-tuning after pruning: SGD(momentum 0.9, weight decay 1e-4), batch 64, constant lr 1e-3, 40 epochs,
#: crop + flip augmentation.
FINETUNE = TrainConfig(epochs=40, batch_size=64, lr=1e-3, momentum=0.9, weight_decay=1e-4, milestones=())
#: Training from scratch (He et al. 2016): 160 epochs, batch 128, lr 0.1 divided by 10 at epochs 80 and 120,
#: SGD(momentum 0.9, weight decay 1e-4), crop + flip augmentation.
BASELINE = TrainConfig(
    epochs=160, batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4, milestones=(80, 120), gamma=0.1
)
#: Named presets accepted by ``fit(recipe=...)``.
RECIPES: Mapping[str, TrainConfig] = MappingProxyType({"finetune": FINETUNE, "baseline": BASELINE})


class History(list[dict[str, float]]):
    """Per-epoch records returned by :func:`fit` (a list of dicts, one per epoch).

    Keys: ``epoch`` (1-based), ``lr``, ``train_loss``, ``train_acc``, ``time_s``, plus
    ``train_reg`` with a ``regularizer`` and ``val_loss`` / ``val_acc`` with ``val_data``.

    Examples
    --------
    >>> h = History([{"epoch": 1, "train_loss": 0.5}])
    >>> h.column("train_loss")
    [0.5]
    """

    def column(self, key: str) -> list[float]:
        """Values of one key across epochs."""
        return [row[key] for row in self]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` with one row per epoch (needs pandas, an optional dependency)."""
        pandas = importlib.import_module("pandas")
        return pandas.DataFrame(list(self))

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the history as CSV (readable by ``pandas.read_csv``); no pandas needed."""
        keys: list[str] = []
        for row in self:
            keys.extend(k for k in row if k not in keys)
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self)


# ----------------------------------------------------------------------------------------------------
# data handling


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        if not array.flags.writeable:
            # Read-only / memory-mapped arrays are only ever read (batches are gathered copies).
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
                return torch.from_numpy(array)
        return torch.from_numpy(array)
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(value).__name__}")


def _channels_first(images: torch.Tensor, name: str) -> torch.Tensor:
    """Return a NCHW view of a 4-D batch given as NCHW or NHWC (channel dimension of size <= 4)."""
    if images.ndim != 4:
        raise ValueError(
            f"{name} must be a 4-D batch (N, H, W, C) or (N, C, H, W), got shape {tuple(images.shape)}"
        )
    first, last = images.shape[1] <= 4, images.shape[-1] <= 4
    if last and not first:
        return images.permute(0, 3, 1, 2)
    if first and not last:
        return images
    if first and last:
        raise ValueError(
            f"{name} has an ambiguous layout {tuple(images.shape)} (dims 1 and 3 could both be channels); "
            "pass images larger than 4x4"
        )
    # No small dimension (e.g. many-channel inputs of a custom model): the torch convention, NCHW.
    return images


def _as_float_batch(images: torch.Tensor, name: str, dtype: torch.dtype, check_range: bool) -> torch.Tensor:
    """uint8 (0-255) or float ([0, 1]) images in NCHW or NHWC -> float NCHW in [0, 1]."""
    images = _channels_first(images, name)
    if images.dtype == torch.uint8:
        return images.to(dtype).div_(255.0)
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must hold uint8 (0-255) or floating-point ([0, 1]) pixels, got {images.dtype}"
        )
    images = images.to(dtype)
    if check_range and images.numel():
        _check_unit_range(float(images.min()), float(images.max()), name)
    return images


def _check_unit_range(low: float, high: float, name: str) -> None:
    if high > 1.0 + 1e-3:
        raise ValueError(
            f"{name} has float pixels up to {high:.3g}, but the model expects inputs in [0, 1] "
            "(it normalises them itself). Fix: divide by 255, or pass the uint8 images."
        )
    if low < -1e-3:
        raise ValueError(
            f"{name} has negative pixels (min {low:.3g}): it looks normalised already, but the model "
            "normalises inputs itself (model.normalize). Fix: pass images in [0, 1] (or uint8), or build "
            "the model with mean=None, std=None."
        )


def _as_labels(labels: Any, name: str) -> torch.Tensor:
    tensor = _to_tensor(labels, name)
    if tensor.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices, got shape {tuple(tensor.shape)}")
    if tensor.is_floating_point() or tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must be integer class indices, got {tensor.dtype}")
    return tensor.long()


class _ArraySource:
    """In-memory ``(images, labels)`` pair: batches are gathered from tensors, no Dataset/collate overhead."""

    def __init__(self, data: tuple[Any, Any], name: str, check_range: bool) -> None:
        if len(data) != 2:
            raise ValueError(f"{name} as a sequence must be (images, labels), got {len(data)} items")
        images = _to_tensor(data[0], f"{name} images")
        labels = _as_labels(data[1], f"{name} labels")
        _channels_first(images, f"{name} images")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{name}: {images.shape[0]} images but {labels.shape[0]} labels; "
                "they must have the same length"
            )
        if images.shape[0] == 0:
            raise ValueError(f"{name} is empty")
        if labels.min() < 0:
            raise ValueError(f"{name} labels must be >= 0, got min {int(labels.min())}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"{name} images must be uint8 (0-255) or float ([0, 1]), got {images.dtype}")
        if check_range and images.is_floating_point():
            _check_unit_range(float(images.min()), float(images.max()), f"{name} images")
        self.images = images
        self.labels = labels
        self.name = name

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batches(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int | None]]:
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else None
        for start in range(0, n, batch_size):
            if order is None:
                images = self.images[start : start + batch_size]
                labels = self.labels[start : start + batch_size]
            else:
                idx = order[start : start + batch_size]
                images, labels = self.images[idx], self.labels[idx]
            yield _to_device(images, labels, device)

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size)


def _to_device(
    images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """Move a batch to ``device``; the largest label is read on the CPU first (no device sync)."""
    top = None
    if labels.device.type == "cpu" and labels.numel():
        low, high = labels.aminmax()
        if int(low) < 0:
            raise ValueError(f"labels must be >= 0, got {int(low)}")
        top = int(high)
    return images.to(device, non_blocking=True), labels.to(device, non_blocking=True), top


def _unpack(batch: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, Mapping):
        keys = [k for k in ("image", "images", "img", "x", "input") if k in batch]
        lkeys = [k for k in ("label", "labels", "target", "targets", "y") if k in batch]
        if keys and lkeys:
            return _to_tensor(batch[keys[0]], f"{name} images"), _as_labels(batch[lkeys[0]], f"{name} labels")
    if isinstance(batch, Sequence) and len(batch) >= 2:
        return _to_tensor(batch[0], f"{name} images"), _as_labels(batch[1], f"{name} labels")
    raise TypeError(f"{name} must yield (images, labels) batches, got {type(batch).__name__}")


class _LoaderSource:
    def __init__(self, loader: Iterable[Any], name: str) -> None:
        self.loader = loader
        self.name = name

    def batches(self, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor, int | None]]:
        for batch in self.loader:
            images, labels = _unpack(batch, self.name)
            yield _to_device(images, labels, device)

    def num_batches(self) -> int | None:
        try:
            return len(self.loader)  # type: ignore[arg-type]
        except TypeError:
            return None


def _make_source(data: Any, name: str, check_range: bool) -> _ArraySource | DataLoader[Any] | Dataset[Any]:
    if isinstance(data, (DataLoader, Dataset, _ArraySource)):
        return data
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"{name} as a tuple must be (images, labels), got {len(data)} items")
        return _ArraySource((data[0], data[1]), name, check_range)
    raise TypeError(
        f"{name} must be an (images, labels) tuple of numpy arrays / tensors, a torch Dataset or a "
        "DataLoader, "
        f"got {type(data).__name__}"
    )


def _iterate(
    source: _ArraySource | DataLoader[Any] | Dataset[Any],
    name: str,
    batch_size: int,
    shuffle_generator: torch.Generator | None,
    device: torch.device,
) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor, int | None]], int | None]:
    if isinstance(source, _ArraySource):
        return source.batches(batch_size, shuffle_generator, device), source.num_batches(batch_size)
    if isinstance(source, DataLoader):
        loader: DataLoader[Any] = source
    else:
        shuffle = shuffle_generator is not None and not isinstance(source, IterableDataset)
        loader = DataLoader(source, batch_size=batch_size, shuffle=shuffle, generator=shuffle_generator)
    wrapped = _LoaderSource(loader, name)
    return wrapped.batches(device), wrapped.num_batches()


def _num_batches(source: _ArraySource | DataLoader[Any] | Dataset[Any], batch_size: int) -> int | None:
    if isinstance(source, _ArraySource):
        return source.num_batches(batch_size)
    try:
        n = len(source)  # type: ignore[arg-type]
    except TypeError:
        return None
    return n if isinstance(source, DataLoader) else math.ceil(n / batch_size)


def random_crop_flip(
    images: torch.Tensor, padding: int = 4, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Batched random crop (zero padding of ``padding`` pixels) and horizontal flip with probability 1/2.

    Equivalent per image to ``RandomCrop(size, padding) + RandomHorizontalFlip()`` of torchvision,
    but done for the whole NCHW batch with a single gather on the batch's device.  Random numbers
    come from ``generator`` (a CPU generator) so the result does not depend on the device.

    Parameters
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` batch.
    padding : int, default 4
    generator : torch.Generator, optional

    Returns
    -------
    torch.Tensor
        Same shape and dtype.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(8, 3, 32, 32)
    >>> random_crop_flip(x, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([8, 3, 32, 32])
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    if n == 0:
        return images.clone()
    device = images.device
    flip, offsets = flip.to(device), offsets.to(device)
    # One gather from the unpadded batch (no padded copy): the flip is folded into each sample's
    # column order, and positions that fall into the zero border are cleared afterwards.
    cols = torch.arange(w, device=device).expand(n, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + offsets[1, :, None] - padding
    rows = torch.arange(h, device=device)[None, :] + offsets[0, :, None] - padding
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    index = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]
    out = images.reshape(n, c, h * w).gather(2, index.reshape(n, 1, h * w).expand(n, c, h * w))
    if padding:
        out.masked_fill_(~inside.reshape(n, 1, h * w), 0)
    return out.reshape(n, c, h, w)


# ----------------------------------------------------------------------------------------------------
# fit / evaluate


def _model_dtype(model: nn.Module) -> torch.dtype:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _expects_unit_range(model: nn.Module) -> bool:
    return any(isinstance(m, Normalize) for m in model.modules())


def _resolve_config(recipe: RecipeName | TrainConfig, epochs: int | None) -> TrainConfig:
    if isinstance(recipe, TrainConfig):
        config = recipe
    elif isinstance(recipe, str) and recipe in RECIPES:
        config = RECIPES[recipe]
    else:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)} or a TrainConfig, got {recipe!r}")
    if epochs is None or epochs == config.epochs:
        return config
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int or None (use the recipe's), got {epochs!r}")
    # Keep the schedule's shape: milestones are rescaled to the new length.
    scaled = sorted({max(1, round(m * epochs / config.epochs)) for m in config.milestones})
    return dataclasses.replace(config, epochs=epochs, milestones=tuple(m for m in scaled if m < epochs))


def _check_labels(logits: torch.Tensor, top: int | None, name: str) -> None:
    if top is not None and top >= logits.shape[1]:
        raise ValueError(
            f"{name} contains label {top} but the model has {logits.shape[1]} outputs; "
            "build the model with a matching num_classes"
        )


def _check_device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    if device is None:
        return module_device(model)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be a torch.device or a string such as 'cpu' or 'cuda:0', got {device!r}"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; pass device='cpu' (or None)")
    return dev


def _place(
    model: nn.Module, device: str | torch.device | None, data: Any, name: str
) -> tuple[torch.device, torch.dtype, bool, _ArraySource | DataLoader[Any] | Dataset[Any]]:
    """Move ``model`` to the checked device and wrap ``data`` for it (shared by fit and evaluate)."""
    dev = _check_device(device, model)
    model.to(dev)
    check_range = _expects_unit_range(model)
    return dev, _model_dtype(model), check_range, _make_source(data, name, check_range)


def evaluate(
    model: nn.Module,
    data: DataLike,
    *,
    batch_size: int = 500,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Mean cross-entropy and top-1 accuracy of ``model`` on ``data`` (eval mode, ``torch.inference_mode``).

    Parameters
    ----------
    model : torch.nn.Module
    data : tuple, Dataset or DataLoader
        Same forms as ``fit``'s ``train_data``.
    batch_size : int, default 500
        Ignored for a ``DataLoader``.
    device : str or torch.device, optional
        Default: the model's device.  The model is moved there.
    progress : bool, default False
        Show a tqdm bar.

    Returns
    -------
    dict
        ``{"loss": float, "acc": float, "n": int}`` with ``acc`` in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from prunesafe.models import cifar_resnet
    >>> images = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    >>> sorted(evaluate(cifar_resnet(20), (images, np.zeros(4, dtype=np.int64))))
    ['acc', 'loss', 'n']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    dev, dtype, check_range, source = _place(model, device, data, "data")
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.long, device=dev)
    count = 0
    batches, total = _iterate(source, "data", batch_size, None, dev)
    try:
        with torch.inference_mode():
            for images, labels, top in tqdm(
                batches, total=total, disable=not progress, desc="evaluate", leave=False
            ):
                x = _as_float_batch(
                    images, "data images", dtype, check_range and not isinstance(source, _ArraySource)
                )
                logits = model(x)
                _check_labels(logits, top, "data")
                total_loss += F.cross_entropy(logits.float(), labels, reduction="sum").double()
                correct += (logits.argmax(1) == labels).sum()
                count += int(labels.shape[0])
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("data yielded no samples")
    return {"loss": float(total_loss) / count, "acc": int(correct) / count, "n": count}


def fit(
    model: nn.Module,
    train_data: DataLike,
    *,
    recipe: RecipeName | TrainConfig = "finetune",
    epochs: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    val_data: DataLike | None = None,
    progress: bool = True,
    regularizer: Callable[[nn.Module], torch.Tensor] | None = None,
    params_hook: Callable[[nn.Module], None] | None = None,
    augment: bool | None = None,
) -> History:
    """Train ``model`` in place with SGD and one of the study's recipes; return the per-epoch history.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place.  Models with ``torch.nn.utils.prune`` masks keep them: the pruned
        weights stay exactly zero.
    train_data : tuple, Dataset or DataLoader
        ``(images, labels)`` numpy arrays or tensors — images uint8 ``(N, H, W, C)`` (the CIFAR
        ``.npy`` layout) or float in ``[0, 1]`` ``(N, C, H, W)``; labels int ``(N,)`` — or a map-style
        ``Dataset`` yielding ``(image, label)`` (batched with ``recipe.batch_size`` and shuffled by the
        seeded generator), or a ``DataLoader`` used as given (its own batch size and sampler).
        Pixels are scaled to ``[0, 1]``; the model normalises them itself (``model.normalize``).
    recipe : {"finetune", "baseline"} or TrainConfig, default "finetune"
        A named preset (:data:`FINETUNE`, :data:`BASELINE`) or your own :class:`TrainConfig`.
    epochs : int, optional
        Override the recipe's epoch count; the learning-rate milestones are rescaled proportionally
        (e.g. ``"baseline"`` with ``epochs=16`` decays at epochs 8 and 12).
    device : str or torch.device, optional
        Where to train; default the model's current device.  The model and every batch are moved there.
    seed : int, default 0
        Seeds shuffling, augmentation and the global torch RNG inside ``fit`` (dropout, samplers of a
        given ``DataLoader``); the caller's RNG state is restored afterwards.  The same seed on the same
        device and thread count gives identical weights.
    val_data : tuple, Dataset or DataLoader, optional
        Evaluated after every epoch (``val_loss``, ``val_acc``).
    progress : bool, default True
        Show a tqdm bar over all steps, with the last epoch's loss / accuracy.
    regularizer : callable, optional
        ``regularizer(model) -> scalar tensor`` added to the mini-batch loss before ``backward``, e.g.
        an L1 penalty ``s * sum(|bn.weight|)`` for network slimming.  Its mean per epoch is logged as
        ``train_reg``.
    params_hook : callable, optional
        ``params_hook(model)`` called after ``loss.backward()`` and before ``optimizer.step()`` every step,
        to edit gradients in place (e.g. the sub-gradient ``s * sign(bn.weight)`` of network slimming).
    augment : bool, optional
        Apply the recipe's random crop + flip to each training batch.  Default (``None``): only for
        ``(images, labels)`` arrays/tensors and only if the recipe says so (``recipe.augment``); a
        ``Dataset`` or ``DataLoader`` is used as given, since it usually brings its own transforms.
        ``True`` forces the recipe's augmentation (with its ``crop_padding``) on any input, ``False``
        turns it off.

    Returns
    -------
    History
        One dict per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_acc``, ``time_s`` (and ``train_reg``,
        ``val_loss``, ``val_acc`` when applicable).  ``history.to_pandas()`` gives a DataFrame.

    Raises
    ------
    TypeError, ValueError
        Unsupported data, bad shapes/ranges, labels beyond the classifier, unknown recipe.
    FloatingPointError
        The training loss became NaN/inf (lower the learning rate).

    Examples
    --------
    >>> import dataclasses, numpy as np
    >>> from prunesafe.models import cifar_resnet
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)  # uint8 NHWC, like the .npy files
    >>> labels = rng.integers(0, 10, 32)
    >>> quick = dataclasses.replace(FINETUNE, epochs=1, batch_size=16)
    >>> history = fit(cifar_resnet(8), (images, labels), recipe=quick, progress=False)
    >>> [sorted(row) for row in history]
    [['epoch', 'lr', 'time_s', 'train_acc', 'train_loss']]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    config = _resolve_config(recipe, epochs)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    for name, fn in (("regularizer", regularizer), ("params_hook", params_hook)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable(model) or None, got {type(fn).__name__}")
    if augment is not None and not isinstance(augment, bool):
        raise TypeError(f"augment must be True, False or None, got {type(augment).__name__}")
    dev, dtype, check_range, source = _place(model, device, train_data, "train_data")
    if augment is None:  # a Dataset / DataLoader brings its own transforms: never augment it twice
        augment = config.augment and isinstance(source, _ArraySource)
    if val_data is not None:  # fail before training, not after the first epoch
        _make_source(val_data, "val_data", check_range)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (all requires_grad=False)")
    optimizer = torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    generator = torch.Generator().manual_seed(seed)
    history = History()
    was_training = model.training
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    warned_single = False
    fork_devices = []
    if dev.type == "cuda":
        fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
    per_epoch = _num_batches(source, config.batch_size)
    steps = per_epoch * config.epochs if per_epoch is not None else None
    bar = tqdm(total=steps, disable=not progress, desc="fit", unit="batch", dynamic_ncols=True)
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            for epoch in range(config.epochs):
                start = time.perf_counter()
                lr = config.lr_at(epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                model.train()
                loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
                reg_sum = torch.zeros((), dtype=torch.float64, device=dev)
                correct = torch.zeros((), dtype=torch.long, device=dev)
                seen = 0
                batches, _ = _iterate(source, "train_data", config.batch_size, generator, dev)
                for images, labels, top in batches:
                    if labels.shape[0] == 1 and has_batch_norm:
                        # BatchNorm cannot train on one sample (a ragged last batch); skip it.
                        if not warned_single:
                            warnings.warn(
                                "fit skips training batches of a single image (BatchNorm needs >= 2); "
                                "change batch_size or the number of images to use them",
                                stacklevel=2,
                            )
                            warned_single = True
                        continue
                    if augment:  # on the raw (often uint8) batch: 4x less memory traffic
                        images = random_crop_flip(
                            _channels_first(images, "train_data images"),
                            config.crop_padding,
                            generator=generator,
                        )
                    x = _as_float_batch(
                        images,
                        "train_data images",
                        dtype,
                        check_range and not isinstance(source, _ArraySource),
                    )
                    logits = model(x)
                    _check_labels(logits, top, "train_data")
                    loss = criterion(logits, labels)
                    total = loss
                    if regularizer is not None:
                        reg = regularizer(model)
                        if not isinstance(reg, torch.Tensor) or reg.numel() != 1:
                            raise TypeError("regularizer(model) must return a scalar torch.Tensor")
                        total = loss + reg.reshape(())
                        reg_sum += reg.detach().double().reshape(()) * labels.shape[0]
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    if params_hook is not None:
                        params_hook(model)
                    optimizer.step()
                    loss_sum += loss.detach().double() * labels.shape[0]
                    correct += (logits.detach().argmax(1) == labels).sum()
                    seen += int(labels.shape[0])
                    bar.update(1)
                if seen == 0:
                    raise ValueError("train_data yielded no samples")
                row: dict[str, float] = {
                    "epoch": epoch + 1,
                    "lr": lr,
                    "train_loss": float(loss_sum) / seen,
                    "train_acc": int(correct) / seen,
                }
                if not math.isfinite(row["train_loss"]) or not math.isfinite(float(reg_sum)):
                    raise FloatingPointError(
                        f"training loss is {row['train_loss']} (regulariser {float(reg_sum) / seen}) "
                        "in epoch "
                        f"{epoch + 1} (lr={lr}); "
                        "lower the learning rate or check the data"
                    )
                if regularizer is not None:
                    row["train_reg"] = float(reg_sum) / seen
                if val_data is not None:
                    result = evaluate(model, val_data, batch_size=config.eval_batch_size, device=dev)
                    row["val_loss"], row["val_acc"] = result["loss"], result["acc"]
                row["time_s"] = time.perf_counter() - start
                history.append(row)
                bar.set_postfix(
                    {k: f"{row[k]:.4g}" for k in ("epoch", "train_loss", "train_acc", "val_acc") if k in row}
                )
    finally:
        bar.close()
        model.train(was_training)
    return history
