"""`p2p bench discovery`'s v5 figures: a tiny run has them all, and the v5 load generators
count only what a node really answered."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator

import pytest

from p2p.bench import discovery, discovery_v5
from p2p.cli import bench as bench_cli
from p2p.crypto import PrivateKey
from p2p.enode import ENR


def _args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench_cli.register(parser.add_subparsers())
    return parser.parse_args(["bench", "--quick", "--repeat", "1", *extra, "discovery"])


def _figure(d: dict) -> float:
    assert set(d) == {"median", "min", "max", "runs"}
    return float(d["median"])


@pytest.mark.timeout(120)
def test_tiny_discovery_bench_reports_v5_beside_v4() -> None:
    result = discovery.run(_args("--discovery-nodes", "12", "--discovery-seconds", "0.6", "--discovery-v5-slots", "4"))
    v5 = result["v5"]
    assert {"pings_answered_per_s", "handshakes_per_s", "window", "slots", "ping_runs", "handshake_runs",
            "testnet"} <= v5.keys()
    assert _figure(v5["pings_answered_per_s"]) > 0 and _figure(v5["handshakes_per_s"]) > 0
    assert v5["slots"] == 4
    (ping,) = v5["ping_runs"]
    # every PONG counted was decrypted within the one session, and the node sent at least as many
    assert ping["pongs"] > 0 and ping["undecodable"] == 0 and ping["other_packets"] == 0
    assert ping["pongs"] <= ping["answered_by_target"]
    (hs,) = v5["handshake_runs"]
    assert 0 < hs["handshakes"] <= hs["answered_by_target"]
    nets = v5["testnet"]["12"]
    assert set(nets) == {"v5", "v4"}
    for mode, net in nets.items():
        assert net["discovery"] == mode
        assert net["converged"], net
        assert _figure(net["convergence_seconds"]) > 0
        assert net["lookups"]["count"] == 50 and net["lookups"]["success_rate"] >= 0.9, net


@pytest.fixture
def silent() -> Iterator[tuple[int, str]]:
    """A bound UDP socket that never answers, and a record claiming to live there."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        yield port, ENR.build(PrivateKey.generate(), 1, ip="127.0.0.1", udp=port).to_text()
    finally:
        sock.close()


def test_ping_client_without_a_session_fails_instead_of_counting(silent: tuple[int, str],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    port, record = silent
    assert discovery_v5.main(["ping", "127.0.0.1", str(port), record, "0.2", "4"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "no session" in out.err


def test_handshake_client_counts_only_completed_handshakes(silent: tuple[int, str]) -> None:
    port, record = silent
    result = discovery_v5.handshake_client("127.0.0.1", port, record, 1.3, 2)
    assert result["handshakes"] == 0 and result["rate"] == 0
    assert result["failed"] >= 2  # each slot's first identity timed out and was replaced
