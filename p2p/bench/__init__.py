"""Benchmarks run by ``p2p bench``: one module each, ``run(args) -> dict`` of JSON figures."""
