"""The typed layer between two real nodes on 127.0.0.1: bad payloads, late, unknown and missing
responses, floods over a rate limit."""

from __future__ import annotations

import logging

import pytest
import rlp
import trio

from p2p import DisconnectReason, PeerRemoved, RequestLimits, RequestTimeout, Server, Session
from p2p.testing import connected_pair
from tests.typed.kv import KV, Get, Put, Value, flood_limited

TIMEOUT = 15.0  # generous: the machine is shared and loaded


async def _removed(events: object, peer_id: object) -> PeerRemoved:
    async for event in events:  # type: ignore[attr-defined]
        if isinstance(event, PeerRemoved) and event.peer.id == peer_id:
            return event
    raise AssertionError("event stream ended")


def _session(kv: KV, a: Server, b: Server) -> Session:
    conn = a.connection(b.id, "kv")
    assert conn is not None
    return kv.protocol.session(conn)


async def test_typed_messages_and_requests_side_by_side_with_raw_handlers() -> None:
    a, b = KV(), KV()
    async with connected_pair([a.protocol], [b.protocol]) as (na, nb):
        conn = _session(a, na, nb)
        with trio.fail_after(TIMEOUT):
            await conn.send(Put("k", b"v" * 1000))
            assert await conn.request(Get("k")) == Value(True, b"v" * 1000)
            assert await conn.request(Get("missing")) == Value(False, b"")
            await conn.raw.send(0, rlp.encode([b"raw", b"bytes"]))  # the raw path still works
            assert await conn.request(Get("raw")) == Value(True, b"bytes")
    assert a.protocol.stats.requests.outcomes == {"ok": 3}
    text = na.metrics.render().decode()
    assert 'p2p_requests_total{outcome="ok",protocol="kv"} 3.0' in text


