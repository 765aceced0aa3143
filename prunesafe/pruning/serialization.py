"""Save and reload pruned models without pickling code.

A pruned model is stored as ONE file written by :func:`torch.save` that contains only plain
Python types and tensors, so :func:`torch.load` reads it with ``weights_only=True``:

* ``builder`` / ``builder_kwargs`` -- how to build the *unpruned* architecture, e.g.
  ``"prunesafe.models:CifarResNet"`` with ``{"num_blocks": [3, 3, 3], ...}`` (detected
  automatically for prunesafe's CIFAR ResNets (basic, bottleneck, pre-activation, option A/B)
  and VGGs and for torchvision models (the ResNet family by groups/width, VGGs, MobileNetV2, and
  any model whose builder alone gives its topology), or given by the caller);
* ``modules`` -- type and configuration of every Conv, BatchNorm, Linear, PReLU and
  ``ZeroPadShortcut`` (channels, groups, kernel, paddings, ...), i.e. the shrunk shapes;
* ``pruning`` -- the :class:`~prunesafe.pruning.PruningRecord`;
* ``state_dict`` -- the weights, and ``format`` / ``format_version``.

:func:`load_pruned` builds the architecture (calling only builders on an explicit allow-list:
``prunesafe.models``' model classes and builder functions and torchvision's registered model
builders, never a dotted attribute path; or using a skeleton the caller passes as ``model=``), resizes
every recorded module to its saved configuration in place, re-attaches unstructured masks,
and loads the state dict strictly.

Unstructured masks: ``masks="keep"`` (default) stores ``weight_orig`` and ``weight_mask`` so
the reloaded model still keeps pruned weights at zero while fine-tuning; ``masks="fold"``
stores the finalized weights (``weight_orig * weight_mask``) as plain ``weight`` tensors,
the format to ship a model in.

Examples
--------
>>> import io, torch
>>> from prunesafe.models import cifar_resnet
>>> from prunesafe.pruning import prune_model
>>> model = cifar_resnet(20).eval()
>>> pruned = prune_model(model, "filter", 0.5, example_inputs=torch.rand(1, 3, 32, 32))
>>> buffer = io.BytesIO()
>>> save_pruned(pruned, buffer)
>>> _ = buffer.seek(0)
>>> loaded = load_pruned(buffer).eval()
>>> x = torch.rand(2, 3, 32, 32)
>>> torch.equal(loaded(x), pruned(x)), loaded.layer1[0].conv1.out_channels
(True, 8)
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import typing
from collections.abc import Callable, Mapping
from typing import IO, Any, Literal

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunesafe.pruning.api import RECORD_ATTRIBUTE, PruningRecord, get_record

__all__ = [
    "ALLOWED_BUILDER_PREFIXES",
    "FORMAT",
    "FORMAT_VERSION",
    "describe_architecture",
    "load_pruned",
    "save_pruned",
]

#: Value of the ``format`` field.
FORMAT = "prunesafe.pruned-model"
#: Version of the file layout written by :func:`save_pruned`; :func:`load_pruned` reads ``<=`` it.
FORMAT_VERSION = 1
#: Modules a builder may be imported from (the module path, plus ".", must start with one of them).
ALLOWED_BUILDER_PREFIXES: tuple[str, ...] = ("prunesafe.", "torchvision.models.")

PathLike = str | os.PathLike[str] | IO[bytes]
MaskMode = Literal["keep", "fold"]

_CONV: tuple[str, ...] = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
    "transposed",
    "output_padding",
)
_BN: tuple[str, ...] = ("num_features", "eps", "momentum", "affine", "track_running_stats")


def _is(obj: Any, *class_names: str) -> bool:
    """Whether ``obj`` is an instance of a ``prunesafe.models`` class of one of these names.

    Duck-typed on the class (and its bases) so that the pruning package never imports the model zoo.
    """
    return any(
        k.__name__ in class_names and k.__module__.startswith("prunesafe.models") for k in type(obj).__mro__
    )


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _module_config(module: nn.Module) -> dict[str, Any] | None:
    """Type and constructor-level configuration of the module kinds pruning resizes."""
    attrs: tuple[str, ...]
    if isinstance(module, nn.modules.conv._ConvNd):
        attrs = _CONV
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        attrs = _BN
    elif isinstance(module, nn.Linear):
        attrs = ("in_features", "out_features")
    elif isinstance(module, nn.PReLU):
        attrs = ("num_parameters",)
    elif _is(module, "ZeroPadShortcut"):
        attrs = ("stride", "pad_front", "pad_back")
    else:
        return None
    config: dict[str, Any] = {"type": type(module).__name__}
    config.update({a: _plain(getattr(module, a)) for a in attrs})
    return config


def _normalize_kwargs(model: nn.Module) -> dict[str, Any]:
    norm = getattr(model, "normalize", None)
    if _is(norm, "Normalize") and isinstance(norm, nn.Module):
        mean, std = getattr(norm, "mean"), getattr(norm, "std")  # noqa: B009 (buffers of Normalize)
        return {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return {"mean": None, "std": None}


#: torchvision ResNet family: (block, blocks per stage, groups, width_per_group) -> builder.  ResNeXt and
#: Wide ResNet share ResNet-50/101's topology and differ only in ``groups`` / ``base_width``.
_TV_RESNETS: dict[tuple[str, tuple[int, ...], int, int], str] = {
    ("BasicBlock", (2, 2, 2, 2), 1, 64): "resnet18",
    ("BasicBlock", (3, 4, 6, 3), 1, 64): "resnet34",
    ("Bottleneck", (3, 4, 6, 3), 1, 64): "resnet50",
    ("Bottleneck", (3, 4, 23, 3), 1, 64): "resnet101",
    ("Bottleneck", (3, 8, 36, 3), 1, 64): "resnet152",
    ("Bottleneck", (3, 4, 6, 3), 32, 4): "resnext50_32x4d",
    ("Bottleneck", (3, 4, 23, 3), 32, 8): "resnext101_32x8d",
    ("Bottleneck", (3, 4, 23, 3), 64, 4): "resnext101_64x4d",
    ("Bottleneck", (3, 4, 6, 3), 1, 128): "wide_resnet50_2",
    ("Bottleneck", (3, 4, 23, 3), 1, 128): "wide_resnet101_2",
}
_TV_VGGS = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}


def _last_linear(module: nn.Module) -> nn.Linear | None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _detect_builder(model: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """Builder and kwargs that rebuild ``model``'s (unpruned) topology, if recognised."""
    if _is(model, "CifarResNet", "CifarPreActResNet"):
        stages = [getattr(model, f"layer{i}") for i in (1, 2, 3)]
        blocks = [b for stage in stages for b in stage]
        shortcuts = [getattr(b, "shortcut", None) for b in blocks]
        if any(_is(s, "ZeroPadShortcut") for s in shortcuts):
            shortcut = "A"
        elif any(s is not None and not isinstance(s, nn.Identity) for s in shortcuts):
            shortcut = "B"
        else:
            return None
        kwargs = {
            "num_blocks": [len(stage) for stage in stages],
            "num_classes": getattr(model, "linear").out_features,  # noqa: B009
            "block": "bottleneck" if "Bottleneck" in type(blocks[0]).__name__ else "basic",
            "shortcut": shortcut,
            **_normalize_kwargs(model),
        }
        return f"prunesafe.models:{type(model).__name__}", kwargs
    if _is(model, "CifarVGG"):
        config: list[int | str] = []
        for m in getattr(model, "features"):  # noqa: B009
            if isinstance(m, nn.Conv2d):
                config.append(m.out_channels)
            elif isinstance(m, nn.MaxPool2d):
                config.append("M")
        batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        kwargs = {
            "config": config,
            "num_classes": getattr(model, "classifier").out_features,  # noqa: B009
            "batch_norm": batch_norm,
            **_normalize_kwargs(model),
        }
        return "prunesafe.models:CifarVGG", kwargs
    if not type(model).__module__.startswith("torchvision.models"):
        return None
    cls = type(model).__name__
    head = _last_linear(model)
    num_classes = {"num_classes": head.out_features} if head is not None else {}
    name: str | None = None
    if cls == "ResNet":
        first_block = type(getattr(model, "layer1")[0]).__name__  # noqa: B009
        layers = tuple(len(getattr(model, f"layer{i}")) for i in (1, 2, 3, 4))
        groups, width = getattr(model, "groups", None), getattr(model, "base_width", None)
        if isinstance(groups, int) and isinstance(width, int):
            name = _TV_RESNETS.get((first_block, layers, groups, width))
    elif cls == "VGG":
        features = getattr(model, "features")  # noqa: B009
        convs = sum(isinstance(m, nn.Conv2d) for m in features.modules())
        bn = any(isinstance(m, nn.BatchNorm2d) for m in features.modules())
        base = _TV_VGGS.get(convs)
        name = None if base is None else base + ("_bn" if bn else "")
    elif cls == "MobileNetV2":
        name = "mobilenet_v2"
    else:
        name = _match_torchvision_builder(model, num_classes)
    if name is None:
        return None
    return f"torchvision.models:{name}", dict(num_classes)


