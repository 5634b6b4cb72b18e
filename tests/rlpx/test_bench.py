"""``p2p bench rlpx`` in miniature: the two-process run completes and its counts agree."""

from __future__ import annotations

import argparse

from p2p.bench import rlpx as bench


def test_bench_rlpx_quick_run() -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--rlpx-seconds", "0.05"])
    args.quick, args.repeat = True, 1
    result = bench.run(args)  # raises if the child counted other than what was sent
    for name in ("1024/plain", "1024/snappy", "65536/plain", "65536/snappy"):
        figures = result["throughput"][name]
        assert figures["messages_per_s"]["median"] > 0
        assert 0 < figures["fraction_of_ceiling"]
        assert figures["receiver_cpu_us_per_message"]["median"] > 0
    assert result["handshakes"]["handshakes_per_s"]["median"] > 0
    api = result["throughput"]["1024/protocol"]
    assert api["messages_per_s"]["median"] > 0 and api["fraction_of_bare_rlpx"] > 0
    assert api["sender_cpu_us_per_message"]["median"] > 0 and api["receiver_cpu_us_per_message"]["median"] > 0
    assert set(result["goals"]) == {"mb_per_s_64KiB", "messages_per_s_1KiB", "handshakes_per_s",
                                    "protocol_api_fraction_of_bare_rlpx_1KiB"}
