"""Each example program runs and does what it says; so does every step of the tutorial."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import trio

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "writing-a-protocol.md"
STEP_TIMEOUT = 60.0


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ping_counter_is_short() -> None:
    assert len((ROOT / "examples" / "ping_counter.py").read_text().splitlines()) < 40


async def test_ping_counter(capsys) -> None:  # type: ignore[no-untyped-def]
    module = load_example("ping_counter")
    with trio.fail_after(20):
        a_pongs, b_pongs = await module.main(7)
    assert sorted(a_pongs) == list(range(7)) and sorted(b_pongs) == list(range(7))
    assert "A counted 7 pongs" in capsys.readouterr().out


async def test_chat_bot_answers(capsys) -> None:  # type: ignore[no-untyped-def]
    module = load_example("chat_bot")
    with trio.fail_after(20):
        replies = await module.demo()
    assert replies[0] == "pong, user" and replies[1] == "hi there" and replies[2] == "I have 1 peer(s)"
    out = capsys.readouterr().out
    assert "answered 'pong, user'" in out and "user got 3 answers" in out


async def test_embed_in_trio(capsys) -> None:  # type: ignore[no-untyped-def]
    module = load_example("embed_in_trio")
    with trio.fail_after(20):
        result = await module.main(0.6)
    assert result["ticks"] >= 3 and result["peers"] == 1
    assert result["events"][:2] == ["PeerAdded", "PeerRemoved"]
    assert "node saw 1 peer(s)" in capsys.readouterr().out


def tutorial_steps(part: int = 1) -> list[str]:
    """For each code block of the tutorial's ``part`` (each part is its own program), the
    program made of all that part's blocks up to it, where only the last block keeps its
    ``if __name__ == "__main__":`` part."""
    parts = TUTORIAL.read_text().split("\n# Part 2")
    assert len(parts) == 2
    blocks = re.findall(r"```python\n(.*?)```", parts[part - 1], flags=re.S)
    assert len(blocks) >= 4
    main_guard = re.compile(r'\nif __name__ == "__main__":\n(?:    .*\n?)+')
    programs = []
    for i in range(len(blocks)):
        body = [main_guard.sub("\n", b) for b in blocks[:i]] + [blocks[i]]
        programs.append("\n".join(body))
    return programs


def test_tutorial_steps_run(tmp_path: Path) -> None:
    expected = ["step 1: the codec works", "step 2: Protocol(tally/1, length=2)", "step 3: run is run",
                "step 4: A's totals [10], B was told [1, 3, 6, 10]", "step 5: the rude peer was removed"]
    _run_steps(tmp_path, "tally", tutorial_steps(1), expected)


def test_tutorial_part2_typed_request_response_steps_run(tmp_path: Path) -> None:
    expected = ["rejected: bad Publish: field number: integer with a leading zero byte\nstep 6: typed messages work",
                "step 7: Protocol(phone/1, length=3) handles codes [0, 1, 2]",
                "step 8: alice=5551234, bob=unknown",
                "step 9: silent peer: no answer within 0.5 s; flooder removed: subprotocol error, kept "]
    _run_steps(tmp_path, "phone", tutorial_steps(2), expected)


def _run_steps(tmp_path: Path, name: str, programs: list[str], expected: list[str]) -> None:
    assert len(programs) == len(expected)
    for i, program in enumerate(programs):
        path = tmp_path / f"{name}_step{i + 1}.py"
        path.write_text(program)
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                              timeout=STEP_TIMEOUT, cwd=ROOT)
        assert proc.returncode == 0, f"step {i + 1} failed:\n{proc.stdout}\n{proc.stderr}"
        assert expected[i] in proc.stdout, proc.stdout