def _topology(model: nn.Module) -> list[tuple[str, str, Any, Any]]:
    """What pruning never changes: module names and types, conv kernels and strides."""
    return [
        (name, type(m).__name__, getattr(m, "kernel_size", None), getattr(m, "stride", None))
        for name, m in model.named_modules()
    ]


def _match_torchvision_builder(model: nn.Module, num_classes: dict[str, int]) -> str | None:
    """The one registered torchvision builder of ``model``'s module whose fresh model has its topology.

    Candidates are built on the ``meta`` device (no memory, no weights); ``None`` when none or several
    match (then ``builder=`` must be given).
    """
    try:
        import torchvision.models as tv_models
    except ImportError:  # pragma: no cover - torchvision is optional
        return None
    module = type(model).__module__
    wanted = _topology(model)
    found: list[str] = []
    for name in tv_models.list_models():
        if getattr(tv_models.get_model_builder(name), "__module__", None) != module:
            continue
        if _fresh_topology(name, tuple(num_classes.items())) == (type(model).__qualname__, wanted):
            found.append(name)
    return found[0] if len(found) == 1 else None


@functools.lru_cache(maxsize=256)
def _fresh_topology(name: str, kwargs: tuple[tuple[str, int], ...]) -> tuple[str, list[Any]] | None:
    """Class name and topology of a fresh torchvision model, built on ``meta`` (cached)."""
    import warnings

    import torchvision.models as tv_models

    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")  # e.g. GoogLeNet's init_weights FutureWarning
            candidate = tv_models.get_model_builder(name)(weights=None, **dict(kwargs))
    except Exception:  # a builder that needs other arguments cannot be the one
        return None
    return type(candidate).__qualname__, _topology(candidate)


