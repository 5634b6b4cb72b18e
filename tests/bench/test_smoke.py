"""Every benchmark runs in --quick mode through `p2p bench`'s own parser and returns the figures
it promises, each a median with its min and max. (`compare` has its own test.)"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

import pytest

from p2p.cli import bench as bench_cli

# Keys each benchmark's result must hold; a benchmark not listed here is checked for shape only.
EXPECTED: dict[str, set[str]] = {
    "rlpx": {"throughput", "handshakes", "goals", "backends"},
    "peers": {"peak_peers", "messages_per_s", "baseline_messages_per_s", "messages_ratio_to_baseline",
              "typed_messages_per_s", "raw_handler_messages_per_s", "typed_us_per_message", "typed_decode_us",
              "requests_per_s"},
    "discovery": {"pings_answered_per_s", "v5", "testnet"},
    "nodedb": set(),
    "crawl": {"verified_per_s", "runs", "nodes"},
    "dns": {"nodes", "sync", "iterator"},
}


def _available() -> list[str]:
    return [name for name in bench_cli._available() if name != "compare"]


def _args(name: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench_cli.register(parser.add_subparsers())
    return parser.parse_args(["bench", "--quick", "--repeat", "1", name])


def _summaries(obj: Any) -> list[dict[str, Any]]:
    if isinstance(obj, dict):
        if {"median", "min", "max"} <= obj.keys():
            return [obj]
        return [s for v in obj.values() for s in _summaries(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _summaries(v)]
    return []


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", _available())
def test_bench_quick_returns_its_figures(name: str) -> None:
    module = importlib.import_module(f"p2p.bench.{name}")
    result = module.run(_args(name))
    json.dumps(result)  # JSON-able, as `p2p bench` prints it
    assert EXPECTED.get(name, set()) <= result.keys(), sorted(result)
    figures = _summaries(result)
    assert figures, "no median/min/max figure in the result"
    for fig in figures:
        assert fig["min"] <= fig["median"] <= fig["max"]


def test_table_lists_medians_with_ranges_and_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    bench_cli.print_table({"x": {"a": {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3},
                                 "ratios": {"a": 4.5}, "note": "text"}}, file=sys.stderr)
    err = capsys.readouterr().err
    assert "x.a" in err and "2  [1 .. 3]" in err
    assert "x.ratios.a" in err and "4.5" in err
    assert "note" not in err
