"""Snappy bombers in a process of their own, so that their CPU does not slow the honest peer
that the test measures: ``python -m tests.server.bomber ENODE --peers N``.

Each bomber completes Hello, sends snappy bombs under the attack protocol's unhandled code
until the node disconnects it, and connects again, as a determined attacker would. Prints
``{"event": "bombing"}`` once every bomber has sent a bomb, and on end of stdin stops and prints
``{"event": "done", "connections": ..., "bombs": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import trio

from p2p.crypto import PrivateKey
from p2p.enode import Node
from p2p.peer import exchange_hello, make_hello
from p2p.rlpx import RLPxError, connect, snappy
from tests.server.attack_node import ATTACK_PROTOCOL

BOMB = snappy.compress(bytes(16 * 1024 * 1024 - 1))  # ~770 KiB on the wire, 16 MiB decompressed
UNHANDLED_CODE = 16 + 1  # the attack protocol's code 1, which has no handler
MAX_CONNECTIONS = 2000  # bound on each bomber's reconnections
MAX_BOMBS = 1000  # bound on the bombs of one connection


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def bomber(target: Node, counts: dict[str, int], started: set[int], index: int, total: int) -> None:
    for _ in range(MAX_CONNECTIONS):
        key = PrivateKey.generate()
        try:
            conn = await connect(str(target.ip), target.tcp_port, key, target.pubkey)
        except RLPxError:
            await trio.sleep(0.05)
            continue
        counts["connections"] += 1
        try:
            await exchange_hello(conn, make_hello(key.public_key, [ATTACK_PROTOCOL], client_id="bomber",
                                                  listen_port=0))
            conn.snappy = False  # BOMB is compressed already: the node reads it as snappy
            for _ in range(MAX_BOMBS):
                await conn.send(UNHANDLED_CODE, BOMB)
                counts["bombs"] += 1
                if index not in started:
                    started.add(index)
                    if len(started) == total:
                        _say(event="bombing")
        except Exception:  # disconnected by the node, as expected: come back
            pass
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()


async def main(enode: str, peers: int) -> None:
    target = Node.from_url(enode)
    counts = {"connections": 0, "bombs": 0}
    started: set[int] = set()
    async with trio.open_nursery() as nursery:
        for i in range(peers):
            nursery.start_soon(bomber, target, counts, started, i, peers)
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
        nursery.cancel_scope.cancel()
    _say(event="done", **counts)


if __name__ == "__main__":
    # On the internet the attackers' CPU is their own; here they share the node's two cores, so
    # they yield them to the node and to the honest peer being measured.
    os.nice(19)
    parser = argparse.ArgumentParser()
    parser.add_argument("enode")
    parser.add_argument("--peers", type=int, default=20)
    args = parser.parse_args()
    trio.run(main, args.enode, args.peers)
