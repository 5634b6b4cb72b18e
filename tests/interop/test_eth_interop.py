"""eth/68 against @ethereumjs/devp2p's ETH protocol (``eth_peer.mjs``, mainnet configuration).

Both sides follow mainnet: network ID 1 and mainnet's genesis. The JS side announces its own
fork ID (mainnet at its default hardfork), ours is that of a node at the start of the chain
(fc64ec04, next 1150000); each side's EIP-2124 check accepts the other's. A different
genesis ends the session on both sides.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path

import trio

from p2p import DisconnectReason, PeerAdded, PeerRemoved, PrivateKey, open_server, ServerConfig
from p2p.testing import JsonLinesProcess, open_json_process
from protocols.eth import MAINNET, MAINNET_GENESIS, MAINNET_GENESIS_HASH, Chain, EthService

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "eth_peer.mjs"
TEST_DEADLINE = 30.0


def js_peer(port: int, node_id: str, *args: str) -> AbstractAsyncContextManager[JsonLinesProcess]:
    return open_json_process(["node", str(SCRIPT), "--port", str(port), "--id", node_id, *args], cwd=HERE, stdin=False)


async def test_status_agrees_and_headers_are_served() -> None:
    key = PrivateKey.generate()
    eth = EthService(Chain.build(MAINNET_GENESIS, 10), MAINNET)
    with trio.fail_after(TEST_DEADLINE):
        async with open_server(private_key=key, protocols=[eth.protocol], config=ServerConfig(discovery=False)) as server:
            with server.events() as events:
                async with js_peer(server.tcp_port, key.public_key.to_bytes().hex(), "--request") as js:
                    status = await js.wait_for("status")
                    assert status["network"] == "1" and status["genesis"] == MAINNET_GENESIS_HASH.hex()
                    assert status["head"] == eth.chain.head.hash.hex()
                    assert (status["fork_hash"], int(status["fork_next"])) == ("fc64ec04", 1150000)
                    added = await events.receive()
                    assert isinstance(added, PeerAdded)
                    theirs = await eth.wait_ready(added.peer.id)
                    assert theirs.genesis_hash == MAINNET_GENESIS_HASH and theirs.network_id == 1
                    # ethereumjs announces mainnet at its default hardfork: a fork hash further on
                    # our own fork list, which EIP-2124 accepts (we are the one behind).
                    assert theirs.fork_id.hash in {h for h, _ in MAINNET.fork_hashes()}
                    reply = await js.wait_for("headers")
                    assert reply["request_id"] == 7 and reply["numbers"] == [0, 1, 2, 3, 4]
                    assert reply["hashes"] == [eth.chain.by_number(n).hash.hex() for n in range(5)]  # type: ignore[union-attr]
                    assert reply["hashes"][0] == MAINNET_GENESIS_HASH.hex()
                    assert reply["parents"][1:] == reply["hashes"][:-1]
                    # The session stays up after the exchange (no timeout, no error).
                    with trio.move_on_after(1.0):
                        event = await js.next_event()
                        raise AssertionError(f"unexpected event after Status: {event}")
                    assert [p.info.id for p in eth.peers()] == [added.peer.id]


async def test_different_genesis_disconnects() -> None:
    key = PrivateKey.generate()
    eth = EthService(Chain.build(MAINNET_GENESIS, 3), MAINNET)
    other_genesis = "11" * 32
    with trio.fail_after(TEST_DEADLINE):
        async with open_server(private_key=key, protocols=[eth.protocol], config=ServerConfig(discovery=False)) as server:
            with server.events() as events:
                async with js_peer(server.tcp_port, key.public_key.to_bytes().hex(), "--genesis", other_genesis) as js:
                    removed = await js.wait_for("removed")
                    assert "status" not in [e["event"] for e in js.events]
                    while True:
                        event = await events.receive()
                        if isinstance(event, PeerRemoved):
                            break
                    # Whichever side checks first ends it: our USELESS_PEER, or ethereumjs's
                    # "Genesis block mismatch" (a SUBPROTOCOL_ERROR on its side).
                    assert event.reason in (DisconnectReason.USELESS_PEER, DisconnectReason.SUBPROTOCOL_ERROR)
                    # Both sides name the same reason: our Disconnect reached its reader before the
                    # close (we read on for a moment after sending it, so the close is a FIN, not
                    # a reset that would discard the frame), or its own reason reached ours.
                    assert removed.get("reason") == int(event.reason)
                    assert eth.peers() == []
