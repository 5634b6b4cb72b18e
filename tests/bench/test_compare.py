"""`p2p bench compare --quick`: both sides run and every figure the report promises is there."""

from __future__ import annotations

import argparse

import pytest

from p2p.bench import compare

def _figure(d: dict) -> float:
    assert set(d) == {"median", "min", "max", "runs"}
    assert d["min"] <= d["median"] <= d["max"]
    return float(d["median"])


@pytest.mark.timeout(120)
def test_compare_quick_reports_both_sides_and_ratios() -> None:
    out = compare.run(argparse.Namespace(quick=True, repeat=1, compare_node=None))
    for side in ("theirs", "ours"):
        for size in compare.SIZES:
            fig = out[side][f"msg_{size}"]
            assert _figure(fig["mb_per_s"]) > 0
            assert _figure(fig["msgs_per_s"]) > 0
        assert _figure(out[side]["handshakes_per_s"]) > 0
    for size in ("1024", "65536"):
        assert _figure(out["ours"]["typed_messages_per_s"][size]) > 0
        assert _figure(out["ours"]["raw_handler_messages_per_s"][size]) > 0
    assert _figure(out["ours"]["requests_per_s"]["in_flight_16"]) > 0
    ratios = out["ratios"]
    for key in ("mb_per_s_65536", "mb_per_s_1024", "msgs_per_s_65536", "msgs_per_s_1024", "handshakes_per_s"):
        assert ratios[key] > 0
    assert _figure(out["pings_per_s"]["theirs_js_pinger"]) > 0
    assert _figure(out["pings_per_s"]["theirs"]) > 0
    if out["pings_per_s"].get("ours") is not None:
        assert _figure(out["pings_per_s"]["ours"]) > 0
        assert ratios["pings_per_s"] > 0
    v5 = out["v5_pings_per_s"]
    assert _figure(v5["theirs"]) > 0 and _figure(v5["ours"]) > 0
    assert ratios["v5_pings_per_s"] == pytest.approx(v5["ours"]["median"] / v5["theirs"]["median"])
    for run in v5["theirs_runs"] + v5["ours_runs"]:
        # every answer decrypted as a PONG of the session: neither node dropped the session
        assert run["pongs"] > 0 and run["undecodable"] == 0 and run["other_packets"] == 0
    assert out["load_average_1min"]["start"] >= 0


def test_ping_rate_counts_only_matching_pongs() -> None:
    """Nothing listens on the port: no Pong, so no round trip may be counted."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        # A bound socket that never answers swallows the Pings.
        assert compare.ping_rate("127.0.0.1", port, seconds=0.3, window=4) == 0
    finally:
        sock.close()
