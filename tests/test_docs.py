"""Execute the Python examples of the documentation.

Every fenced block whose info string is ``python`` in ``README.md`` and ``docs/*.md`` is run; the
blocks of one file run in order in one namespace (later blocks may use names defined earlier), in a
fresh temporary working directory whose ``../shared`` is the shared data folder, so ``../shared``
paths resolve as they do for a reader of this repository and files an example writes never land in
the checkout. A block whose info string is ``python no-run`` is shown to readers but not executed
(reserved for GPU-scale or download examples).

Each file starts from the same random state (``torch``, ``numpy`` and ``random`` seeded with 0), so
an example's output does not depend on which tests ran before it in the same worker.

A block that reads ``../shared`` needs that data: like every shared-data test it fails under
``CI=true`` when the data is missing and skips elsewhere.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, SHARED_DIR, require_shared

DOC_FILES = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    code: str


def extract_blocks(text: str, path: Path) -> list[Block]:
    """Fenced code blocks of a Markdown text (CommonMark fences: backticks or tildes, any indent)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, indent, info = m["fence"], len(m["indent"]), m["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = _FENCE.match(lines[j])
            if (
                close is not None
                and close["fence"][0] == fence[0]
                and len(close["fence"]) >= len(fence)
                and not close["info"].strip()
            ):
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append(Block(path, i + 1, info, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def _python_blocks(path: Path) -> list[Block]:
    blocks = extract_blocks(path.read_text(encoding="utf-8"), path)
    return [b for b in blocks if b.info.split()[:1] == ["python"]]


def test_extractor_finds_blocks_and_flags() -> None:
    text = "intro\n```python\nx = 1\n```\n\n~~~python no-run\nboom()\n~~~\n```bash\nls\n```\n"
    blocks = extract_blocks(text, Path("x.md"))
    assert [(b.line, b.info) for b in blocks] == [(2, "python"), (6, "python no-run"), (9, "bash")]
    assert blocks[0].code == "x = 1\n"


FILES_WITH_PYTHON = [p for p in DOC_FILES if _python_blocks(p)]


@pytest.mark.parametrize("path", FILES_WITH_PYTHON, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_doc_examples_run(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocks = [b for b in _python_blocks(path) if "no-run" not in b.info.split()[1:]]
    if not blocks:
        pytest.skip(f"{path.name}: every python block is marked no-run")
    if any("../shared" in b.code for b in blocks):
        require_shared()
    work = tmp_path / "work"
    work.mkdir()
    if SHARED_DIR.exists():
        (tmp_path / "shared").symlink_to(SHARED_DIR.resolve(), target_is_directory=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 -- the legacy global state an example may use
    torch.manual_seed(0)
    for block in blocks:
        where = f"{path.relative_to(REPO_ROOT)}:{block.line}"
        try:
            exec(compile(block.code, where, "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"the example at {where} failed: {type(exc).__name__}: {exc}") from exc
