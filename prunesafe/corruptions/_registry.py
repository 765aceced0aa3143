"""Registry of the corruption functions: one entry per CIFAR-10-C corruption name.

Contract of a corruption function (every module of :mod:`prunesafe.corruptions` follows it)::

    fn(x: Tensor, severity: int, rng: ImageRNG, **options) -> Tensor

* ``x`` -- float32, NCHW, ``C == 3``, ``H == W == 32``, values in ``[0, 1]``, on any device.  It is the
  reference's ``np.array(img) / 255.`` (for uint8 input, exactly ``uint8 / 255``).  Never modified in place.
* ``severity`` -- int in 1..5 (already validated).
* ``rng`` -- :class:`~prunesafe.corruptions._random.ImageRNG` with one random stream per image; every draw
  has leading dimension ``N == x.shape[0]``.  Deterministic corruptions ignore it.
* ``options`` -- only the keyword options named in ``register_corruption(..., options=...)``
  (e.g. ``frost_dir``), passed by :func:`~prunesafe.corruptions.corrupt`.
* Returns float32 (or float64, floored as such) NCHW on ``x.device`` in the reference's value scale
  ``[0, 255]`` *before* its final ``np.uint8`` cast.  Values may stray outside ``[0, 255]``:
  :func:`~prunesafe.corruptions.corrupt` clamps to ``[0, 255]`` and then truncates (floor) for uint8
  output, exactly like ``np.uint8`` of the reference's non-negative floats; for float output it returns
  the clamped value divided by 255.

A corruption that the reference defines on 8-bit images end to end (JPEG: Pillow in, Pillow out) may
also register ``uint8_fn(x: Tensor, severity: int) -> Tensor``: uint8 NHWC ``(N, 32, 32, 3)`` in, uint8
NHWC out, on ``x.device``.  :func:`~prunesafe.corruptions.corrupt` uses it for uint8 input instead of the
float round trip; it must give exactly what ``fn`` gives after the uint8 conversion (tested).

Registration happens when the implementation modules are imported (see :data:`IMPLEMENTATION_MODULES`);
:func:`get_corruption` imports them on first use, so ``import prunesafe.corruptions._registry`` alone is
cheap and cycle-free.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prunesafe.data.cifar_c import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES

if TYPE_CHECKING:
    from torch import Tensor

    from prunesafe.corruptions._random import ImageRNG

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "IMPLEMENTATION_MODULES",
    "SEVERITIES",
    "CorruptionFn",
    "CorruptionSpec",
    "get_corruption",
    "register_corruption",
    "registered_corruptions",
]

#: Modules (under ``prunesafe.corruptions``) whose import registers corruptions.
IMPLEMENTATION_MODULES: tuple[str, ...] = ("noise", "digital", "blur", "geometric", "weather")


class CorruptionFn(Protocol):
    """Signature of a corruption function (see the module docstring for the contract)."""

    def __call__(self, x: Tensor, severity: int, rng: ImageRNG, /, **options: Any) -> Tensor: ...


@dataclass(frozen=True)
class CorruptionSpec:
    """A registered corruption: its function, whether it draws random numbers, its keyword options.

    ``uint8_fn`` is the optional direct uint8 NHWC -> uint8 NHWC path (see the module docstring).
    """

    name: str
    fn: Callable[..., Tensor]
    deterministic: bool
    options: tuple[str, ...] = ()
    uint8_fn: Callable[[Tensor, int], Tensor] | None = None


_REGISTRY: dict[str, CorruptionSpec] = {}
_loaded = False


def register_corruption(
    name: str,
    fn: Callable[..., Tensor],
    *,
    deterministic: bool,
    options: tuple[str, ...] = (),
    uint8_fn: Callable[[Tensor, int], Tensor] | None = None,
) -> Callable[..., Tensor]:
    """Register ``fn`` under one of the 19 CIFAR-10-C names; returns ``fn`` (usable as a decorator helper).

    Parameters
    ----------
    name : str
        One of :data:`ALL_CORRUPTIONS`.
    fn : callable
        The corruption function, ``fn(x, severity, rng, **options) -> Tensor``.
    deterministic : bool
        True when ``fn`` never draws from ``rng``.
    options : tuple of str, default ()
        Names of the keyword options ``fn`` accepts (e.g. ``("frost_dir",)``).
    uint8_fn : callable, optional
        ``uint8_fn(x, severity)``: the same corruption on uint8 NHWC images, returning uint8 NHWC, for
        deterministic corruptions that need no options; used by ``corrupt`` for uint8 input.

    Examples
    --------
    >>> from prunesafe.corruptions._registry import get_corruption
    >>> get_corruption("contrast").deterministic
    True
    """
    if name not in ALL_CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(ALL_CORRUPTIONS)}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if uint8_fn is not None and not callable(uint8_fn):
        raise TypeError(f"uint8_fn must be callable or None, got {type(uint8_fn).__name__}")
    if uint8_fn is not None and (not deterministic or options):
        raise ValueError("uint8_fn is only for deterministic corruptions without options")
    if name in _REGISTRY and _REGISTRY[name].fn is not fn:
        raise ValueError(f"corruption {name!r} is already registered (by {_REGISTRY[name].fn!r})")
    _REGISTRY[name] = CorruptionSpec(name, fn, bool(deterministic), tuple(options), uint8_fn)
    return fn


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in IMPLEMENTATION_MODULES:
        try:
            importlib.import_module(f"prunesafe.corruptions.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"prunesafe.corruptions.{module}":
                raise
    _loaded = True


def get_corruption(name: str) -> CorruptionSpec:
    """The registered :class:`CorruptionSpec` of ``name``; clear errors for unknown or missing ones.

    Examples
    --------
    >>> get_corruption("brightness").name
    'brightness'
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in ALL_CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(ALL_CORRUPTIONS)}")
    _load_all()
    if name not in _REGISTRY:
        raise NotImplementedError(
            f"corruption {name!r} has no implementation registered (implemented: "
            f"{', '.join(registered_corruptions())})"
        )
    return _REGISTRY[name]


def registered_corruptions() -> tuple[str, ...]:
    """Names with a registered implementation, in the reference order of :data:`ALL_CORRUPTIONS`.

    Examples
    --------
    >>> "gaussian_noise" in registered_corruptions()
    True
    """
    _load_all()
    return tuple(n for n in ALL_CORRUPTIONS if n in _REGISTRY)
