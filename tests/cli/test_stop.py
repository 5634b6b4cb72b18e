"""SIGINT (Ctrl-C) and SIGTERM stop every long-running command and example the same way:
exit status 0, no traceback, the network told (Disconnect, chat leave), testnet's summary
printed. Each command runs as a real process whose SIGINT has its default handler, as in a
terminal."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
P2P = str(REPO / ".venv" / "bin" / "p2p")
DEADLINE = 30.0  # seconds for any one wait: generous, the machine is shared


def _default_sigint() -> None:
    # A process started in the background by a shell inherits SIGINT ignored; a terminal's
    # Ctrl-C reaches a process that has the default handler, so give it that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A process with stdin held open and its stdout read line by line with a deadline."""

    def __init__(self, argv: list[str]) -> None:
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  preexec_fn=_default_sigint, cwd=REPO)
        self.lines: list[str] = []
        self._buf = b""

    def readline(self) -> str:
        assert self.p.stdout is not None
        end = time.monotonic() + DEADLINE
        while b"\n" not in self._buf:
            left = end - time.monotonic()
            assert left > 0, f"no line from {self.p.args!r} in {DEADLINE} s; got {self.lines}"
            ready, _, _ = select.select([self.p.stdout], [], [], left)
            if ready:
                chunk = self.p.stdout.read1(65536)  # type: ignore[attr-defined]
                assert chunk, f"{self.p.args!r} ended: {self.lines}"
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        self.lines.append(line.decode())
        return self.lines[-1]

    def wait_for(self, event: str, **fields: Any) -> dict[str, Any]:
        while True:
            obj: dict[str, Any] = json.loads(self.readline())
            if obj.get("event") == event and all(obj.get(k) == v for k, v in fields.items()):
                return obj

    def stop(self, sig: int) -> tuple[int, str, str]:
        """Send ``sig``; the exit status, the rest of stdout, and stderr."""
        self.p.send_signal(sig)
        out, err = self.p.communicate(timeout=DEADLINE)
        return self.p.returncode, (self._buf + out).decode(), err.decode()

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate()


def assert_clean_stop(status: int, err: str) -> None:
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert status == 0, err


@pytest.mark.parametrize(("argv", "sig", "last"), [
    ([P2P, "node", "--addr", "127.0.0.1:0", "--json"], signal.SIGINT, {"event": "stopped"}),
    ([P2P, "node", "--addr", "127.0.0.1:0", "--nodiscover", "--json"], signal.SIGTERM, {"event": "stopped"}),
    ([P2P, "bootnode", "--addr", "127.0.0.1:0", "--json"], signal.SIGINT, {"event": "stopped"}),
    ([P2P, "bootnode", "--addr", "127.0.0.1:0", "--json"], signal.SIGTERM, {"event": "stopped"}),
], ids=["node-int", "node-term", "bootnode-int", "bootnode-term"])
def test_node_and_bootnode_stop(argv: list[str], sig: int, last: dict[str, Any]) -> None:
    proc = Proc(argv)
    try:
        proc.wait_for("listening")
        status, out, err = proc.stop(sig)
    finally:
        proc.kill()
    assert_clean_stop(status, err)
    assert json.loads(out.splitlines()[-1]) == last


@pytest.mark.parametrize(("leaver", "sig"), [
    ([P2P, "chat", "--json", "--nick", "leaver", "--nodiscover"], signal.SIGINT),
    ([P2P, "chat", "--json", "--nick", "leaver", "--nodiscover"], signal.SIGTERM),
    ([sys.executable, "examples/chat_bot.py"], signal.SIGINT),
    ([sys.executable, "examples/chat_bot.py"], signal.SIGTERM),
], ids=["chat-int", "chat-term", "chat_bot-int", "chat_bot-term"])
def test_chat_leaves_politely(leaver: list[str], sig: int) -> None:
    stayer = Proc([P2P, "chat", "--json", "--nick", "stayer", "--nodiscover"])
    other: Proc | None = None
    try:
        info = stayer.wait_for("listening")
        if "chat" in leaver:
            other = Proc([*leaver, "--staticnodes", info["enode"]])
            other_id = other.wait_for("listening")["id"]
        else:
            other = Proc([*leaver, info["enode"]])
            assert other.readline().startswith("bot listening on enode://")
            other_id = None
        added = stayer.wait_for("peer_added")
        assert other_id is None or added["id"] == other_id
        stayer.wait_for("chat_announce", kind="join")
        status, _, err = other.stop(sig)
        assert_clean_stop(status, err)
        stayer.wait_for("chat_announce", kind="leave")
        removed = stayer.wait_for("peer_removed", id=added["id"])
        assert removed["reason"] == "client_quitting" and removed["remote_requested"]
    finally:
        if other is not None:
            other.kill()
        stayer.kill()


@pytest.mark.parametrize("json_mode", [True, False], ids=["json", "live"])
def test_interrupted_testnet_prints_its_summary(json_mode: bool) -> None:
    # 30 servers each wanting 29 peers: seconds of work, so the signal lands mid-run.
    argv = [P2P, "testnet", "--nodes", "30", "--servers", "--peers", "29", "--seconds", "60", "--interval", "0.2"]
    proc = Proc(argv + (["--json"] if json_mode else []))
    try:
        if json_mode:
            proc.wait_for("progress")
        else:
            # Without a terminal the live table only prints at the end: nothing to wait for.
            # These 30 nodes take ~10 s to reach 29 peers each, and longer on a busy machine.
            time.sleep(2.5)
        status, out, err = proc.stop(signal.SIGINT)
    finally:
        proc.kill()
    assert_clean_stop(status, err)
    if json_mode:
        summary = json.loads(out.splitlines()[-1])
        assert summary["event"] == "summary" and summary["interrupted"] is True and summary["nodes"] == 30
    else:
        assert "summary" in out and "interrupted" in out
