"""Helper for the crash test: write nodes into a node database until killed.

Usage: python nodedb_writer.py PATH SEED. After each node is stored it prints the node's
index, so the test knows what was written before it sent SIGKILL.
"""

from __future__ import annotations

import ipaddress
import random
import sys
import time

from p2p.crypto import PrivateKey
from p2p.enode.node import Node
from p2p.enode.nodedb import NodeDB

MAX_NODES = 200_000  # bounded even if nobody kills us
MAX_SECONDS = 60.0


def main() -> None:
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    deadline = time.monotonic() + MAX_SECONDS
    with NodeDB.open(path) as db:
        for i in range(MAX_NODES):
            if time.monotonic() > deadline:
                break
            key = PrivateKey.generate(rng)
            node = Node(key.public_key, ipaddress.IPv4Address("127.0.0.1"), 30000 + i % 1000, 30000 + i % 1000)
            db.update_node(node)
            db.update_last_pong_received(node.id, node.ip, 1000.0 + i)
            sys.stdout.write(f"{i}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
