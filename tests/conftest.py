"""Shared fixtures. Every address a test node can learn is a loopback address."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from p2p.crypto import PrivateKey

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"
LOCAL_VECTORS = Path(__file__).resolve().parent / "vectors"


def load_vector(name: str) -> Any:
    """A spec vector from ../shared/vectors (or the copy in tests/vectors)."""
    for base in (VECTORS, LOCAL_VECTORS):
        path = base / name
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(name)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture
def key(rng: random.Random) -> PrivateKey:
    return PrivateKey.generate(rng)
