"""Load checkpoints into prunesafe models safely (``torch.load(weights_only=True)``) with readable errors."""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["CheckpointMismatchError", "extract_state_dict", "load_weights"]

#: Keys under which training scripts commonly nest the state dict, tried in this order.
WRAPPER_KEYS: tuple[str, ...] = (
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "weights",
    "params",
)
#: Key prefixes added by wrappers: DataParallel / DistributedDataParallel, ``torch.compile``.
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
_MAX_LISTED = 12


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not match the model.

    Attributes
    ----------
    missing : list of str
        Model keys absent from the checkpoint.
    unexpected : list of str
        Checkpoint keys the model does not have.
    mismatched : list of tuple
        ``(key, checkpoint_shape, model_shape)`` for keys present in both with different shapes.

    Examples
    --------
    >>> err = CheckpointMismatchError("bad", missing=["fc.bias"], unexpected=[], mismatched=[])
    >>> err.missing
    ['fc.bias']
    """

    def __init__(
        self,
        message: str,
        *,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def extract_state_dict(checkpoint: object) -> dict[str, torch.Tensor]:
    """Find the state dict in a loaded checkpoint and strip wrapper prefixes (``module.``, ``_orig_mod.``).

    Accepts a bare state dict or a dict that nests one under a common key
    (``state_dict``, ``model_state_dict``, ``model``, ``net``, ``network``, ``weights``, ``params``),
    possibly several levels deep.  Non-tensor entries next to it (epoch, accuracy, optimizer
    state) are ignored.

    Parameters
    ----------
    checkpoint : object
        What ``torch.load`` returned.

    Returns
    -------
    dict of str to Tensor

    Raises
    ------
    ValueError
        If no state dict can be found; the message lists the checkpoint's top-level keys.

    Examples
    --------
    >>> import torch
    >>> sd = extract_state_dict({"epoch": 3, "state_dict": {"module.fc.weight": torch.zeros(2, 2)}})
    >>> list(sd)
    ['fc.weight']
    """
    found = _find_state_dict(checkpoint, depth=0)
    if found is None:
        if isinstance(checkpoint, Mapping):
            summary = ", ".join(
                f"{k!r}: {type(v).__name__}" for k, v in list(checkpoint.items())[:_MAX_LISTED]
            )
            detail = f"a dict with keys {{{summary}}}"
        else:
            detail = f"an object of type {type(checkpoint).__name__}"
        raise ValueError(
            f"no state dict found in the checkpoint: it is {detail}. Expected a mapping of parameter names "
            f"to tensors, bare or under one of {list(WRAPPER_KEYS)}. Fix: save with "
            "torch.save({'state_dict': model.state_dict()}, path), or pass the loaded state dict itself."
        )
    state = dict(found)
    for _ in range(len(WRAPPER_PREFIXES) * 2):
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _find_state_dict(obj: object, depth: int) -> Mapping[str, torch.Tensor] | None:
    if _is_state_dict(obj):
        return obj  # type: ignore[return-value]
    if not isinstance(obj, Mapping) or depth >= 3:
        return None
    for key in WRAPPER_KEYS:
        if key in obj:
            found = _find_state_dict(obj[key], depth + 1)
            if found is not None:
                return found
    return None


def _strip_extra_prefix(
    state: dict[str, torch.Tensor], expected: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """Strip a single leading ``<name>.`` shared by every key when that makes the keys match the model."""
    if not state or set(state) & set(expected):
        return state
    first = next(iter(state)).split(".", 1)[0] + "."
    if all(k.startswith(first) for k in state):
        stripped = {k[len(first) :]: v for k, v in state.items()}
        if set(stripped) & set(expected):
            return stripped
    return state


def _stage_blocks(keys: list[str]) -> tuple[dict[int, int], bool]:
    """Blocks per ``layer<k>`` stage and whether the blocks have a third conv (bottleneck)."""
    blocks: dict[int, set[int]] = {}
    bottleneck = False
    for key in keys:
        match = re.match(r"layer(\d+)\.(\d+)\.(.*)", key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
            bottleneck = bottleneck or match.group(3).startswith("conv3.")
    return {stage: len(ids) for stage, ids in sorted(blocks.items())}, bottleneck


def _hints(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    missing: list[str],
    unexpected: list[str],
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
) -> list[str]:
    hints: list[str] = []
    ckpt_blocks, ckpt_bottleneck = _stage_blocks(list(state))
    model_blocks, model_bottleneck = _stage_blocks(list(expected))
    if ckpt_blocks and model_blocks and (ckpt_blocks != model_blocks or ckpt_bottleneck != model_bottleneck):
        per = sorted(set(ckpt_blocks.values()))
        desc = "/".join(str(v) for v in ckpt_blocks.values())
        kind = "bottleneck" if ckpt_bottleneck else "basic"
        if len(per) == 1 and len(ckpt_blocks) == 3:
            depth = (9 if ckpt_bottleneck else 6) * per[0] + 2
            if "bn.weight" in state and "bn1.weight" not in state:
                builder = f'cifar_preact_resnet({depth}, block="{kind}")'
            elif ckpt_bottleneck:
                builder = f"cifar_bottleneck_resnet({depth})"
            else:
                builder = f"cifar_resnet({depth})"
            hints.append(
                f"the checkpoint is a depth-{depth} ResNet with {kind} blocks ({desc} per stage), "
                "the model has "
                f"{'bottleneck' if model_bottleneck else 'basic'} blocks "
                f"({'/'.join(str(v) for v in model_blocks.values())}): build it with {builder}"
            )
        else:
            hints.append(
                f"the checkpoint has {desc} {kind} blocks per stage; the model has a different layout"
            )
    if any(k.endswith("_orig") or k.endswith("_mask") for k in missing) and not any(
        k.endswith("_orig") for k in state
    ):
        hints.append(
            "the model carries torch.nn.utils.prune reparametrisations (weight_orig/weight_mask): load the "
            "weights before pruning, or call torch.nn.utils.prune.remove(module, 'weight') first"
        )
    if any(k.endswith("_orig") or k.endswith("_mask") for k in unexpected):
        hints.append(
            "the checkpoint was saved from a model pruned with torch.nn.utils.prune "
            "(weight_orig/weight_mask): "
            "prune the model the same way before loading, or save after torch.nn.utils.prune.remove"
        )
    if expected and all(k.startswith("module.") for k in expected) and missing:
        hints.append("the model is wrapped (DataParallel/DDP): pass model.module to load_weights")
    modules = dict(model.named_modules())
    linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
    for key, ckpt_shape, model_shape in mismatched:
        owner = key.rsplit(".", 1)[0]
        if linears and owner == linears[-1] and ckpt_shape[:1] != model_shape[:1]:
            hints.append(
                f"the classifier {owner!r} has {ckpt_shape[0]} outputs in the checkpoint and "
                f"{model_shape[0]} in "
                f"the model: build the model with num_classes={ckpt_shape[0]}"
            )
            break
    if mismatched and not hints:
        hints.append(
            "shape mismatches usually mean a different width/architecture (or a structurally pruned "
            "checkpoint, which needs the pruned architecture rebuilt first)"
        )
    return hints


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {item}" for item in shown) + more


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str] | Mapping[str, Any],
    *,
    strict: bool = True,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Load a checkpoint into ``model`` through ``torch.load(weights_only=True)`` and return the model.

    Understands the public CIFAR checkpoint format (a dict with ``state_dict`` whose keys start
    with ``module.``) as well as a bare state dict and the common wrapper keys
    (``model``, ``net``, ``model_state_dict``, ...; see :func:`extract_state_dict`).  Prefixes
    added by ``DataParallel``/``DistributedDataParallel`` (``module.``) and ``torch.compile``
    (``_orig_mod.``) are stripped.  A BatchNorm ``num_batches_tracked`` counter missing from old
    checkpoints is set to 0 (it only matters for ``momentum=None``).

    Parameters
    ----------
    model : torch.nn.Module
        The model to fill in place (build it with the matching constructor first).
    path : str, os.PathLike or mapping
        Checkpoint file, or an already loaded checkpoint / state dict.
    strict : bool, default True
        If True any missing / unexpected key or shape mismatch raises
        :class:`CheckpointMismatchError` (a ``ValueError``) listing all of them with a suggested fix.
        If False the matching entries are loaded and a ``UserWarning`` lists the rest.
    map_location : str or torch.device, default "cpu"
        Passed to ``torch.load``; CUDA-saved checkpoints therefore load on CPU-only machines.

    Returns
    -------
    torch.nn.Module
        ``model`` itself, with the weights loaded.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file needs arbitrary pickled code (``weights_only=True`` refuses it), holds no state
        dict, or does not match the model (:class:`CheckpointMismatchError`).

    Examples
    --------
    >>> import torch
    >>> from prunesafe.models import cifar_resnet, load_weights
    >>> source = cifar_resnet(20)
    >>> target = load_weights(cifar_resnet(20), {"state_dict": source.state_dict()})
    >>> torch.equal(target.linear.weight, source.linear.weight)
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(path, Mapping):
        checkpoint: object = path
        source = "the given mapping"
    elif isinstance(path, (str, os.PathLike)):
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {file}")
        source = str(file)
        try:
            checkpoint = torch.load(file, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(
                f"{file} cannot be loaded with torch.load(weights_only=True): it pickles objects other than "
                f"tensors and plain containers ({str(exc).splitlines()[0][:200]}). prunesafe never unpickles "
                "code. Fix: in a trusted environment, load it and re-save only the weights with "
                "torch.save({'state_dict': model.state_dict()}, path)."
            ) from exc
    else:
        raise TypeError(
            "path must be a file path (str or os.PathLike) or a loaded checkpoint mapping, "
            f"got {type(path).__name__}"
        )

    state = extract_state_dict(checkpoint)
    expected = model.state_dict()
    state = _strip_extra_prefix(state, expected)
    for key in expected:
        stem = key[: -len("num_batches_tracked")]
        if key.endswith(".num_batches_tracked") and key not in state and stem + "running_mean" in state:
            state[key] = torch.zeros((), dtype=torch.long)

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        (k, tuple(state[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = [f"checkpoint {source} does not match {type(model).__name__}:"]
        if missing:
            parts.append(_listing("missing from the checkpoint", missing))
        if unexpected:
            parts.append(_listing("unexpected in the checkpoint", unexpected))
        if mismatched:
            parts.append(
                _listing(
                    "shape mismatches (checkpoint vs model)",
                    [f"{k}: {tuple(c)} vs {tuple(m)}" for k, c, m in mismatched],
                )
            )
        hints = _hints(model, state, expected, missing, unexpected, mismatched)
        parts.extend(f"  fix: {hint}" for hint in hints)
        if strict:
            parts.append("  (pass strict=False to load the matching entries only)")
            raise CheckpointMismatchError(
                "\n".join(parts), missing=missing, unexpected=unexpected, mismatched=mismatched
            )
        warnings.warn("\n".join(parts) + "\n  loading the matching entries only (strict=False)", stacklevel=2)
        bad = {k for k, _, _ in mismatched}
        state = {k: v for k, v in state.items() if k in expected and k not in bad}
    model.load_state_dict(state, strict=strict)
    return model
