"""Request matching, timeouts, in-flight bounds and rate limits as plain objects on a MockClock."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from p2p import FlowControl, RateLimit, RequestError, RequestLimits, RequestTimeout
from p2p.flowcontrol import PeerFlow, Verdict
from p2p.request import Requests, RequestStats, TooManyUnsolicited
from tests.typed.kv import Put, Value


def _requests(**limits: object) -> tuple[Requests, RequestStats]:
    stats = RequestStats()
    return Requests(RequestLimits(**limits), stats, trio.current_time, random.Random(1)), stats  # type: ignore[arg-type]


async def test_in_flight_bound_makes_callers_wait_for_a_slot(autojump_clock: trio.testing.MockClock) -> None:
    requests, stats = _requests(max_in_flight=2, timeout=100)
    sent: list[int] = []
    results: list[Value] = []

    async def send(request_id: int) -> None:
        sent.append(request_id)

    async def ask() -> None:
        results.append(await requests.request(send, Value))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(ask)
        await trio.sleep(1)
        assert len(sent) == 2 and requests.in_flight == 2  # three callers wait: back-pressure
        assert stats.slot_waits == 3
        for answered in range(5):
            assert requests.deliver(sent[answered], Value(True, bytes([answered])))
            await trio.sleep(1)
            assert len(sent) == min(5, answered + 3) and requests.in_flight <= 2
    assert sorted(v.value for v in results) == [bytes([i]) for i in range(5)]
    assert stats.outcomes == {"ok": 5} and len(set(sent)) == 5


async def test_a_peer_that_never_answers_frees_the_slot_at_the_timeout(autojump_clock: trio.testing.MockClock) -> None:
    requests, stats = _requests(max_in_flight=1, timeout=5)
    sent: list[float] = []

    async def send(request_id: int) -> None:
        sent.append(trio.current_time())

    started = trio.current_time()
    for _ in range(3):
        with pytest.raises(RequestTimeout):
            await requests.request(send, Value)
    assert [round(t - started) for t in sent] == [0, 5, 10] and requests.in_flight == 0
    assert stats.outcomes == {"timeout": 3}


async def test_late_unknown_and_duplicate_responses_are_dropped_and_counted(
        autojump_clock: trio.testing.MockClock) -> None:
    requests, stats = _requests(timeout=1, max_unsolicited=3)
    sent: list[int] = []

    async def send(request_id: int) -> None:
        sent.append(request_id)

    with pytest.raises(RequestTimeout):
        await requests.request(send, Value)
    assert not requests.deliver(sent[0], Value(True, b"late"))  # after its timeout: no strike
    assert not requests.deliver(sent[0] + 1000, Value(True, b"?"))  # unknown
    assert not requests.deliver(sent[0], Value(True, b"again"))  # the late one, a second time
    assert stats.unsolicited == {"late": 1, "unknown": 1, "duplicate": 1}
    with pytest.raises(TooManyUnsolicited, match="3 unsolicited"):
        requests.deliver(12345, Value(True, b"x"))
    assert stats.disconnects == 1


async def test_closing_wakes_waiting_requests(autojump_clock: trio.testing.MockClock) -> None:
    requests, stats = _requests(timeout=100, max_in_flight=1)

    async def send(request_id: int) -> None:
        pass

    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await requests.request(send, Value)
        except RequestError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        nursery.start_soon(ask)
        await trio.sleep(1)
        requests.close()
    assert len(errors) == 2 and trio.current_time() < 10
    assert stats.outcomes == {"closed": 1}


def test_rate_limit_drops_the_excess_then_disconnects_a_persistent_flooder() -> None:
    control = FlowControl((RateLimit(10.0, 5, (Put,)),), max_drops=20, drop_window=10.0)
    flow = PeerFlow(control, control.by_code(3), now=0.0)
    verdicts = [flow.admit(Put.code, now=i * 0.001)[0] for i in range(24)]
    assert verdicts[:5] == [Verdict.ADMIT] * 5
    assert verdicts[5:24] == [Verdict.DROP] * 19
    assert flow.admit(Put.code, now=0.03) == (Verdict.DISCONNECT, control.limits[0])
    # other codes are not limited, and an honest peer under the rate is never dropped
    assert flow.admit(1, now=0.03)[0] is Verdict.ADMIT
    honest = PeerFlow(control, control.by_code(3), now=0.0)
    assert all(honest.admit(Put.code, now=i * 0.11)[0] is Verdict.ADMIT for i in range(1000))


def test_flow_control_refuses_codes_outside_the_protocol() -> None:
    with pytest.raises(ValueError, match="outside"):
        FlowControl((RateLimit(1.0, 1, (7,)),)).by_code(3)
