"""Idle connections must not lock out new peers: a flood of connections that send nothing,
from one address, while an honest peer from another loopback address keeps connecting."""

from __future__ import annotations

import pytest
import trio

from p2p.crypto import PrivateKey
from p2p.protocol import Protocol
from p2p.server import Server, ServerConfig, open_server
from tests.server.helpers import bare_client

ATTACK_CONNECTIONS = 500  # idle connections the attacker keeps open (reopened when closed)
REOPENS_PER_CONNECTION = 400  # bound on each attacker task's loop
HONEST_TRIES = 10
HONEST_DEADLINE = 2.0  # seconds each honest connection may take, Hello included

proto = Protocol("idle", version=1, length=1)


@proto.handler(0)
async def _ignore(conn: object, payload: bytes) -> None:
    return None


async def _idle_connection(port: int, stop: trio.Event, opened: list[int]) -> None:
    """Keep one connection to the server open and silent; when the server closes it, open another."""
    for _ in range(REOPENS_PER_CONNECTION):
        if stop.is_set():
            return
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.05)
            continue
        opened[0] += 1
        async with stream:
            with trio.move_on_after(30):
                try:
                    while await stream.receive_some(4096):
                        pass
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        await trio.sleep(0.01)  # closed by the server: come back at once, as an attacker would


async def _honest_under_attack(server: Server) -> tuple[int, list[float]]:
    """Run the attack and let an honest peer from 127.0.0.2 connect HONEST_TRIES times."""
    stop = trio.Event()
    opened = [0]
    times: list[float] = []
    async with trio.open_nursery() as nursery:
        for _ in range(ATTACK_CONNECTIONS):
            nursery.start_soon(_idle_connection, server.tcp_port, stop, opened)
        while opened[0] < ATTACK_CONNECTIONS:  # every attacker is connected before we try
            await trio.sleep(0.05)
        await trio.sleep(1.5)  # past the auth deadline: the attack is in its steady state
        for _ in range(HONEST_TRIES):
            start = trio.current_time()
            with trio.move_on_after(HONEST_DEADLINE):
                conn, _hello = await bare_client(server.local_node, PrivateKey.generate(), [proto],
                                                 local_address="127.0.0.2")
                times.append(trio.current_time() - start)
                await conn.aclose()
        stop.set()
        nursery.cancel_scope.cancel()
    return opened[0], times


@pytest.mark.timeout(120)
async def test_idle_flood_from_one_address_does_not_lock_out_another() -> None:
    with trio.fail_after(90):
        async with open_server(PrivateKey.generate(), ("127.0.0.1", 0), [proto], config=ServerConfig(
            discovery=False)) as server:
            opened, times = await _honest_under_attack(server)
            print(f"attack connections opened: {opened}; honest connects: {len(times)}/{HONEST_TRIES}, "
                  f"slowest {max(times, default=0):.3f} s")
            assert len(times) == HONEST_TRIES
            assert server.metrics.value("p2p_limit_hits_total", limit="pending_per_ip") > 0
            assert server.metrics.value("p2p_inbound_connections_total", outcome="auth_timeout") > 0


@pytest.mark.timeout(120)
async def test_idle_flood_from_many_addresses_is_evicted_for_newcomers() -> None:
    # With no per-address cap (as when an attacker has many IPv6 addresses), every slot is taken
    # by idle connections: a newcomer replaces the oldest of them.
    with trio.fail_after(90):
        async with open_server(PrivateKey.generate(), ("127.0.0.1", 0), [proto], config=ServerConfig(
            discovery=False, max_pending_per_ip=ATTACK_CONNECTIONS)) as server:
            opened, times = await _honest_under_attack(server)
            print(f"attack connections opened: {opened}; honest connects: {len(times)}/{HONEST_TRIES}, "
                  f"slowest {max(times, default=0):.3f} s")
            assert len(times) == HONEST_TRIES
            assert server.metrics.value("p2p_limit_hits_total", limit="pending_evicted") > 0
