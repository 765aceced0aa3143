"""The study's data step on a fresh machine: what a config needs in ``data_dir``, fetching it, the offline
error.

:func:`plan_data` lists what a study config needs and where each piece goes in ``DIR`` (the config's
``data_dir``); :func:`fetch_data` downloads what is missing; :func:`prepare_data` -- called by
:func:`~prunesafe.study.run_study` before any other work -- does one or the other: with ``download = true``
(CLI ``--download``) it fetches the missing pieces, otherwise it raises :class:`MissingDataError` listing each
missing file, where it goes in ``DIR`` and the command that fetches it, before anything is written.

What goes where in ``DIR`` (each only when the config needs it), fetched by, and its mirror override:

* CIFAR-10 test + train split: ``cifar10/cifar-10-batches-py/``, torchvision's archive with its MD5
  (``$PRUNESAFE_CIFAR10_URL``); CIFAR-100 (``dataset = "cifar100"``): ``cifar100/cifar-100-python/``
  (``$PRUNESAFE_CIFAR100_URL``).
* A checkpoint given by registry name (``--checkpoint resnet20``): ``models/<published file name>``, the
  checkpoint registry with its SHA-256 (``$PRUNESAFE_CHECKPOINT_URL``).
* The frost textures (engine corruptions including ``frost``): ``frost/frost1.png`` ... ``frost5.jpg``,
  SHA-256 verified (``$PRUNESAFE_FROST_URL``).
* The released CIFAR-10-C (``corruptions_from = "files"``): ``CIFAR-10-C/``,
  :func:`~prunesafe.data.download_cifar_c` (Zenodo, MD5, resumable; ``$PRUNESAFE_CIFAR_C_URL``).

Every download goes through prunesafe's one verified path (``<file>.part``, resumed after an interruption,
digest checked before one ``os.replace``; a download with the wrong digest is deleted and raises
``ChecksumError``), so a file in ``DIR`` is either absent or complete and verified.  A registry name is also
found at ``DIR/../models/<file>`` (the layout of this repository's ``../shared``: ``data/`` next to
``models/``).  ``corruptions_from = "auto"`` becomes ``"files"`` when the CIFAR-C folder holds every selected
corruption, else ``"engine"``; the resolved value is what the config (and its hash) records.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from prunesafe.study.config import CorruptionsFrom, StudyConfig
    from prunesafe.study.data import CorruptionSource

__all__ = [
    "CORRUPTION_SOURCES",
    "FROST_SHA256",
    "FROST_URL",
    "FROST_URL_ENV",
    "DataItem",
    "DataPlan",
    "MissingDataError",
    "corruption_source_for",
    "download_frost",
    "fetch_data",
    "plan_data",
    "prepare_data",
]

Kind = Literal["clean", "checkpoint", "frost", "cifar-c"]

#: Values of the ``corruptions_from`` config key.
CORRUPTION_SOURCES: tuple[str, ...] = ("auto", "engine", "files")

#: Where the reference's frost textures are published (ImageNet-C repository, Apache-2.0).
FROST_URL = "https://raw.githubusercontent.com/hendrycks/robustness/master/ImageNet-C/create_c"
#: Environment variable naming a mirror of the frost textures (``<mirror>/frost1.png`` ...).
FROST_URL_ENV = "PRUNESAFE_FROST_URL"
#: SHA-256 of the five textures the reference draws from (taken from the copy in this project's test data).
FROST_SHA256: Mapping[str, str] = {
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
}
#: ``mirrors=`` keys and the environment variable each one defaults to.
MIRROR_ENV: Mapping[str, str] = {
    "cifar10": "PRUNESAFE_CIFAR10_URL",
    "cifar100": "PRUNESAFE_CIFAR100_URL",
    "checkpoints": "PRUNESAFE_CHECKPOINT_URL",
    "frost": FROST_URL_ENV,
    "cifar_c": "PRUNESAFE_CIFAR_C_URL",
}


class MissingDataError(FileNotFoundError):
    """The study needs files that are not in ``data_dir`` (the message lists them and how to fetch them)."""


@dataclass(frozen=True)
class DataItem:
    """One piece of data a study needs.

    Attributes
    ----------
    kind : {"clean", "checkpoint", "frost", "cifar-c"}
    key : str
        ``"cifar10"`` / ``"cifar100"``, the checkpoint's registry name, ``"frost"`` or ``"CIFAR-10-C"`` /
        ``"CIFAR-100-C"``.
    what : str
        Human description.
    path : Path
        Where it is (when present) or goes (when missing).
    files : tuple of str
        The files (relative to ``path``) it consists of.
    present : bool
    url : str
        Where it is downloaded from (mirror applied); ``""`` when it cannot be downloaded.
    mirror : str
        How to point the download at a mirror.
    command : str
        A command that fetches just this item.
    """

    kind: Kind
    key: str
    what: str
    path: Path
    files: tuple[str, ...]
    present: bool
    url: str
    mirror: str
    command: str


@dataclass(frozen=True)
class DataPlan:
    """What a config needs: the resolved config and its :class:`DataItem` s.

    ``config`` has registry checkpoint names replaced by their file in ``data_dir`` and ``corruptions_from``
    resolved (``"auto"`` -> ``"engine"`` or ``"files"``).
    """

    config: StudyConfig
    items: tuple[DataItem, ...]
    mirrors: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def missing(self) -> tuple[DataItem, ...]:
        """The items not in place."""
        return tuple(i for i in self.items if not i.present)

    def describe(self) -> str:
        """The missing items: each file, where it goes and the command that fetches it."""
        lines = [
            f"the study needs {len(self.missing)} item(s) that are not in data_dir = {self.config.data_dir}:"
        ]
        for item in self.missing:
            shown = ", ".join(item.files[:8])
            if len(item.files) > 8:
                shown += f", ... ({len(item.files)} files)"
            lines.append(f"  - {item.what}: {shown}")
            lines.append(f"      goes in: {item.path}")
            if item.url:
                lines.append(f"      from:    {item.url}  (mirror: {item.mirror})")
            lines.append(f"      fetch:   {item.command}")
        lines.append(
            "Fetch everything at once with the same command plus --download (prunesafe study ... --download; "
            "in Python: download = true in the config). Without network, download the URLs elsewhere and put "
            "the files where listed, or point the mirror variables at a copy."
        )
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# planning
# ----------------------------------------------------------------------------------------------
def _mirror(mirrors: Mapping[str, str], key: str) -> str | None:
    return mirrors.get(key) or os.environ.get(MIRROR_ENV[key]) or None


def _q(path: Path | str) -> str:
    return repr(os.fspath(path))


def _needs_train(config: StudyConfig) -> bool:
    return (
        config.finetune_epochs > 0
        or config.temperature_scaling
        or any(m.train is not None for m in config.models)
    )


def _clean_item(config: StudyConfig, mirrors: Mapping[str, str]) -> DataItem:
    cifar100 = config.dataset == "cifar100"
    kind = "CIFAR100" if cifar100 else "CIFAR10"
    tv_folder = "cifar-100-python" if cifar100 else "cifar-10-batches-py"
    tv_files = (
        ("train", "test", "meta")
        if cifar100
        else (
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
            "batches.meta",
        )
    )
    splits = ("test", "train") if _needs_train(config) else ("test",)
    npy = tuple(f"{s}_{part}.npy" for s in splits for part in ("images", "labels"))
    folders = (
        [Path(config.clean_dir)]
        if config.clean_dir is not None
        else [
            Path(config.data_dir) / config.dataset,
            Path(config.data_dir),
        ]
    )
    for folder in folders:
        if all((folder / f).is_file() for f in npy):
            return DataItem(
                "clean", config.dataset, f"{kind} ({', '.join(splits)} arrays)", folder, npy, True, "", "", ""
            )
        if all((folder / tv_folder / f).is_file() for f in tv_files):
            return DataItem(
                "clean",
                config.dataset,
                f"{kind} (torchvision)",
                folder / tv_folder,
                tv_files,
                True,
                "",
                "",
                "",
            )
    import torchvision

    root = folders[0]
    cls = getattr(torchvision.datasets, kind)
    url = _mirror(mirrors, config.dataset) or str(cls.url)
    loader = "load_cifar100" if cifar100 else "load_cifar10"
    return DataItem(
        "clean",
        config.dataset,
        f"{kind} test + train split (torchvision format, archive MD5 {cls.tgz_md5})",
        root / tv_folder,
        tv_files,
        False,
        url,
        f"${MIRROR_ENV[config.dataset]} or {loader}(url=...)",
        f'python -c "from prunesafe.data import {loader}; {loader}({_q(root)}, download=True)"',
    )


def _checkpoint_candidates(config: StudyConfig, filename: str) -> list[Path]:
    root = Path(config.data_dir)
    return [root / "models" / filename, root.parent / "models" / filename]


def _checkpoint_items(config: StudyConfig, mirrors: Mapping[str, str]) -> tuple[list[DataItem], StudyConfig]:
    from prunesafe.models import PRETRAINED_CHECKPOINTS, checkpoint_url

    items: list[DataItem] = []
    models = []
    for m in config.models:
        name = m.checkpoint
        if name is None or Path(name).is_file() or name not in PRETRAINED_CHECKPOINTS:
            models.append(m)
            continue
        entry = PRETRAINED_CHECKPOINTS[name]
        candidates = _checkpoint_candidates(config, entry.filename)
        found = next((c for c in candidates if c.is_file()), None)
        target = found if found is not None else candidates[0]
        models.append(dataclasses.replace(m, checkpoint=os.fspath(target)))
        if any(i.key == name for i in items):
            continue
        try:
            url = checkpoint_url(name, _mirror(mirrors, "checkpoints"))
        except ValueError:
            url = ""  # not published: only a mirror can serve it
        items.append(
            DataItem(
                "checkpoint",
                name,
                f"checkpoint {name!r} ({entry.note}; SHA-256 {entry.sha256[:16]}...)",
                target.parent,
                (entry.filename,),
                found is not None,
                url,
                "$PRUNESAFE_CHECKPOINT_URL (a folder holding the file under its published name)",
                'python -c "from prunesafe.models import download_checkpoint; '
                f'download_checkpoint({name!r}, {_q(target.parent)})"'
                + ("" if url else "  (not published: set $PRUNESAFE_CHECKPOINT_URL to a copy)"),
            )
        )
    return items, dataclasses.replace(config, models=tuple(models))


def _files_item(config: StudyConfig, mirrors: Mapping[str, str], *, partial: bool = False) -> DataItem:
    """The CIFAR-C files; with ``partial`` a folder holding ``labels.npy`` counts as present (the config's
    own validation then names any missing corruption file: a download cannot add it)."""
    from prunesafe.data import archive_url
    from prunesafe.study.data import _c_folder_names

    names = ("labels.npy", *(f"{c}.npy" for c in config.resolved_corruptions()))
    released = _c_folder_names(config.dataset)[0]
    if config.corruptions_dir is not None:
        candidates = [Path(config.corruptions_dir)]
    else:
        candidates = [Path(config.data_dir) / n for n in _c_folder_names(config.dataset)]
    for folder in candidates:
        if all((folder / f).is_file() for f in (names[:1] if partial else names)):
            return DataItem("cifar-c", released, f"{released} files", folder, names, True, "", "", "")
    if config.corruptions_dir is not None and Path(config.corruptions_dir).name == released:
        root = Path(config.corruptions_dir).parent
    else:
        root = Path(config.data_dir)
    dataset = "CIFAR-100-C" if config.dataset == "cifar100" else "CIFAR-10-C"
    return DataItem(
        "cifar-c",
        dataset,
        f"the released {dataset} files (one 2.9 GB archive from Zenodo, MD5 checked, resumable)",
        root / released,
        names,
        False,
        archive_url(dataset, _mirror(mirrors, "cifar_c")),  # type: ignore[arg-type]
        "$PRUNESAFE_CIFAR_C_URL (a folder holding the .tar)",
        f'python -c "from prunesafe.data import download_cifar_c; download_cifar_c({_q(root)}, {dataset!r})"',
    )


def _frost_item(config: StudyConfig, mirrors: Mapping[str, str]) -> DataItem:
    from prunesafe.study.engine_source import frost_folder

    found = frost_folder(config)
    target = Path(config.data_dir) / "frost" if found is None else found
    base = (_mirror(mirrors, "frost") or FROST_URL).rstrip("/")
    return DataItem(
        "frost",
        "frost",
        "frost textures of the reference (Hendrycks & Dietterich, Apache-2.0; the engine's frost needs them)",
        target,
        tuple(FROST_SHA256),
        found is not None,
        f"{base}/<file>",
        f"${FROST_URL_ENV}",
        f'python -c "from prunesafe.study.fetch import download_frost; download_frost({_q(target)})"',
    )


def plan_data(config: StudyConfig, *, mirrors: Mapping[str, str] | None = None) -> DataPlan:
    """What ``config`` needs, where each piece is or goes in ``data_dir``, and the resolved config.

    Parameters
    ----------
    config : StudyConfig
    mirrors : mapping, optional
        Download addresses instead of the published ones, by key: ``"cifar10"`` / ``"cifar100"`` (the
        archive's URL), ``"checkpoints"``, ``"frost"``, ``"cifar_c"`` (folders holding the files).  Each
        defaults to its environment variable (:data:`MIRROR_ENV`).

    Examples
    --------
    >>> import tempfile
    >>> from prunesafe.study import StudyConfig
    >>> cfg = StudyConfig.from_dict({"models": [{"name": "resnet20", "checkpoint": "resnet20"}],
    ...     "data_dir": tempfile.mkdtemp(), "corruptions_from": "engine", "corruptions": ["fog"]})
    >>> plan = plan_data(cfg)
    >>> [(i.kind, i.key, i.present) for i in plan.items]
    [('clean', 'cifar10', False), ('checkpoint', 'resnet20', False)]
    >>> plan.config.models[0].checkpoint.endswith("models/resnet20-12fca82f.th")
    True
    """
    from prunesafe.study.config import StudyConfig

    if not isinstance(config, StudyConfig):
        raise TypeError(f"config must be a StudyConfig, got {type(config).__name__}")
    mirrors = dict(mirrors or {})
    bad = sorted(set(mirrors) - set(MIRROR_ENV))
    if bad:
        raise ValueError(f"mirrors: unknown key(s) {bad}; use {', '.join(MIRROR_ENV)}")
    source = _check_source(config.corruptions_from)
    items = [_clean_item(config, mirrors)]
    ckpt_items, config = _checkpoint_items(config, mirrors)
    items += ckpt_items
    if source == "auto":
        source = "files" if _files_item(config, mirrors).present else "engine"
    if source == "files":
        items.append(_files_item(config, mirrors, partial=True))
    elif "frost" in config.resolved_corruptions():
        items.append(_frost_item(config, mirrors))
    config = dataclasses.replace(config, corruptions_from=source)
    return DataPlan(config, tuple(items), mirrors)


def _check_source(value: Any) -> CorruptionsFrom:
    if value not in CORRUPTION_SOURCES:
        raise ValueError(
            f"corruptions_from must be one of {', '.join(CORRUPTION_SOURCES)} (engine: generated on the fly; "
            f"files: the released CIFAR-C files; auto: files when data_dir holds them), got {value!r}"
        )
    return value  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------------------
# fetching
# ----------------------------------------------------------------------------------------------
def download_frost(
    root: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Fetch the five frost textures into ``root`` (SHA-256 verified, atomic); return ``root``.

    ``base_url`` (else ``$PRUNESAFE_FROST_URL``, else :data:`FROST_URL`) is a folder holding
    ``frost1.png`` ... ``frost5.jpg``.  Files already there with the right digest are kept.

    Examples
    --------
    >>> import tempfile
    >>> download_frost(tempfile.mkdtemp(), base_url="http://127.0.0.1:9", timeout=1, progress=False)
    Traceback (most recent call last):
    ...
    prunesafe._download.DownloadError: could not reach http://127.0.0.1:9/frost1.png: ...
    """
    from prunesafe._download import ChecksumError, digest_of, download_file

    folder = Path(root)
    base = (base_url or os.environ.get(FROST_URL_ENV) or FROST_URL).rstrip("/")
    for name, digest in FROST_SHA256.items():
        target = folder / name
        if target.is_file():
            if digest_of(target) == digest:
                continue
            raise ChecksumError(
                f"{target} exists with another SHA-256 than the reference's {name}; delete it and call again"
            )
        download_file(f"{base}/{name}", target, sha256=digest, timeout=timeout, progress=progress)
    return folder


def _fetch_clean(item: DataItem, mirrors: Mapping[str, str], progress: bool) -> None:
    import torchvision

    from prunesafe._download import digest_of, download_file
    from prunesafe.data import load_cifar10, load_cifar100

    kind = "CIFAR100" if item.key == "cifar100" else "CIFAR10"
    cls = getattr(torchvision.datasets, kind)
    url = _mirror(mirrors, item.key) or str(cls.url)
    root = item.path.parent
    archive = root / str(cls.filename)
    if not (archive.is_file() and digest_of(archive, "md5") == cls.tgz_md5):
        # prunesafe's verified path: the archive appears only once its MD5 is torchvision's
        download_file(url, archive, md5=str(cls.tgz_md5), progress=progress)
    loader = load_cifar100 if kind == "CIFAR100" else load_cifar10
    loader(root, download=True, url=url)  # torchvision extracts it and checks every batch's MD5
    loader(root, train=True)


def fetch_data(plan: DataPlan, *, progress: bool = True) -> DataPlan:
    """Download every missing item of ``plan`` (verified, atomic); return the plan made again.

    Raises
    ------
    MissingDataError
        A download failed (no network, HTTP error); the message says what is still missing and how to get it.
    ChecksumError
        A downloaded file has the wrong digest: it was deleted (nothing is left in place).
    """
    from prunesafe._download import DownloadError
    from prunesafe.data import download_cifar_c
    from prunesafe.models import download_checkpoint

    for item in plan.missing:
        try:
            if item.kind == "clean":
                _fetch_clean(item, plan.mirrors, progress)
            elif item.kind == "checkpoint":
                download_checkpoint(
                    item.key, item.path, base_url=_mirror(plan.mirrors, "checkpoints"), progress=progress
                )
            elif item.kind == "frost":
                download_frost(item.path, base_url=_mirror(plan.mirrors, "frost"), progress=progress)
            else:
                download_cifar_c(
                    item.path.parent,
                    item.key,  # type: ignore[arg-type]
                    base_url=_mirror(plan.mirrors, "cifar_c"),
                    progress=progress,
                )
        except DownloadError as exc:
            raise MissingDataError(f"download failed: {exc}\n{plan.describe()}") from exc
    again = plan_data(plan.config, mirrors=plan.mirrors)
    if again.missing:  # e.g. a CIFAR-C archive without some selected corruption
        raise MissingDataError(f"still missing after the download:\n{again.describe()}")
    return again


def prepare_data(
    config: StudyConfig,
    corruption_source: CorruptionSource | None = None,
    *,
    mirrors: Mapping[str, str] | None = None,
) -> StudyConfig:
    """The data step of :func:`~prunesafe.study.run_study`: the resolved config, everything it needs in place.

    Missing data is fetched when ``config.download`` is true; otherwise :class:`MissingDataError` lists it
    (each file, where it goes, the command that fetches it) before anything is read or written.  An
    :class:`~prunesafe.study.engine_source.EngineCorruptions` given as ``corruption_source`` makes
    ``corruptions_from`` ``"engine"`` (no CIFAR-C files needed); a
    :class:`~prunesafe.study.data.FileCorruptions` makes it ``"files"``.

    Examples
    --------
    >>> import tempfile
    >>> from prunesafe.study import StudyConfig
    >>> cfg = StudyConfig.from_dict({"models": [{"name": "resnet20", "checkpoint": "resnet20"}],
    ...     "data_dir": tempfile.mkdtemp(), "corruptions_from": "engine", "corruptions": ["fog"]})
    >>> try:
    ...     prepare_data(cfg)
    ... except MissingDataError as err:
    ...     print(str(err).splitlines()[0])
    the study needs 2 item(s) that are not in data_dir = ...
    """
    from prunesafe.study.data import FileCorruptions
    from prunesafe.study.engine_source import EngineCorruptions

    if isinstance(corruption_source, EngineCorruptions):
        config = dataclasses.replace(config, corruptions_from="engine")
    elif isinstance(corruption_source, FileCorruptions):
        config = dataclasses.replace(config, corruptions_from="files")
    plan = plan_data(config, mirrors=mirrors)
    if not plan.missing:
        return plan.config
    if not config.download:
        raise MissingDataError(plan.describe())
    return fetch_data(plan, progress=config.progress).config


def corruption_source_for(config: StudyConfig) -> CorruptionSource:
    """The corruption source ``config.corruptions_from`` names (``"auto"`` must be resolved first).

    Examples
    --------
    >>> from prunesafe.study import StudyConfig
    >>> cfg = StudyConfig.from_dict({"models": ["resnet20"], "corruptions_from": "engine"})
    >>> corruption_source_for(cfg).name
    'engine'
    """
    from prunesafe.study.data import FileCorruptions
    from prunesafe.study.engine_source import EngineCorruptions

    source = _check_source(config.corruptions_from)
    if source == "auto":
        source = plan_data(config).config.corruptions_from
    return EngineCorruptions() if source == "engine" else FileCorruptions()
