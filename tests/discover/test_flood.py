"""Bad input under load: 10,000 packets from many senders, malformed and well-formed alike.

Nothing may crash, the service's own structures stay within their bounds, memory stays
flat, and a bonded peer's pings are answered throughout.
"""

from __future__ import annotations

import gc
import ipaddress
import random
import socket
import time

import psutil
import trio

from p2p.crypto import PrivateKey
from p2p.crypto.keccak import keccak256
from p2p.discover import DiscoveryConfig, RequestTimeout, open_discovery
from p2p.discover.wire import (
    ENRRequest,
    Endpoint,
    FindNode,
    Ping,
    encode_packet,
    encode_rlp,
    expiration_at,
    seal,
)
from tests.discover.conftest import make_keys

TOTAL = 10_000
SENDERS = 20  # sockets
SPOOFED_KEYS = 300  # distinct keys among the well-formed packets
SERVICE = DiscoveryConfig(refresh_on_start=False, revalidate=False)
PEER = DiscoveryConfig(refresh_on_start=False, revalidate=False, reply_timeout=2.0)


def _flood(port: int, rng: random.Random, keys: list[PrivateKey]) -> list[bytes]:
    now = time.time()
    loop = ipaddress.ip_address("127.0.0.1")
    target = Endpoint(loop, port, 0)
    valid_ping = encode_packet(keys[0], Ping(Endpoint(loop, 1, 1), target, expiration_at(now), 1))[0]
    packets: list[bytes] = []
    for i in range(TOTAL):
        kind = i % 10
        key = keys[i % len(keys)]
        if kind == 0:
            packets.append(rng.randbytes(rng.randrange(0, 1400)))  # random bytes of any size
        elif kind == 1:
            packets.append(valid_ping[: rng.randrange(0, len(valid_ping))])  # truncated
        elif kind == 2:
            packets.append(valid_ping + rng.randbytes(1281 - len(valid_ping) + rng.randrange(200)))  # oversized
        elif kind == 3:
            bad = bytearray(valid_ping)
            bad[rng.randrange(32, len(bad))] ^= 0xFF
            packets.append(bytes(bad))  # bad hash
        elif kind == 4:
            rest = b"\x00" * 65 + valid_ping[97:]
            packets.append(keccak256(rest) + rest)  # bad signature
        elif kind == 5:
            packets.append(encode_packet(key, Ping(Endpoint(loop, 1, 1), target, int(now) - 30, 1))[0])  # expired
        elif kind == 6:
            body = encode_rlp([[1], b"x", [[b"y"]], rng.randrange(1 << 32)])
            packets.append(seal(key, rng.choice([1, 2, 3, 4, 5, 6]), body)[0])  # wrong types
        elif kind == 7:
            packets.append(seal(key, rng.choice([0, 7, 99, 255]), encode_rlp([1, 2, 3]))[0])  # unknown type
        elif kind == 8:
            packets.append(encode_packet(key, FindNode(rng.randbytes(64), expiration_at(now)))[0])  # unbonded
        else:
            # well-formed pings from strangers: answered, ping-backs bounded
            packets.append(encode_packet(key, Ping(Endpoint(loop, 1, 1), target, expiration_at(now), 1))[0]
                           if i % 20 == 9 else encode_packet(key, ENRRequest(expiration_at(now)))[0])
    return packets


async def test_flood_from_many_senders_is_survived() -> None:
    keys = make_keys(SPOOFED_KEYS, seed=31337)
    proc = psutil.Process()
    with trio.fail_after(60):
        async with open_discovery(make_keys(1, seed=1)[0], config=SERVICE) as target, \
                open_discovery(make_keys(1, seed=2)[0], config=PEER) as peer:
            await peer.ping(target.local_node)  # the valid peer is bonded before the flood
            packets = _flood(target.udp_port, random.Random(9), keys)
            gc.collect()
            rss_before = proc.memory_info().rss
            answered: list[float] = []
            failed = 0
            flooding = True

            async def keep_pinging() -> None:
                nonlocal failed
                while flooding:
                    t0 = trio.current_time()
                    try:
                        await peer.ping(target.local_node)
                        answered.append(trio.current_time() - t0)
                    except RequestTimeout:
                        failed += 1
                    await trio.sleep(0.02)

            async def send_share(share: list[bytes]) -> None:
                with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    await s.bind(("127.0.0.1", 0))
                    for i, data in enumerate(share):
                        await s.sendto(data, ("127.0.0.1", target.udp_port))
                        if i % 50 == 49:
                            await trio.sleep(0)  # interleave the senders
                            assert target.v4.pending <= target.config.max_pending
                            assert target.v4.background <= target.config.max_background

            async with trio.open_nursery() as n:
                n.start_soon(keep_pinging)
                async with trio.open_nursery() as senders:
                    for k in range(SENDERS):
                        senders.start_soon(send_share, packets[k::SENDERS])
                # let the service drain what the kernel queued
                with trio.move_on_after(10):
                    while sum(target.stats.drops.values()) + sum(target.stats.packets_in.values()) \
                            < 0.5 * TOTAL:
                        await trio.sleep(0.05)
                await trio.sleep(0.3)
                flooding = False
            gc.collect()
            growth = proc.memory_info().rss - rss_before
            stats = target.stats
            handled = sum(stats.drops.values()) + sum(stats.packets_in.values())
            print(f"\nflood: handled {handled} of {TOTAL} datagrams, drops {dict(stats.drops)}, "
                  f"in {dict(stats.packets_in)}, peer pings answered {len(answered)} "
                  f"(max {max(answered, default=0):.3f} s), failed {failed}, rss +{growth / 1e6:.1f} MB")
            # every rejection reason was seen and counted
            for reason in ("too_small", "too_large", "bad_hash", "bad_signature", "expired", "bad_fields",
                           "unknown_type", "unknown_node"):
                assert stats.drops[reason] > 0, reason
            assert answered and failed == 0
            assert target.v4.pending <= target.config.max_pending
            assert target.v4.background <= target.config.max_background
            assert growth < 40e6
            # and it still serves: a fresh bond works
            await peer.ping(target.local_node)
