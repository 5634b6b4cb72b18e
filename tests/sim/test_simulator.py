"""The simulator: small networks in virtual time, the figures of its summary, its command."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from typing import Any

import pytest
import trio
import trio.testing

from p2p.cli import main
from p2p.enode.identity import simulation_scope
from p2p.sim import SimConfig, Simulation, closest_share, node_address, run_simulation
from p2p.sim.netmodel import parse_churn, parse_latency

LAN = parse_latency("0")


def _brute_closest(tables: dict[bytes, set[bytes]], live: list[bytes], k: int) -> float:
    shares = []
    for owner, table in tables.items():
        x = int.from_bytes(owner, "big")
        others = sorted((int.from_bytes(i, "big") ^ x, i) for i in live if i != owner)[:k]
        shares.append(sum(1 for _, i in others if i in table) / len(others))
    return sum(shares) / len(shares)


def test_closest_share_matches_brute_force() -> None:
    rng = random.Random(5)
    live = [rng.randbytes(32) for _ in range(300)]
    # clustered IDs too: long shared prefixes are where a block search could go wrong
    live += [live[0][:30] + rng.randbytes(2) for _ in range(40)]
    tables = {owner: set(rng.sample(live, 60)) - {owner} for owner in live[:80] + live[-20:]}
    assert closest_share(tables, live, k=16) == pytest.approx(_brute_closest(tables, live, 16))
    perfect = {owner: set(live) - {owner} for owner in live[:10]}
    assert closest_share(perfect, live, k=16) == 1.0


def test_node_addresses_are_distinct_loopback_addresses() -> None:
    addrs = {node_address(i) for i in range(0, 200_000, 7)}
    assert len(addrs) == len(range(0, 200_000, 7))
    assert all(host.startswith("127.") for host, _ in addrs)
    with pytest.raises(ValueError):
        node_address(255 << 16)


def test_bad_configs_are_refused() -> None:
    bad: list[dict[str, Any]] = [{"nodes": 1}, {"nodes": 10**7}, {"nodes": 10, "duration": 0},
                                 {"nodes": 10, "loss": 1.0}, {"nodes": 10, "bootnodes": 11},
                                 {"nodes": 10, "discovery": "v6"}, {"nodes": 10, "join_rate": 0}]
    for fields in bad:
        with pytest.raises(ValueError):
            SimConfig(**fields)


def _check_shape(s: dict[str, Any]) -> None:
    for key in ("nodes", "discovery", "duration_seconds", "converged", "converged_seconds", "lookups", "table",
                "packets", "model", "network", "churn", "wall_seconds", "memory"):
        assert key in s, key
    for key in ("count", "found", "success_rate", "hops", "packets"):
        assert key in s["lookups"], key
    for key in ("live_share", "closest_share", "size"):
        assert key in s["table"], key
    json.dumps(s)


def test_a_small_network_converges_and_finds_its_members() -> None:
    s = run_simulation(SimConfig(nodes=40, duration=300.0, latency=LAN, lookups=20, seed=1))
    _check_shape(s)
    assert s["converged"] and s["converged_seconds"] is not None and s["converged_seconds"] < 60
    assert s["virtual_seconds"] == pytest.approx(300.0)
    assert s["wall_seconds"] < 120  # five simulated minutes, far less wall time
    assert s["lookups"]["count"] == 20 and s["lookups"]["success_rate"] >= 0.9
    assert 1 <= s["lookups"]["hops"]["median"] <= 4
    assert s["lookups"]["packets"]["median"] > 0
    assert s["table"]["live_share"] == 1.0  # nobody left
    assert s["table"]["closest_share"] >= 0.9
    assert s["table"]["size"]["min"] >= 16
    assert s["packets"] > 0 and s["packets_to_converge_per_node"] > 0


def test_a_v5_network_converges_with_null_records_and_id_signatures() -> None:
    s = run_simulation(SimConfig(nodes=25, duration=40.0, latency=LAN, lookups=5, seed=2, discovery="v5"))
    assert s["converged"] and s["lookups"]["success_rate"] >= 0.8
    assert s["lookups"]["hops"]["median"] >= 1  # v5 lookups counted through the same code path
    assert not any(reason.startswith(("v5_bad", "bad_")) for reason in s["drops"]), s["drops"]
    assert s["packets_by_type"].get("findnode", 0) > 0


def test_loss_nat_and_churn_act_on_the_network() -> None:
    s = run_simulation(SimConfig(nodes=30, duration=600.0, latency=parse_latency("uniform:5ms-20ms"), loss=0.05,
                                 nat_share=0.3, churn=parse_churn("150%/h"), lookups=10, seed=2))
    counters = s["network"]
    assert counters["dropped_loss"] > 0
    assert counters["dropped_nat"] > 0
    assert s["churn"]["left"] > 0 and s["churn"]["joined"] > 0
    assert s["up"] == 30 - s["churn"]["left"] + s["churn"]["joined"]
    assert s["lookups"]["count"] == 10


async def test_a_stopped_run_gives_a_partial_summary(autojump_clock: trio.testing.MockClock) -> None:
    sim = Simulation(SimConfig(nodes=20, duration=3600.0, latency=LAN, lookups=5, seed=3))
    scope = trio.CancelScope()

    def until_stopped() -> trio.CancelScope:
        return scope

    async def stop_soon() -> None:
        with trio.fail_after(30):
            while sim.converged_seconds is None:
                await trio.sleep(0.5)
        scope.cancel()

    with simulation_scope():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_soon)
            summary = await sim.run(until_stopped)
    assert summary["interrupted"] is True
    assert summary["virtual_seconds"] < 3600
    _check_shape(summary)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2p", "simulate", *args], capture_output=True, text=True,
                          timeout=120)


def test_command_runs_sizes_and_ends_with_a_summary_line() -> None:
    r = _cli("--nodes", "20,30", "--duration", "2m", "--latency", "0", "--lookups", "5", "--seed", "4", "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[0]["event"] == "simulate_start"
    assert any(line["event"] == "progress" for line in lines)
    last = lines[-1]
    assert last["event"] == "summary" and last["ok"] is True
    assert [run["nodes"] for run in last["runs"]] == [20, 30]
    for run in last["runs"]:
        _check_shape(run)


@pytest.mark.parametrize("args", [["--nodes", "1"], ["--nodes", "10,x"], ["--duration", "soon"],
                                  ["--latency", "fast"], ["--loss", "150%"], ["--churn", "lots"],
                                  ["--nat-share", "-1"], ["--loss", "1"], ["--join-rate", "0"], ["--bootnodes", "0"]])
def test_bad_flag_values_print_one_line_and_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "p2p simulate" in err


async def test_central_delivery_keeps_arrival_times_and_order(autojump_clock: trio.testing.MockClock) -> None:
    from p2p.discover.transport import MemoryNetwork

    delays = {b"slow": 0.3, b"fast": 0.1, b"now": 0.0}
    net = MemoryNetwork(latency=lambda data, src, dst: delays[data])
    a, b = net.endpoint("127.0.0.1", 1), net.endpoint("127.0.0.2", 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(net.run_delivery)
        await trio.sleep(0)
        t0 = trio.current_time()
        for data in (b"slow", b"fast", b"now"):
            a.send_nowait(data, b.local_address)
        got = []
        for _ in range(3):
            data, src = await b.receive()
            got.append((data, round(trio.current_time() - t0, 3), src))
        assert got == [(b"now", 0.0, a.local_address), (b"fast", 0.1, a.local_address),
                       (b"slow", 0.3, a.local_address)]
        b.close()
        a.send_nowait(b"fast", b.local_address)  # to a closed endpoint: lost and counted
        await trio.sleep(0.2)
        assert net.dropped == 1
        nursery.cancel_scope.cancel()


def test_ctrl_c_leaves_with_a_partial_summary() -> None:
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "p2p", "simulate", "--nodes", "40", "--duration", "1h",
                             "--latency", "0", "--json", "--seed", "5"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for _ in range(100):  # the start line, then the first progress line
            line = proc.stdout.readline()
            if not line or json.loads(line)["event"] == "progress":
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    last = json.loads(out.splitlines()[-1])
    assert proc.returncode == 0
    assert last["event"] == "summary" and last["interrupted"] is True
    assert last["virtual_seconds"] < 3600 and last["up"] > 0


def test_bootnodes_stay_reachable_when_every_other_node_is_behind_nat() -> None:
    # With the bootnode behind NAT nobody could join; placed in public, every joiner's first
    # contact answers, so each table holds at least the bootnode.
    s = run_simulation(SimConfig(nodes=12, duration=30.0, latency=LAN, nat_share=1.0, lookups=0, seed=4))
    assert s["table"]["size"]["min"] >= 1
    assert s["network"]["dropped_nat"] > 0
