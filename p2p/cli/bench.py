"""``p2p bench [NAME ...]``: run benchmarks, print JSON (and a short table on stderr).

Each benchmark is a module in :mod:`p2p.bench` with ``add_arguments(parser)`` (optional) and
``run(args) -> dict``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from p2p.cli import import_optional
from p2p.cli._args import count, subcommand

# Order in which ``p2p bench`` with no names runs them.
BENCHMARKS = ("nodedb", "discovery", "rlpx", "peers", "crawl", "dns", "compare")


def _available() -> list[str]:
    return [name for name in BENCHMARKS if import_optional(f"p2p.bench.{name}") is not None]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subcommand(sub, "bench", help="run benchmarks (JSON output)", doc=__doc__)
    p.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    p.add_argument("--quick", action="store_true", help="smaller workloads, for a fast look")
    p.add_argument("--repeat", type=count(1), default=3, metavar="N", help="runs per figure; the median is reported")
    p.add_argument("--out", metavar="FILE", help="also write the JSON to FILE")
    for name in _available():
        module = importlib.import_module(f"p2p.bench.{name}")
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
    p.set_defaults(func=run)


def _figures(prefix: str, obj: Any) -> list[tuple[str, str]]:
    """Flatten a result into (name, text) rows: medians with their range, and plain numbers."""
    rows: list[tuple[str, str]] = []
    if isinstance(obj, dict):
        if {"median", "min", "max"} <= obj.keys():
            rows.append((prefix, f"{_num(obj['median'])}  [{_num(obj['min'])} .. {_num(obj['max'])}]"))
            return rows
        for key, value in obj.items():
            rows.extend(_figures(f"{prefix}.{key}" if prefix else str(key), value))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and "ratio" in prefix:
        rows.append((prefix, _num(obj)))
    return rows


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def print_table(results: dict[str, Any], file: Any = None) -> None:
    """The main figures, one per line: median [min .. max]; ratios as they are."""
    out = file or sys.stderr
    rows = [(f"{name}.{label}", text) for name, result in results.items() for label, text in _figures("", result)]
    if not rows:
        return
    width = max(len(r[0]) for r in rows)
    print("", file=out)
    for label, text in rows:
        print(f"{label:<{width}}  {text}", file=out)
    out.flush()


def run(args: argparse.Namespace) -> int:
    names = args.names or _available()
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"p2p bench: unknown benchmark(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    for name in names:
        module = importlib.import_module(f"p2p.bench.{name}")
        print(f"running bench {name} ...", file=sys.stderr)
        results[name] = module.run(args)
        print(json.dumps({"bench": name, **results[name]}), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    print_table(results)
    return 0
