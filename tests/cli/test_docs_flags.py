"""docs/cli.md documents every command and every flag that ``--help`` shows."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p.cli import build_parser

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                                      argparse.ArgumentParser]]:
    """Every (sub)command's parser, by its words after ``p2p``."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, path + (name,))
    return found


def test_every_command_and_flag_in_help_is_in_docs_cli_md() -> None:
    missing: list[str] = []
    for path, parser in _commands(build_parser()):
        if path and f"p2p {' '.join(path)}" not in DOCS:
            missing.append(f"command: p2p {' '.join(path)}")
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and f"`{flag}" not in DOCS and f" {flag}" not in DOCS \
                        and f"[{flag}" not in DOCS:
                    missing.append(f"p2p {' '.join(path)} {flag}")
    assert not missing, "not documented in docs/cli.md: " + ", ".join(missing)
