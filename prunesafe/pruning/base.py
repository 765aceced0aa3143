"""The pruner protocol and the registry that ``prune_model`` dispatches on.

A pruning method is a subclass of :class:`Pruner` registered under a name with
:func:`register_pruner`.  ``prune_model(model, name, ratio, **options)`` looks the
class up, builds it as ``cls(ratio, **options)`` and calls :meth:`Pruner.prune` on a
copy of the model (or the model itself when ``inplace=True``).

Examples
--------
>>> import torch
>>> from torch import nn
>>> from prunesafe.pruning.base import Pruner, register_pruner, registered_pruners
>>> @register_pruner("noop-doc-example")
... class NoOp(Pruner):
...     def prune(self, model, *, example_inputs=None):
...         return model
>>> "noop-doc-example" in registered_pruners()
True
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from torch import nn

__all__ = ["Pruner", "get_pruner", "register_pruner", "registered_pruners", "unregister_pruner"]

_REGISTRY: dict[str, type[Pruner]] = {}

P = TypeVar("P", bound="type[Pruner]")


class Pruner(abc.ABC):
    """Base class of every pruning method.

    Parameters
    ----------
    ratio : float
        Fraction in ``[0, 1)`` of the method's unit (weights, filters, BN channels, ...) to remove.

    Notes
    -----
    Subclasses implement :meth:`prune`, which modifies ``model`` in place and returns it
    (or returns a replacement), and sets :attr:`achieved_ratio` and :attr:`pruned_modules`.
    The class attribute :attr:`unit` names what ``ratio`` counts.  ``prune_model`` takes care
    of copying, so a pruner may assume it owns the model.  Extra keyword options a subclass accepts are passed
    through ``prune_model(..., **options)``.
    """

    #: Name under which the class is registered (set by :func:`register_pruner`).
    name: ClassVar[str] = ""
    #: Whether :meth:`prune` needs ``example_inputs`` (structural methods trace the model).
    requires_example_inputs: ClassVar[bool] = False
    #: What ``ratio`` counts, for reports ("weights", "filters", "channels", ...).
    unit: ClassVar[str] = "weights"

    def __init__(self, ratio: float) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise TypeError(f"ratio must be a float in [0, 1), got {type(ratio).__name__}")
        ratio = float(ratio)
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1) (the fraction to remove), got {ratio}")
        self.ratio = ratio
        #: Set by :meth:`prune`: the fraction of the method's unit actually removed.
        self.achieved_ratio: float | None = None
        #: Set by :meth:`prune`: qualified names of the modules the method pruned.
        self.pruned_modules: list[str] = []

    @abc.abstractmethod
    def prune(self, model: nn.Module, *, example_inputs: Any = None) -> nn.Module:
        """Prune ``model`` (which the pruner may modify) and return the pruned model."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ratio={self.ratio})"


def register_pruner(name: str, *, overwrite: bool = False) -> Callable[[P], P]:
    """Class decorator registering a :class:`Pruner` subclass under ``name``.

    Parameters
    ----------
    name : str
        The ``method`` string users pass to ``prune_model``.
    overwrite : bool, default False
        Replace an existing registration instead of raising ``ValueError``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"pruner name must be a non-empty str, got {name!r}")

    def decorator(cls: P) -> P:
        if not (isinstance(cls, type) and issubclass(cls, Pruner)):
            raise TypeError(f"register_pruner expects a Pruner subclass, got {cls!r}")
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not cls:
            raise ValueError(
                f"a pruner named {name!r} is already registered ({_REGISTRY[name].__qualname__}); "
                "pass overwrite=True to replace it"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def unregister_pruner(name: str) -> None:
    """Remove a registration (mainly for tests and notebooks)."""
    _REGISTRY.pop(name, None)


def registered_pruners() -> tuple[str, ...]:
    """Names accepted by ``prune_model(method=...)``, sorted."""
    return tuple(sorted(_REGISTRY))


def get_pruner(name: str) -> type[Pruner]:
    """Return the pruner class registered as ``name`` or raise ``ValueError`` listing the valid names."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a str naming a pruner, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown pruning method {name!r}; "
            f"registered methods: {', '.join(registered_pruners()) or 'none'}"
        ) from None


