"""The simulator's null identity scheme: usable inside a simulation only, and refused as bad
input by real nodes (default decoders, a real UDP socket)."""

from __future__ import annotations

import ipaddress
import random
import socket
import time

import pytest
import trio

from p2p.crypto import PrivateKey
from p2p.discover import DiscoveryConfig, open_discovery
from p2p.discover.errors import BadPacketSignature
from p2p.discover.wire import Endpoint, Ping, decode_packet, encode_packet, expiration_at
from p2p.enode import ENR, ENRError
from p2p.enode.identity import NullIdentity, NullIdentityRefused, NullKey, simulation_scope

KEY = PrivateKey.generate(random.Random(7))


def _ping(key: PrivateKey) -> bytes:
    ep = Endpoint(ipaddress.ip_address("127.0.0.1"), 30303, 0)
    datagram, _ = encode_packet(key, Ping(ep, ep, expiration_at(time.time())))
    return datagram


def test_null_scheme_cannot_be_made_outside_a_simulation() -> None:
    with pytest.raises(NullIdentityRefused):
        NullKey.of(KEY)
    with pytest.raises(NullIdentityRefused):
        NullIdentity()


def test_null_scheme_made_inside_refuses_to_work_outside() -> None:
    with simulation_scope():
        key = NullKey.of(KEY)
        identity = NullIdentity()
        datagram = _ping(key)
        record = ENR.build(key, 1, ip="127.0.0.1", udp=30303)
        # inside, the simulation's decoders accept them, naming the right signer
        assert decode_packet(datagram, recover=identity.recover).sender == KEY.public_key
        assert identity.decode_record(record.to_rlp()).node_id == record.node_id
    with pytest.raises(NullIdentityRefused):
        key.sign(bytes(32))
    with pytest.raises(NullIdentityRefused):
        decode_packet(datagram, recover=identity.recover)
    with pytest.raises(NullIdentityRefused):
        identity.decode_record(record.to_rlp())


def test_real_decoders_refuse_null_packets_and_records() -> None:
    with simulation_scope():
        key = NullKey.of(KEY)
        datagram = _ping(key)
        record = ENR.build(key, 1, ip="127.0.0.1", udp=30303).to_rlp()
        with pytest.raises(BadPacketSignature):  # refused even inside: the default decoder is the real one
            decode_packet(datagram)
    with pytest.raises(BadPacketSignature):
        decode_packet(datagram)
    with pytest.raises(ENRError, match="signature"):
        ENR.from_rlp(record)


def test_the_null_scheme_does_not_accept_real_signatures() -> None:
    real = _ping(KEY)
    with simulation_scope():
        identity = NullIdentity()
        with pytest.raises(BadPacketSignature):
            decode_packet(real, recover=identity.recover)
        with pytest.raises(ENRError):
            identity.decode_record(ENR.build(KEY, 1).to_rlp())


async def test_a_real_node_drops_and_counts_null_packets() -> None:
    with simulation_scope():
        datagram = _ping(NullKey.of(KEY))
    async with open_discovery(PrivateKey.generate(random.Random(8)), ("127.0.0.1", 0),
                              config=DiscoveryConfig(refresh_on_start=False, revalidate=False)) as disc:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            await sock.bind(("127.0.0.1", 0))
            await sock.sendto(datagram, disc.local_address)
            with trio.fail_after(5):
                while disc.stats.drops["bad_signature"] == 0:
                    await trio.sleep(0.01)
            with trio.move_on_after(0.3):  # no Pong comes back
                await sock.recv(2048)
                pytest.fail("a null-signed Ping was answered")
        assert disc.stats.packets_in["ping"] == 0
        assert len(disc.table) == 0


async def test_the_null_scheme_is_refused_on_a_real_socket() -> None:
    with simulation_scope():
        config = DiscoveryConfig(identity=NullIdentity())
        with pytest.raises(NullIdentityRefused):
            async with open_discovery(KEY, ("127.0.0.1", 0), config=config):
                pass  # pragma: no cover
