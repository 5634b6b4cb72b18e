"""The simulator's network model does what its flags declare: each link has one delay, and the
delays of many links follow the declared distribution, loss happens at the declared rate, a node behind NAT hears only from whom it sent to
within the NAT timeout (shown end to end through MemoryNetwork under trio's MockClock), churn
events arrive as the declared Poisson process, and the parsers take the listed forms only.

The statistical tests are seeded, so they repeat exactly; their tolerances are still derived from
the sample size (Z standard errors), so that they would pass for any seed and fail for a wrong
distribution, not merely for the one draw."""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Callable

import pytest
import trio
import trio.testing

from p2p.discover.transport import MemoryEndpoint, MemoryNetwork
from p2p.sim.netmodel import (
    CHURN_FORMS,
    DURATION_FORMS,
    LATENCY_FORMS,
    MAX_CHURN_PER_HOUR,
    NAT_SWEEP_MIN,
    NAT_TIMEOUT,
    SHARE_FORMS,
    ChurnRate,
    NetworkModel,
    churn_events,
    parse_churn,
    parse_duration,
    parse_latency,
    parse_loss,
    parse_share,
)

SAMPLES = 20_000
Z = 5.0  # standard errors allowed: a correct model fails one such check with odds below 1 in 10^6
A: tuple[str, int] = ("127.0.0.1", 30303)
B: tuple[str, int] = ("127.0.0.2", 30303)
C: tuple[str, int] = ("127.0.0.3", 30303)


def _close(value: float, expected: float, stderr: float) -> bool:
    return abs(value - expected) <= Z * stderr