def _builder_name(builder: str | Callable[..., nn.Module]) -> str:
    if callable(builder) and not isinstance(builder, str):
        module = getattr(builder, "__module__", None)
        qualname = getattr(builder, "__qualname__", None)
        if not module or not qualname or "<" in qualname:
            raise ValueError(
                f"builder {builder!r} has no importable name; pass it as a 'package.module:function' string"
            )
        builder = f"{module}:{qualname}"
    if not isinstance(builder, str) or ":" not in builder:
        raise ValueError(
            f"builder must look like 'package.module:function' (e.g. 'prunesafe.models:cifar_resnet'), "
            f"got {builder!r}"
        )
    module_name = builder.split(":", 1)[0]
    if not any((module_name + ".").startswith(prefix) for prefix in ALLOWED_BUILDER_PREFIXES):
        raise ValueError(
            f"builder {builder!r} is not importable from the allow-list {list(ALLOWED_BUILDER_PREFIXES)}; "
            "build the unpruned model yourself and pass it as load_pruned(path, model=skeleton)"
        )
    return builder


#: Functions of ``prunesafe.models`` that return a module but are NOT builders accepted from a file
#: (they read other files or take a model).
_EXCLUDED_PRUNESAFE_BUILDERS = frozenset({"pretrained_cifar_resnet", "load_weights"})
#: ``builder_kwargs`` refused from a file: they make torchvision download (and unpickle) weights.
_REFUSED_BUILDER_KWARGS = ("weights", "weights_backbone", "pretrained", "pretrained_backbone")


def _builds_module(obj: Any) -> bool:
    """Whether ``obj`` is an ``nn.Module`` class or a function annotated to return one."""
    if inspect.isclass(obj):
        return issubclass(obj, nn.Module)
    if not inspect.isfunction(obj):
        return False
    try:
        returned = typing.get_type_hints(obj).get("return")
    except Exception:  # an unresolvable annotation means "not a known builder"
        return False
    return inspect.isclass(returned) and issubclass(returned, nn.Module)


