"""--netrestrict in discovery: packets from other networks are dropped, unanswered."""

from __future__ import annotations

import ipaddress
import time

import trio

from p2p.discover import DiscoveryConfig, open_discovery
from p2p.discover.wire import Endpoint, PacketType, Ping, expiration_at
from tests.discover.conftest import RawPeer, make_keys

KEYS = make_keys(3, seed=515)


async def test_pings_from_outside_netrestrict_are_dropped_and_inside_answered() -> None:
    config = DiscoveryConfig(netrestrict=(ipaddress.ip_network("127.0.0.1/32"),), refresh_on_start=False)
    with trio.fail_after(10):
        async with open_discovery(KEYS[0], ("127.0.0.1", 0), config=config) as disc, \
                RawPeer(KEYS[1], host="127.0.0.2") as outside, RawPeer(KEYS[2]) as inside:
            to = ("127.0.0.1", disc.udp_port)
            for peer in (outside, inside):
                here = Endpoint(ipaddress.ip_address(peer.host), peer.port, 0)
                await peer.send(Ping(here, Endpoint(ipaddress.ip_address("127.0.0.1"), disc.udp_port, 0),
                                     expiration_at(time.time())), to)
            await inside.expect(PacketType.PONG)
            assert await outside.nothing() == []
            assert disc.stats.snapshot()["drops"]["netrestrict"] == 1