class FakeClock:
    """Virtual seconds for the model used without trio (unit tests of its bookkeeping)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ---- latency --------------------------------------------------------------------------------


def _peer(i: int) -> tuple[str, int]:
    return f"127.{1 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}", 30303


def _samples(spec: str, seed: int = 1) -> list[float]:
    """The delays of SAMPLES distinct links, as the network asks for them."""
    model = NetworkModel(latency=parse_latency(spec), rng=random.Random(seed))
    return [model.latency_hook(b"", A, _peer(i)) for i in range(SAMPLES)]


def test_fixed_latency_is_always_the_declared_value() -> None:
    assert set(_samples("30ms")) == {0.03}
    assert set(_samples("0")) == {0.0}


def test_uniform_latency_covers_its_range_evenly() -> None:
    low, high = 0.010, 0.100
    xs = _samples("uniform:10ms-100ms")
    assert low <= min(xs) and max(xs) <= high
    # with 20 000 draws, nothing within 0.1% of either end has odds (0.999)^20000 = e^-20
    assert min(xs) < low + (high - low) * 1e-3 and max(xs) > high - (high - low) * 1e-3
    sd = (high - low) / math.sqrt(12)
    assert _close(statistics.fmean(xs), (low + high) / 2, sd / math.sqrt(SAMPLES))
    assert _close(statistics.median(xs), (low + high) / 2, sd / math.sqrt(SAMPLES) * 1.3)
    below_quarter = sum(x < low + (high - low) / 4 for x in xs) / SAMPLES
    assert _close(below_quarter, 0.25, math.sqrt(0.25 * 0.75 / SAMPLES))


def test_normal_latency_has_the_declared_mean_and_deviation() -> None:
    xs = _samples("normal:50ms,10ms")
    assert _close(statistics.fmean(xs), 0.050, 0.010 / math.sqrt(SAMPLES))
    assert _close(statistics.stdev(xs), 0.010, 0.010 / math.sqrt(2 * SAMPLES))
    assert min(xs) >= 0.0


def test_normal_latency_is_clipped_at_zero_not_redrawn() -> None:
    # mean 10 ms, sd 20 ms: P(X < 0) = Phi(-0.5) = 0.3085; those become exactly 0
    xs = _samples("normal:10ms,20ms")
    assert min(xs) == 0.0
    p = statistics.NormalDist().cdf(-0.5)
    zeros = sum(x == 0.0 for x in xs) / SAMPLES
    assert _close(zeros, p, math.sqrt(p * (1 - p) / SAMPLES))


def test_lognormal_latency_has_the_declared_median_and_sigma() -> None:
    xs = _samples("lognormal:50ms,0.5")
    assert min(xs) > 0.0
    below_median = sum(x < 0.050 for x in xs) / SAMPLES
    assert _close(below_median, 0.5, math.sqrt(0.25 / SAMPLES))
    logs = [math.log(x) for x in xs]
    assert _close(statistics.fmean(logs), math.log(0.050), 0.5 / math.sqrt(SAMPLES))
    assert _close(statistics.stdev(logs), 0.5, 0.5 / math.sqrt(2 * SAMPLES))


def test_descriptions_name_the_distribution() -> None:
    assert parse_latency("uniform:10ms-100ms").describe() == "uniform 10ms-100ms"
    assert parse_latency("30ms").describe() == "fixed 30ms"
    assert parse_latency("normal:50ms,10ms").describe() == "normal 50ms sd 10ms (clipped at 0)"
    assert parse_latency("lognormal:50ms,0.5").describe() == "lognormal median 50ms sigma 0.5"


async def _wire(model: NetworkModel, *addrs: tuple[str, int], queue: int = 1024) -> list[MemoryEndpoint]:
    net = MemoryNetwork(loss=model.loss_hook, latency=model.latency_hook, queue_size=queue)
    return [net.endpoint(*addr) for addr in addrs]


async def _receive_within(ep: MemoryEndpoint, seconds: float) -> tuple[bytes, tuple[str, int]] | None:
    with trio.move_on_after(seconds):
        return await ep.receive()
    return None


async def test_latency_delays_datagrams_through_memory_network(autojump_clock: trio.testing.MockClock) -> None:
    count, low, high = 500, 0.010, 0.100
    model = NetworkModel(latency=parse_latency("uniform:10ms-100ms"), rng=random.Random(2))
    a, *peers = await _wire(model, A, *(_peer(i) for i in range(count)))
    delays = []
    for i, peer in enumerate(peers):
        sent = trio.current_time()
        await a.send(i.to_bytes(2, "big"), peer.local_address)
        got = await _receive_within(peer, 1.0)
        assert got == (i.to_bytes(2, "big"), A)
        delays.append(trio.current_time() - sent)  # the mock clock jumps to the moment it is due
    assert low <= min(delays) and max(delays) <= high + 1e-9
    assert _close(statistics.fmean(delays), (low + high) / 2, (high - low) / math.sqrt(12 * count))


async def test_a_link_keeps_its_delay_and_its_order(autojump_clock: trio.testing.MockClock) -> None:
    model = NetworkModel(latency=parse_latency("uniform:10ms-100ms"), rng=random.Random(5))
    a, b = await _wire(model, A, B)
    expected = model.link_latency(A, B)
    for burst in range(3):
        sent = trio.current_time()
        for i in range(5):  # back to back: one link delays them alike, so they arrive in order
            await a.send(bytes([burst, i]), B)
        for i in range(5):
            got = await _receive_within(b, 1.0)
            assert got == (bytes([burst, i]), A)
            assert trio.current_time() - sent == pytest.approx(expected)
        sent = trio.current_time()
        await b.send(b"back", A)  # the way back takes as long
        assert await _receive_within(a, 1.0) == (b"back", B)
        assert trio.current_time() - sent == pytest.approx(expected)


def test_each_link_has_one_delay_both_ways_and_seeds_differ() -> None:
    model = NetworkModel(latency=parse_latency("uniform:10ms-100ms"), rng=random.Random(3))
    again = NetworkModel(latency=parse_latency("uniform:10ms-100ms"), rng=random.Random(3))
    other = NetworkModel(latency=parse_latency("uniform:10ms-100ms"), rng=random.Random(4))
    links = [(_peer(i), _peer(i + 1)) for i in range(2000)]
    first = [model.latency_hook(b"x", s, d) for s, d in links]
    assert [model.latency_hook(b"other data", d, s) for s, d in links] == first
    assert [again.link_latency(s, d) for s, d in links] == first  # a seeded run repeats exactly
    redrawn = [other.link_latency(s, d) for s, d in links]
    assert sum(x == y for x, y in zip(first, redrawn)) == 0
    # another seed draws anew: the two runs' delays of a link are uncorrelated
    assert abs(statistics.correlation(first, redrawn)) < Z / math.sqrt(len(links))


# ---- loss -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [0.0, 0.05, 0.3])
async def test_loss_drops_datagrams_at_the_declared_rate(autojump_clock: trio.testing.MockClock, loss: float) -> None:
    count = 5000
    model = NetworkModel(latency=parse_latency("0"), loss=loss, rng=random.Random(4))
    a, b = await _wire(model, A, B, queue=count)
    for i in range(count):
        a.send_nowait(i.to_bytes(2, "big"), B)
    received = 0
    while await _receive_within(b, 1.0) is not None:
        received += 1
    dropped = count - received
    assert model.counters == {"sent": count, "dropped_loss": dropped, "dropped_nat": 0, "nat_evicted": 0}
    if loss == 0.0:
        assert dropped == 0
    else:
        assert _close(dropped, count * loss, math.sqrt(count * loss * (1 - loss)))


@pytest.mark.parametrize("loss", [0.01, 0.3])
def test_loss_rate_is_exact_over_many_datagrams(loss: float) -> None:
    n = 200_000  # enough that a rate 5% off the declared one lies outside the tolerance
    model = NetworkModel(latency=parse_latency("0"), loss=loss, rng=random.Random(16), clock=FakeClock())
    dropped = sum(model.loss_hook(b"", A, B) for _ in range(n))
    assert model.counters["dropped_loss"] == dropped
    assert _close(dropped, n * loss, math.sqrt(n * loss * (1 - loss)))


def test_each_datagram_is_lost_independently() -> None:
    # a run of losses as long as a fixed pattern would produce is what independence rules out:
    # the share of losses right after a loss is the loss rate itself
    loss, n = 0.2, SAMPLES
    model = NetworkModel(latency=parse_latency("0"), loss=loss, rng=random.Random(5), clock=FakeClock())
    lost = [model.loss_hook(b"", A, B) for _ in range(n)]
    after_loss = [b for a, b in zip(lost, lost[1:]) if a]
    share = sum(after_loss) / len(after_loss)
    assert _close(share, loss, math.sqrt(loss * (1 - loss) / len(after_loss)))


# ---- NAT ------------------------------------------------------------------------------------


def _nat_model() -> NetworkModel:
    model = NetworkModel(latency=parse_latency("20ms"), rng=random.Random(6))
    model.add_node(A, nat=True)
    model.add_node(B, nat=False)
    model.add_node(C, nat=False)
    return model


async def test_a_node_behind_nat_receives_nothing_unsolicited(autojump_clock: trio.testing.MockClock) -> None:
    model = _nat_model()
    a, b, c = await _wire(model, A, B, C)
    for _ in range(10):
        await b.send(b"hello", A)
    assert await _receive_within(a, 60.0) is None
    assert model.counters["dropped_nat"] == 10
    # the other way round works: B is public
    await a.send(b"ping", B)
    assert await _receive_within(b, 1.0) == (b"ping", A)


async def test_replies_reach_a_nated_node_within_the_timeout_and_not_after(autojump_clock: trio.testing.MockClock) -> None:
    model = _nat_model()
    a, b, c = await _wire(model, A, B, C)
    sent = trio.current_time()
    await a.send(b"ping", B)
    assert await _receive_within(b, 1.0) == (b"ping", A)
    await b.send(b"pong", A)
    assert await _receive_within(a, 1.0) == (b"pong", B)
    # only the address A sent to gets through: C is filtered while A's mapping for B is open
    await c.send(b"hi", A)
    assert await _receive_within(a, 1.0) is None
    # B later, still within NAT_TIMEOUT of A's send
    await trio.sleep_until(sent + NAT_TIMEOUT - 1.0)
    await b.send(b"late pong", A)
    assert await _receive_within(a, 1.0) == (b"late pong", B)
    # and once the mapping has expired, nothing
    await trio.sleep_until(sent + NAT_TIMEOUT + 1.0)
    await b.send(b"too late", A)
    assert await _receive_within(a, 10.0) is None
    assert model.counters["dropped_nat"] == 2
    # an outbound datagram opens it again (RFC 4787 REQ-6: outbound refresh)
    await a.send(b"ping again", B)
    await _receive_within(b, 1.0)
    await b.send(b"pong again", A)
    assert await _receive_within(a, 1.0) == (b"pong again", B)


async def test_inbound_traffic_does_not_keep_a_mapping_open(autojump_clock: trio.testing.MockClock) -> None:
    model = _nat_model()
    a, b, c = await _wire(model, A, B, C)
    opened = trio.current_time()
    await a.send(b"ping", B)
    received = []
    for k in range(24):  # a tick from B every 10 s for twice the NAT timeout, each delivered (A hears it)
        await trio.sleep_until(opened + 10.0 * k)
        await b.send(b"tick", A)
        if await _receive_within(a, 1.0) is not None:
            received.append(k)
    assert received == list(range(12))  # the ticks sent before 120 s; A's hearing them did not extend it
    assert model.counters["dropped_nat"] == 12


def test_two_nodes_behind_nat_reach_each_other_only_once_both_have_sent() -> None:
    clock = FakeClock()
    model = NetworkModel(latency=parse_latency("0"), rng=random.Random(7), clock=clock)
    model.add_node(A, nat=True)
    model.add_node(B, nat=True)
    assert model.loss_hook(b"", A, B)  # dropped at B's NAT, but A's mapping for B is open now
    assert not model.loss_hook(b"", B, A)  # so B's datagram gets through, and opens B's mapping
    assert not model.loss_hook(b"", A, B)


def test_a_node_placed_at_a_departed_nodes_address_does_not_inherit_its_mappings() -> None:
    clock = FakeClock()
    model = NetworkModel(latency=parse_latency("0"), rng=random.Random(7), clock=clock)
    model.add_node(A, nat=True)
    model.loss_hook(b"", A, B)
    assert not model.loss_hook(b"", B, A)
    model.remove_node(A)
    assert not model.behind_nat(A)
    clock.now = 1.0
    model.add_node(A, nat=True)
    assert model.loss_hook(b"", B, A)


def test_nat_mappings_are_bounded_by_expiry() -> None:
    clock = FakeClock()
    model = NetworkModel(latency=parse_latency("0"), rng=random.Random(8), clock=clock, nat_timeout=10.0)
    model.add_node(A, nat=True)
    peak = 0
    for i in range(50_000):
        clock.now = i * 0.1  # 100 new peers within any 10 s
        model.loss_hook(b"", A, ("127.1.0.1", i))
        peak = max(peak, model.mapping_count)
    assert peak <= NAT_SWEEP_MIN + 1
    assert model.counters["nat_evicted"] == 0
    assert not model.loss_hook(b"", ("127.1.0.1", 49_999), A)  # the newest mapping is still open
    assert model.loss_hook(b"", ("127.1.0.1", 0), A)  # the first one expired


def test_nat_mappings_are_bounded_by_count_oldest_first() -> None:
    clock = FakeClock()
    model = NetworkModel(latency=parse_latency("0"), rng=random.Random(9), clock=clock, max_mappings=500)
    model.add_node(A, nat=True)
    model.loss_hook(b"", A, B)
    for i in range(5000):  # all at one instant: none has expired
        model.loss_hook(b"", A, ("127.1.0.1", i))
        if i == 400:
            model.loss_hook(b"", A, B)  # used again: now among the newest, so kept at the first eviction
        assert model.mapping_count <= 501
        if i == 520:
            assert model.counters["nat_evicted"] > 0 and not model.loss_hook(b"", B, A)
    assert model.counters["nat_evicted"] >= 4500
    assert not model.loss_hook(b"", ("127.1.0.1", 4999), A)
    assert model.loss_hook(b"", ("127.1.0.1", 0), A)


@pytest.mark.parametrize(("share", "nodes", "behind"), [(0.3, 10, 3), (0.3, 1000, 300), (0.0, 100, 0), (1.0, 100, 100),
                                                        (0.25, 7, 2)])
def test_the_declared_share_of_nodes_is_behind_nat(share: float, nodes: int, behind: int) -> None:
    model = NetworkModel(latency=parse_latency("0"), nat_share=share, rng=random.Random(10))
    placed = [model.add_node(("127.0.0.1", 30000 + i)) for i in range(nodes)]
    assert abs(sum(placed) - behind) <= 1
    assert sum(model.behind_nat(("127.0.0.1", 30000 + i)) for i in range(nodes)) == sum(placed) == model.nat_nodes
    assert not model.add_node(("127.0.0.2", 1), nat=False)


def test_which_nodes_are_behind_nat_depends_on_the_seed() -> None:
    def layout(seed: int) -> list[bool]:
        model = NetworkModel(latency=parse_latency("0"), nat_share=0.5, rng=random.Random(seed))
        return [model.add_node(("127.0.0.1", 30000 + i)) for i in range(20)]
    assert layout(1) == layout(1)
    assert len({tuple(layout(seed)) for seed in range(10)}) > 1


# ---- churn ----------------------------------------------------------------------------------


def test_churn_events_follow_the_declared_poisson_rate() -> None:
    rate, nodes, hours = parse_churn("10%/h"), 1000, 100.0
    events = list(churn_events(rate, nodes, hours * 3600, random.Random(11)))
    each = 0.1 * nodes * hours  # expected leaves, and as many joins
    leaves = sum(kind == "leave" for _, kind in events)
    joins = sum(kind == "join" for _, kind in events)
    assert leaves + joins == len(events)
    assert _close(leaves, each, math.sqrt(each)) and _close(joins, each, math.sqrt(each))
    assert _close(leaves / len(events), 0.5, math.sqrt(0.25 / len(events)))
    times = [t for t, _ in events]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert 0.0 <= times[0] and times[-1] < hours * 3600
    # Poisson, not evenly spaced: gaps are exponential, so 1 - 1/e of them are below their mean
    gaps = [b - a for a, b in zip([0.0, *times], times)]
    mean_gap = 3600 / (2 * 0.1 * nodes)
    assert _close(statistics.fmean(gaps), mean_gap, mean_gap / math.sqrt(len(gaps)))
    short = sum(g < mean_gap for g in gaps) / len(gaps)
    p = 1 - math.exp(-1)
    assert _close(short, p, math.sqrt(p * (1 - p) / len(gaps)))
    # and evenly spread over the run: each hour holds its share
    per_hour = [sum(h * 3600 <= t < (h + 1) * 3600 for t in times) for h in range(int(hours))]
    assert all(_close(k, 2 * 0.1 * nodes, math.sqrt(2 * 0.1 * nodes)) for k in per_hour), per_hour


def test_churn_rate_scales_with_nodes_and_time_unit() -> None:
    assert parse_churn("5%/m").per_hour == pytest.approx(3.0)
    fast = list(churn_events(parse_churn("5%/m"), 100, 600.0, random.Random(12)))
    expected = 3.0 * 100 * 600 / 3600 * 2
    assert _close(len(fast), expected, math.sqrt(expected))


def test_no_churn_gives_no_events() -> None:
    assert list(churn_events(ChurnRate(0.0), 1000, 3600.0, random.Random(13))) == []
    assert list(churn_events(ChurnRate(0.5), 0, 3600.0, random.Random(13))) == []


def test_churn_events_are_drawn_lazily() -> None:
    # at the caps this is ~10^10 events: only a lazy iterator yields the first ones at once
    events = churn_events(ChurnRate(MAX_CHURN_PER_HOUR), 1_000_000, parse_duration("168h"), random.Random(14))
    first = [next(events) for _ in range(3)]
    assert [t for t, _ in first] == sorted(t for t, _ in first)


# ---- parsers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("30m", 1800), ("90s", 90), ("250ms", 0.25),
                                               ("1h30m", 5400), ("3600", 3600), ("1.5h", 5400), (" 2m30s ", 150),
                                               ("0", 0), ("168h", 168 * 3600)])
def test_durations_accepted(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def _refused(parse: Callable[[str], object], text: str, forms: str) -> str:
    with pytest.raises(ValueError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message and forms in message and repr(text) in message, message
    return message


@pytest.mark.parametrize("text", ["", "h", "1x", "-1s", "30m1h", "1s1s", "inf", "nan", "1e3", "2d", "1 h", "169h",
                                  "9" * 400])
def test_durations_refused(text: str) -> None:
    _refused(parse_duration, text, DURATION_FORMS)


@pytest.mark.parametrize(("text", "share"), [("0.3", 0.3), ("30%", 0.3), ("0", 0.0), ("1", 1.0), ("100%", 1.0),
                                             (".5", 0.5), ("12.5%", 0.125)])
def test_shares_accepted(text: str, share: float) -> None:
    assert parse_share(text) == pytest.approx(share)


@pytest.mark.parametrize("text", ["1.5", "150%", "-0.1", "abc", "", "nan", "30 %", "1e-1"])
def test_shares_refused(text: str) -> None:
    _refused(parse_share, text, SHARE_FORMS)


def test_loss_must_be_below_one() -> None:
    assert parse_loss("99%") == pytest.approx(0.99)
    assert "below 1" in _refused(parse_loss, "100%", SHARE_FORMS)
    with pytest.raises(ValueError):
        NetworkModel(latency=parse_latency("0"), loss=1.0, rng=random.Random(1))


@pytest.mark.parametrize(("text", "mean"), [("0", 0.0), ("30ms", 0.03), ("0.05", 0.05), ("uniform:10ms-100ms", 0.055),
                                            ("normal:50ms,10ms", 0.05), ("Uniform:10ms-10ms", 0.01),
                                            ("lognormal:50ms,0", 0.05), ("10s", 10.0)])
def test_latencies_accepted(text: str, mean: float) -> None:
    model = parse_latency(text)
    xs = [model.quantile((i + 0.5) / 2000) for i in range(2000)]
    assert statistics.fmean(xs) == pytest.approx(mean, rel=0.05, abs=1e-9)


@pytest.mark.parametrize("text", ["fast", "", "-1ms", "uniform:100ms-10ms", "uniform:10ms", "normal:50ms",
                                  "lognormal:0,0.5", "lognormal:50ms,3", "lognormal:50ms,x", "11s", "gamma:1,2",
                                  "uniform:10ms-11s", "normal:50ms,20s"])
def test_latencies_refused(text: str) -> None:
    _refused(parse_latency, text, LATENCY_FORMS)


@pytest.mark.parametrize(("text", "per_hour"), [("0", 0.0), ("10%/h", 0.1), ("0.1/h", 0.1), ("5%/m", 3.0),
                                                ("0.5%/s", 18.0), ("6000%/h", 60.0)])
def test_churn_rates_accepted(text: str, per_hour: float) -> None:
    assert parse_churn(text).per_hour == pytest.approx(per_hour)


@pytest.mark.parametrize("text", ["10%", "10/d", "x", "", "-1/h", "6001%/h", "2/m", "10 %/h"])
def test_churn_rates_refused(text: str) -> None:
    _refused(parse_churn, text, CHURN_FORMS)


def test_model_refuses_values_out_of_range_and_describes_itself_as_json() -> None:
    for bad in ({"nat_share": 1.5}, {"nat_share": -0.1}, {"nat_timeout": 0.0}, {"loss": -0.1}, {"max_mappings": 0}):
        with pytest.raises(ValueError):
            NetworkModel(latency=parse_latency("0"), rng=random.Random(1), **bad)
    model = NetworkModel(latency=parse_latency("uniform:10ms-100ms"), loss=0.01, nat_share=0.3, rng=random.Random(1))
    assert json.loads(json.dumps(model.describe())) == {"latency": "uniform 10ms-100ms", "loss": 0.01,
                                                        "nat_share": 0.3, "nat_timeout": NAT_TIMEOUT}