@functools.cache
def _allowed_builders() -> dict[str, Callable[..., Any]]:
    """The explicit allow-list: canonical ``"module:name"`` -> builder.

    ``prunesafe.models.__all__``'s ``nn.Module`` classes and functions that return a module
    (except those that read a file), and torchvision's registered model builders
    (:func:`torchvision.models.list_models` / :func:`torchvision.models.get_model_builder`).
    """
    zoo = importlib.import_module("prunesafe.models")  # by name: the pruning package does not depend on it

    allowed: dict[str, Callable[..., Any]] = {}
    for name in zoo.__all__:
        obj = getattr(zoo, name)
        if name not in _EXCLUDED_PRUNESAFE_BUILDERS and _builds_module(obj):
            allowed[f"prunesafe.models:{name}"] = obj
    try:
        import torchvision.models as tv_models
    except ImportError:  # pragma: no cover - torchvision is optional
        return allowed
    for name in tv_models.list_models():
        allowed[f"torchvision.models:{name}"] = tv_models.get_model_builder(name)
    return allowed


def _import_builder(builder: str) -> Callable[..., Any]:
    """Resolve a recorded builder name, accepting only the builders of :func:`_allowed_builders`.

    A name that is not in the allow-list verbatim (e.g. ``"prunesafe.models.cifar_resnet:cifar_resnet"``,
    as written for a callable) is resolved with ONE ``getattr`` on its module (no dotted
    attribute paths) and accepted only if it is the very same object as an allowed builder.
    """
    builder = _builder_name(builder)
    allowed = _allowed_builders()
    if builder in allowed:
        return allowed[builder]
    module_name, attr = builder.split(":", 1)
    refusal = (
        f"builder {builder!r} is not one of prunesafe's model builders (prunesafe.models' model "
        "classes and builder functions, torchvision.models.list_models()); it is not on the allow-list. "
        "Build the unpruned model yourself and pass it as load_pruned(path, model=skeleton)"
    )
    if not attr.isidentifier():
        raise ValueError(refusal)
    try:
        target: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import the builder {builder!r} recorded in the file: {err}") from err
    if not any(target is obj for obj in allowed.values()):
        raise ValueError(refusal)
    return target  # type: ignore[no-any-return]


def _check_plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_plain(v, where)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} keys must be str, got {k!r}")
            _check_plain(v, where)
        return
    raise TypeError(
        f"{where} must contain only None, bool, int, float, str, lists and dicts (loadable with "
        f"weights_only=True), got {type(value).__name__}: {value!r}"
    )


def _masked_modules(model: nn.Module) -> list[str]:
    return [
        name
        for name, m in model.named_modules()
        if isinstance(getattr(m, "weight_orig", None), torch.Tensor)
        and isinstance(getattr(m, "weight_mask", None), torch.Tensor)
    ]


