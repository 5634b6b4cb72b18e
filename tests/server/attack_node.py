"""A node for attack tests, in a process of its own so that its memory and its event loop are
measured apart from the attackers: ``python -m tests.server.attack_node [--per-ip N]``.

Prints ``{"event": "listening", "enode": ..., "pid": ...}``; each line on stdin is answered with
``{"event": "stats", ...}``; end of stdin stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import trio

from p2p.crypto import PrivateKey
from p2p.protocol import Protocol, ProtocolConnection
from p2p.server import ServerConfig, open_server

# Code 0 has a handler; code 1 exists in the protocol but nothing handles it.
ATTACK_PROTOCOL = Protocol("bomb", version=1, length=2)


@ATTACK_PROTOCOL.handler(0)
async def _on_zero(conn: ProtocolConnection, payload: bytes) -> None:
    return None


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def main(per_ip: int) -> None:
    # A long Hello deadline: the attackers (one loaded process) may take seconds to send their
    # first frames, and every one of them should be read rather than timed out.
    async with open_server(PrivateKey.generate(), ("127.0.0.1", 0), [ATTACK_PROTOCOL], config=ServerConfig(
        discovery=False, max_pending_per_ip=per_ip, handshake_timeout=30.0, dial_timeout=40.0)) as server:
        _say(event="listening", enode=server.enode, pid=os.getpid())
        while await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
            _say(event="stats", peers=server.peer_count(),
                 disconnects=server.metrics.value("p2p_disconnects_total", reason="breach_of_protocol", side="local"),
                 hello_frames=server.metrics.value("p2p_limit_hits_total", limit="hello_frame_size"),
                 unhandled=server.metrics.messages_unhandled("bomb", 1),
                 inbound={s.labels["outcome"]: s.value for m in server.metrics.registry.collect()
                          if m.name == "p2p_inbound_connections" for s in m.samples if s.name.endswith("_total")})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-ip", type=int, default=8)
    trio.run(main, parser.parse_args().per_ip)
