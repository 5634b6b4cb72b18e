"""p2p.testing.open_json_process / JsonLinesProcess on small ``python -c`` children."""

from __future__ import annotations

import sys

import pytest
import trio

from p2p.testing import JsonLinesProcess, open_json_process

# Echoes each stdin line back as {"event": "echo", "text": ...}, after a greeting; exits on "quit".
ECHO = """
import json, sys
print(json.dumps({"event": "ready", "n": 0}), flush=True)
for i, line in enumerate(sys.stdin, 1):
    if line.strip() == "quit":
        break
    print(json.dumps({"event": "echo", "text": line.rstrip("\\n"), "n": i}), flush=True)
"""


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_events_in_order_and_wait_for_matches_fields() -> None:
    with trio.fail_after(20):
        async with open_json_process(python(ECHO), name="echo") as child:
            assert await child.next_event() == {"event": "ready", "n": 0}
            for word in ("a", "b", "c"):
                await child.send_line(word)
            got = await child.wait_for("echo", text="b")
            assert got == {"event": "echo", "text": "b", "n": 2}
            # the skipped event stays in .events
            assert [e.get("text") for e in child.events] == [None, "a", "b"]
            assert (await child.next_event())["text"] == "c"


async def test_fail_on_names_the_event() -> None:
    code = 'print(\'{"event": "error", "message": "boom"}\\n{"event": "late"}\', flush=True)'
    with trio.fail_after(20):
        async with open_json_process(python(code), stdin=False) as child:
            with pytest.raises(AssertionError, match="boom"):
                await child.wait_for("late", fail_on=("error",))
        # the same, as the process's default
        async with open_json_process(python(code), stdin=False, fail_on=("error",)) as child:
            with pytest.raises(AssertionError, match="boom"):
                await child.wait_for("late")


async def test_early_exit_is_a_clear_assertion_error() -> None:
    code = 'print(\'{"event": "one"}\', flush=True)'
    with trio.fail_after(20):
        async with open_json_process(python(code), stdin=False, name="short") as child:
            with pytest.raises(AssertionError, match=r"short exited .*events so far: \[\{'event': 'one'\}\]"):
                await child.wait_for("never")


async def test_a_line_that_is_not_json_is_an_assertion_error() -> None:
    with trio.fail_after(20):
        async with open_json_process(python("print('hello', flush=True)"), stdin=False) as child:
            with pytest.raises(AssertionError, match="not JSON: b'hello'"):
                await child.next_event()


async def test_context_manager_kills_a_process_that_never_ends() -> None:
    code = "import json, time; print(json.dumps({'event': 'up'}), flush=True); time.sleep(600)"
    kept: list[JsonLinesProcess] = []
    with trio.fail_after(20):
        async with open_json_process(python(code), stdin=False) as child:
            kept.append(child)
            await child.wait_for("up")
            assert child.process.returncode is None
    assert kept[0].process.returncode is not None and kept[0].process.returncode < 0  # killed by a signal


async def test_context_manager_kills_on_an_exception_in_the_body() -> None:
    kept: list[JsonLinesProcess] = []
    with trio.fail_after(20), pytest.raises(RuntimeError):
        async with open_json_process(python(ECHO)) as child:
            kept.append(child)
            await child.wait_for("ready")
            raise RuntimeError("test failed here")
    assert kept[0].process.returncode is not None
