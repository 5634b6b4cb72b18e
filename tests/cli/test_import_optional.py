"""p2p.cli.import_optional: a missing sub-command or benchmark is skipped, a broken one is not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from p2p.cli import import_optional


def test_present_missing_and_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert import_optional("p2p.cli.keygen") is sys.modules["p2p.cli.keygen"]
    assert import_optional("p2p.cli.no_such_command") is None
    (tmp_path / "broken_cli_module.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        import_optional("broken_cli_module")
