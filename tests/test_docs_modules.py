"""docs/architecture.md names every module as it is in the source tree, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _named_in_docs() -> str:
    return (ROOT / "docs" / "architecture.md").read_text()


def _mentioned(path: str, text: str) -> bool:
    """A module counts as named by its own path, or through a ``dir/*.py`` or ``dir/`` row, or as
    a file name in a row that names its directory."""
    if f"`{path}`" in text:
        return True
    parent, name = path.rsplit("/", 1)
    if f"`{parent}/*.py`" in text or f"`{parent}/`" in text:
        return True
    return any(f"`{parent}/" in row and f"`{name}`" in row for row in text.splitlines())


def test_every_module_is_named_in_architecture_md() -> None:
    text = _named_in_docs()
    modules = sorted(str(p.relative_to(ROOT)) for top in ("p2p", "protocols") for p in (ROOT / top).rglob("*.py")
                     if p.name not in ("__init__.py", "__main__.py") or p.parent.name == "testing")
    missing = [m for m in modules if not _mentioned(m, text)]
    assert not missing, f"modules not described in docs/architecture.md: {missing}"


def test_every_module_named_in_architecture_md_exists() -> None:
    named = set(re.findall(r"`((?:p2p|protocols)/[\w/]+\.py)`", _named_in_docs()))
    gone = sorted(n for n in named if not (ROOT / n).exists())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"