def describe_architecture(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Type and configuration of every Conv/BatchNorm/Linear/PReLU/ZeroPadShortcut, by module name.

    Examples
    --------
    >>> from prunesafe.models import cifar_resnet
    >>> describe_architecture(cifar_resnet(20))["layer2.0.shortcut"]
    {'type': 'ZeroPadShortcut', 'stride': 2, 'pad_front': 8, 'pad_back': 8}
    """
    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        config = _module_config(module)
        if config is not None:
            out[name] = config
    return out


def save_pruned(
    model: nn.Module,
    path: PathLike,
    *,
    builder: str | Callable[..., nn.Module] | None = None,
    builder_kwargs: Mapping[str, Any] | None = None,
    masks: MaskMode = "keep",
) -> None:
    """Write a (pruned) model as architecture description + state dict, loadable with ``weights_only=True``.

    Parameters
    ----------
    model : nn.Module
        The model, e.g. as returned by ``prune_model``.
    path : str, path-like or binary file object
        Where to write (one file).
    builder : str or callable, optional
        Function or class that builds the *unpruned* architecture, as
        ``"package.module:name"`` (``"prunesafe.models:cifar_resnet"``) or the callable itself;
        it must live under ``prunesafe.`` or ``torchvision.models``.  Detected for prunesafe's
        CIFAR ResNet/VGG, torchvision's ResNet family (ResNet-18..152, ResNeXt, Wide ResNet: by
        ``groups`` and ``base_width``), VGG-11..19(_bn), MobileNetV2 and any other torchvision
        model whose registered builder is the only one giving its module names, types, kernels
        and strides (e.g. DenseNet-121, EfficientNet-B0, ConvNeXt-T; not width-only variants such
        as ShuffleNetV2 x0.5/x1.0) when left out; otherwise the file records no builder and
        :func:`load_pruned` needs ``model=`` (a ``UserWarning`` says so).
    builder_kwargs : mapping, optional
        Keyword arguments for ``builder`` (plain Python values only).
    masks : {"keep", "fold"}, default "keep"
        For unstructured-pruned models: store ``weight_orig`` + ``weight_mask`` so the reloaded
        model keeps the masks during fine-tuning, or fold them into plain ``weight`` tensors.

    Examples
    --------
    >>> import io
    >>> from prunesafe.models import cifar_resnet
    >>> buffer = io.BytesIO()
    >>> save_pruned(cifar_resnet(20), buffer, builder="prunesafe.models:cifar_resnet",
    ...             builder_kwargs={"depth": 20})
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if masks not in ("keep", "fold"):
        raise ValueError(f"masks must be 'keep' or 'fold', got {masks!r}")
    if builder_kwargs is not None and builder is None:
        raise ValueError("builder_kwargs was given without builder; pass builder='package.module:function'")
    kwargs: dict[str, Any]
    if builder is not None:
        builder_name = _builder_name(builder)
        _import_builder(builder_name)  # fail now, not at load time, for a builder outside the allow-list
        name: str | None = builder_name
        kwargs = dict(builder_kwargs or {})
    else:
        detected = _detect_builder(model)
        if detected is None:
            import warnings

            warnings.warn(
                f"cannot detect how to build {type(model).__name__}; the file records no builder, so "
                "load_pruned will need model=<a freshly built, unpruned instance>. Pass "
                "builder='package.module:function' and builder_kwargs={...} to avoid this.",
                UserWarning,
                stacklevel=2,
            )
            name, kwargs = None, {}
        else:
            name, kwargs = detected
    _check_plain(kwargs, "builder_kwargs")

    state = model.state_dict()
    masked = _masked_modules(model)
    if masks == "fold":
        for module_name in masked:
            prefix = f"{module_name}." if module_name else ""
            orig = state.pop(prefix + "weight_orig")
            mask = state.pop(prefix + "weight_mask")
            state[prefix + "weight"] = orig * mask.to(orig.dtype)
        masked = []
    floating = [p.dtype for p in model.parameters() if p.is_floating_point()]
    record = get_record(model)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "torch_version": str(torch.__version__),
        "builder": name,
        "builder_kwargs": kwargs,
        "modules": describe_architecture(model),
        "masked_modules": masked,
        "masks": masks,
        "dtype": str(floating[0]).removeprefix("torch.") if floating else None,
        "pruning": record.to_dict() if record is not None else None,
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
    }
    torch.save(payload, path)


def _resize(
    module: nn.Module, prefix: str, config: dict[str, Any], state: Mapping[str, torch.Tensor]
) -> None:
    """Set ``module``'s configuration and tensor shapes to the recorded ones (in place)."""
    for attr, value in config.items():
        if attr == "type":
            continue
        current = getattr(module, attr)
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        setattr(module, attr, value)
    _resize_tensors(module, prefix, state)


def _resize_tensors(module: nn.Module, prefix: str, state: Mapping[str, torch.Tensor]) -> bool:
    """Replace direct parameters/buffers whose saved shape differs; return whether any changed."""
    changed = False
    for name, param in list(module._parameters.items()):
        key = prefix + name
        if name == "weight" and prefix + "weight_orig" in state:
            key = prefix + "weight_orig"
        if param is None or key not in state or state[key].shape == param.shape:
            continue
        setattr(
            module,
            name,
            nn.Parameter(param.new_empty(state[key].shape), requires_grad=param.requires_grad),
        )
        changed = True
    for name, buffer in list(module._buffers.items()):
        key = prefix + name
        if buffer is None or key not in state or state[key].shape == buffer.shape:
            continue
        module._buffers[name] = buffer.new_empty(state[key].shape)
        changed = True
    return changed


def _with_channel_selection(model: nn.Module, name: str, bn: nn.BatchNorm2d) -> nn.Module:
    """Put a :class:`~prunesafe.pruning.selection.ChannelSelectionBatchNorm2d` where the file has one."""
    from prunesafe.pruning.selection import ChannelSelectionBatchNorm2d

    new = ChannelSelectionBatchNorm2d.from_batchnorm(bn)  # its indices are resized from the file
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return new


