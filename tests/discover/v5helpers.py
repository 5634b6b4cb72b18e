"""Shared helpers of the discv5 wire tests."""

from __future__ import annotations

import random


class ScriptedRandom(random.Random):
    """Hands out the given byte strings, in order, from ``randbytes``: the codec's IVs,
    nonces, id-nonces and ephemeral keys, so that a test can reproduce spec packets."""

    def __init__(self, *chunks: bytes) -> None:
        super().__init__(0)
        self._chunks = list(chunks)

    def randbytes(self, n: int) -> bytes:
        chunk = self._chunks.pop(0)
        assert len(chunk) == n, f"codec asked for {n} random bytes, script has {len(chunk)}"
        return chunk