async def test_a_payload_that_does_not_decode_disconnects_and_the_log_names_message_and_field(
        caplog: pytest.LogCaptureFixture) -> None:
    a, b = KV(), KV()
    caplog.set_level(logging.INFO, logger="p2p.peer")
    async with connected_pair([a.protocol], [b.protocol]) as (na, nb):
        conn = na.connection(nb.id, "kv")
        assert conn is not None
        with nb.events() as events, trio.fail_after(TIMEOUT):
            await conn.send(Put.code, rlp.encode([b"key", [b"not", b"bytes"]]))
            removed = await _removed(events, na.id)
    assert removed.reason == DisconnectReason.SUBPROTOCOL_ERROR and not removed.remote_requested
    assert any("bad Put: field value: expected a byte string" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
    assert b.protocol.stats.decode_errors == {"Put": 1}
    assert 'p2p_decode_errors_total{message="Put",protocol="kv"} 1.0' in nb.metrics.render().decode()


async def test_a_response_after_its_timeout_is_dropped_and_counted() -> None:
    a, b = KV(), KV()
    async with connected_pair([a.protocol], [b.protocol]) as (na, nb):
        conn = _session(a, na, nb)
        with trio.fail_after(TIMEOUT):
            with pytest.raises(RequestTimeout):
                await conn.request(Get("k", delay_ms=500), timeout=0.1)
            while a.protocol.stats.requests.unsolicited.get("late", 0) < 1:
                await trio.sleep(0.02)
            assert await conn.request(Get("k")) == Value(False, b"")  # the peer is still fine
    assert a.protocol.stats.requests.outcomes == {"timeout": 1, "ok": 1}
    text = na.metrics.render().decode()
    assert 'p2p_responses_unsolicited_total{kind="late",protocol="kv"} 1.0' in text
    assert 'p2p_request_timeouts_total{protocol="kv"} 1.0' in text


async def test_responses_with_unknown_ids_are_counted_then_disconnect() -> None:
    a, b = KV(requests=RequestLimits(max_unsolicited=4)), KV()
    async with connected_pair([a.protocol], [b.protocol]) as (na, nb):
        rude = nb.connection(na.id, "kv")
        assert rude is not None
        with na.events() as events, trio.fail_after(TIMEOUT):
            await rude.send(Value.code, Value(True, b"?").encode_with_id(777))
            while a.protocol.stats.requests.unsolicited.get("unknown", 0) < 1:
                await trio.sleep(0.02)
            assert na.peer_count() == 1  # one is tolerated
            for request_id in range(3):
                await rude.send(Value.code, Value(True, b"?").encode_with_id(request_id))
            removed = await _removed(events, nb.id)
    assert removed.reason == DisconnectReason.SUBPROTOCOL_ERROR
    assert a.protocol.stats.requests.unsolicited == {"unknown": 4}
    assert 'p2p_unsolicited_disconnects_total{protocol="kv"} 1.0' in na.metrics.render().decode()


async def test_a_peer_that_never_answers_frees_each_slot_at_its_timeout() -> None:
    a, b = KV(requests=RequestLimits(max_in_flight=2, timeout=0.3)), KV(silent=True)
    async with connected_pair([a.protocol], [b.protocol]) as (na, nb):
        conn = _session(a, na, nb)
        outcomes: list[str] = []

        async def ask(key: str) -> None:
            try:
                await conn.request(Get(key))
            except RequestTimeout:
                outcomes.append("timeout")

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for i in range(4):
                    nursery.start_soon(ask, str(i))
        assert outcomes == ["timeout"] * 4 and conn.requests.in_flight == 0
        assert b.served == 4  # each of the last two went out once a slot freed
        assert a.protocol.stats.requests.slot_waits == 2 and na.peer_count() == 1


async def test_a_flood_over_the_rate_limit_is_dropped_counted_then_disconnected() -> None:
    a, b = KV(), KV(flow=flood_limited(rate=10.0, burst=5, max_drops=20))
    async with connected_pair([a.protocol], [b.protocol]) as (na, nb):
        conn = _session(a, na, nb)
        with nb.events() as events, trio.fail_after(TIMEOUT):
            for i in range(200):
                try:
                    await conn.send(Put(str(i), b"x"))
                except trio.ClosedResourceError:
                    break  # disconnected while flooding
            removed = await _removed(events, na.id)
    assert removed.reason == DisconnectReason.SUBPROTOCOL_ERROR
    assert 5 <= len(b.data) < 30  # the burst (and what the rate refilled), not the flood
    assert b.protocol.stats.rate_limited["Put"] >= 20 and b.protocol.stats.flood_disconnects == 1
    text = nb.metrics.render().decode()
    assert 'p2p_rate_limited_total{limit="Put",protocol="kv"}' in text
    assert 'p2p_flood_disconnects_total{protocol="kv"} 1.0' in text


async def test_an_honest_peer_is_served_while_another_floods() -> None:
    """Rate limits are per peer: a flooder is cut off while an honest peer's puts and requests
    to the same node keep being answered."""
    from p2p import ServerConfig, open_server

    flooder, victim, honest = KV(), KV(flow=flood_limited(rate=10.0, burst=5, max_drops=20)), KV()
    async with connected_pair([flooder.protocol], [victim.protocol]) as (nf, nv), \
            open_server(None, ("127.0.0.2", 0), [honest.protocol], ServerConfig(discovery=False)) as nh:
        with trio.fail_after(TIMEOUT):
            await nh.connect(nv.local_node)
            while nv.connection(nh.id, "kv") is None:
                await trio.sleep(0.01)
        honest_conn = _session(honest, nh, nv)
        flood_conn = _session(flooder, nf, nv)
        answers: list[Value] = []

        async def flood() -> None:
            for i in range(500):
                try:
                    await flood_conn.send(Put(f"f{i}", b"x" * 512))
                except trio.ClosedResourceError:
                    return

        async def behave() -> None:
            for i in range(3):
                await honest_conn.send(Put(f"h{i}", b"honest"))
                answer = await honest_conn.request(Get(f"h{i}"), timeout=TIMEOUT)
                assert isinstance(answer, Value)
                answers.append(answer)
                await trio.sleep(0.2)  # well under the 10/s rate

        with nv.events() as events, trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as n:
                n.start_soon(flood)
                n.start_soon(behave)
            removed = await _removed(events, nf.id)
        assert removed.reason == DisconnectReason.SUBPROTOCOL_ERROR
        assert [a.value for a in answers] == [b"honest"] * 3
        assert any(p.id == nh.id for p in nv.peers())
        assert victim.protocol.stats.flood_disconnects == 1