def load_pruned(
    path: PathLike,
    *,
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild a model written by :func:`save_pruned` (``torch.load(weights_only=True)``; no pickled code).

    Parameters
    ----------
    path : str, path-like or binary file object
    model : nn.Module, optional
        A freshly built instance of the *unpruned* architecture to load into (modified in
        place).  Needed when the file records no builder or its builder is not under
        ``prunesafe.``/``torchvision.models``.
    map_location : str or torch.device, default "cpu"
        Device of the returned model.

    Returns
    -------
    nn.Module
        The model with the saved shapes and weights, its ``prunesafe_pruning`` record restored
        and, for ``masks="keep"`` files, its unstructured masks re-attached.

    Raises
    ------
    ValueError
        Not a prunesafe file, a format version newer than this prunesafe reads, a builder
        outside the allow-list, or an architecture that does not match the description.

    Examples
    --------
    >>> import io, torch
    >>> from prunesafe.models import cifar_vgg
    >>> from prunesafe.pruning import prune_model
    >>> pruned = prune_model(cifar_vgg(11), "channel", 0.3, example_inputs=torch.rand(1, 3, 32, 32))
    >>> buffer = io.BytesIO()
    >>> save_pruned(pruned, buffer)
    >>> _ = buffer.seek(0)
    >>> load_pruned(buffer).prunesafe_pruning.method
    'channel'
    """
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module skeleton or None, got {type(model).__name__}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(
            f"{path!r} is not a prunesafe pruned-model file (no format={FORMAT!r}); "
            "write it with prunesafe.pruning.save_pruned"
        )
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"invalid format_version {version!r} in {path!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path!r} uses format version {version}, newer than the {FORMAT_VERSION} this prunesafe reads; "
            "upgrade prunesafe"
        )
    state: dict[str, torch.Tensor] = data["state_dict"]
    if model is None:
        if data["builder"] is None:
            raise ValueError(
                "the file records no builder; pass model=<a freshly built, unpruned instance of the "
                "architecture> to load_pruned"
            )
        builder_fn = _import_builder(data["builder"])
        builder_kwargs = data.get("builder_kwargs") or {}
        if not isinstance(builder_kwargs, dict) or not all(isinstance(k, str) for k in builder_kwargs):
            raise ValueError(
                f"invalid builder_kwargs {builder_kwargs!r} in the file: expected a dict with str keys"
            )
        refused = [k for k in _REFUSED_BUILDER_KWARGS if builder_kwargs.get(k) not in (None, False)]
        if refused:
            raise ValueError(
                f"the file's builder_kwargs set {refused}, which would download pretrained weights at load "
                "time; load_pruned refuses that. Pass load_pruned(path, model=skeleton) instead"
            )
        built = builder_fn(**builder_kwargs)
        if not isinstance(built, nn.Module):
            raise ValueError(f"builder {data['builder']!r} returned {type(built).__name__}, not an nn.Module")
        model = built
    if data.get("dtype"):
        model.to(getattr(torch, data["dtype"]))

    modules = dict(model.named_modules())
    for name, config in data["modules"].items():
        module = modules.get(name)
        if config["type"] == "ChannelSelectionBatchNorm2d" and type(module) is nn.BatchNorm2d:
            module = modules[name] = _with_channel_selection(model, name, module)
        if module is None or type(module).__name__ != config["type"]:
            found = "nothing" if module is None else type(module).__name__
            raise ValueError(
                f"architecture mismatch: the file has a {config['type']} at {name!r} but the rebuilt "
                f"model has {found}; pass the matching unpruned architecture as model="
            )
        _resize(module, f"{name}." if name else "", config, state)
    for name, module in modules.items():
        if name not in data["modules"] and _resize_tensors(module, f"{name}." if name else "", state):
            raise ValueError(
                f"cannot resize {name!r} ({type(module).__name__}): its saved tensor shapes differ and "
                "prunesafe does not know its configuration; pass a skeleton with the pruned shapes as model="
            )
    for name in data.get("masked_modules", []):
        module = modules[name]
        weight = module.weight
        if isinstance(weight, torch.Tensor):
            torch_prune.custom_from_mask(module, "weight", torch.ones_like(weight))  # type: ignore[no-untyped-call]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"the saved weights do not fit the rebuilt architecture: {err}") from err
    for name in data.get("masked_modules", []):  # refresh the masked weight attribute
        module = modules[name]
        orig, mask = module.weight_orig, module.weight_mask
        if isinstance(orig, torch.Tensor) and isinstance(mask, torch.Tensor):
            with torch.no_grad():
                setattr(module, "weight", orig * mask.to(orig.dtype))  # noqa: B010 - plain attribute
    if data.get("pruning") is not None:
        setattr(model, RECORD_ATTRIBUTE, PruningRecord.from_dict(data["pruning"]))
    return model.to(map_location)
