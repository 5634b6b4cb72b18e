"""Shared helpers of the discovery tests: a pool of seeded keys, loopback nodes."""

from __future__ import annotations

import ipaddress
import random

import pytest

from p2p.crypto import PrivateKey
from p2p.enode import Node


def make_keys(n: int, seed: int = 99) -> list[PrivateKey]:
    rng = random.Random(seed)
    return [PrivateKey.generate(rng) for _ in range(n)]


@pytest.fixture(scope="session")
def key_pool() -> list[PrivateKey]:
    return make_keys(400)


def loopback_node(key: PrivateKey, port: int = 30303, ip: str = "127.0.0.1") -> Node:
    return Node(key.public_key, ipaddress.ip_address(ip), port, port)
