"""Testnet nodes in Linux network namespaces, each node with its own address (root only).

Layout, all of it inside namespaces created here and deleted on exit:

    <prefix>-hub        a bridge, br0, with one veth end per node namespace
    <prefix>-0 ... -K   one namespace per child process: lo, and eth0 (the other veth end)
                        holding one address per node of that process

Addresses come from 10.0.0.0/8, which exists only inside these namespaces: the hub has no link
to the host's own network, so nothing leaves the machine. Four nodes share each /24, so the
discovery table's per-subnet limits meet real, distinct addresses.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from p2p.testnet.runner import TestnetConfig, plan

logger = logging.getLogger(__name__)

NETWORK = ipaddress.IPv4Network("10.0.0.0/8")  # private; routed nowhere but the hub bridge
NODES_PER_SUBNET = 4  # nodes sharing a /24: enough to meet the table's /24 limits (2 per bucket)
DEFAULT_NAMESPACES = 2  # one child process per core of the 2-core reference machine
# Neighbour (ARP) table sizes per namespace: the defaults (128/512/1024) overflow with
# thousands of nodes on one link.
NEIGH_THRESHOLDS = (4096, 16384, 32768)
IP_TIMEOUT = 30.0  # seconds any one ``ip`` command may take


class NetnsError(Exception):
    """Network namespaces cannot be created or set up here."""


def node_address(index: int) -> str:
    """The address of node ``index``: 10.a.b.c, four nodes per /24, never .0 or .255."""
    subnet, host = divmod(index, NODES_PER_SUBNET)
    a, b = divmod(subnet, 250)
    if a >= 254:
        raise NetnsError(f"no address for node {index}: too many nodes")
    return f"10.{1 + a}.{1 + b}.{10 + host}"


def _ip(*args: str, stdin: str | None = None) -> None:
    try:
        subprocess.run(["ip", *args], input=stdin, text=True, check=True, capture_output=True,
                       timeout=IP_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        raise NetnsError(f"ip {' '.join(args)}: {exc.stderr.strip()}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"ip {' '.join(args)}: {exc}") from None


def check_available() -> None:
    """Raise :class:`NetnsError` with the reason when namespaces cannot be made here."""
    if os.name != "posix" or not os.path.isdir("/proc/self/ns"):
        raise NetnsError("network namespaces need Linux")
    if os.geteuid() != 0:
        raise NetnsError("creating network namespaces needs root")
    if shutil.which("ip") is None:
        raise NetnsError("the `ip` command (iproute2) is not installed")
    probe = f"p2ptn{os.getpid()}-probe"
    _ip("netns", "add", probe)
    try:
        _ip("-n", probe, "link", "set", "lo", "up")
    finally:
        _ip("netns", "del", probe)


def _setup(prefix: str, groups: Sequence[Sequence[int]], created: list[str]) -> None:
    hub = f"{prefix}-hub"
    _ip("netns", "add", hub)
    created.append(hub)
    _ip("-n", hub, "link", "add", "br0", "type", "bridge")
    _ip("-n", hub, "link", "set", "br0", "up")
    for k, indices in enumerate(groups):
        ns = f"{prefix}-{k}"
        _ip("netns", "add", ns)
        created.append(ns)
        port = f"v{k}"
        _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", hub)
        _ip("-n", hub, "link", "set", port, "master", "br0")
        _ip("-n", hub, "link", "set", port, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", "eth0", "up")
        batch = "".join(f"addr add {node_address(i)}/{NETWORK.prefixlen} dev eth0\n" for i in indices)
        _ip("-n", ns, "-batch", "-", stdin=batch)
        for level, value in zip((1, 2, 3), NEIGH_THRESHOLDS):
            try:
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                                f"net.ipv4.neigh.default.gc_thresh{level}={value}"],
                               check=True, capture_output=True, timeout=IP_TIMEOUT)
            except (OSError, subprocess.SubprocessError) as exc:
                logger.warning("cannot raise the neighbour table size in %s: %s", ns, exc)


def _teardown(created: list[str]) -> None:
    # Deleting a namespace deletes its interfaces (and so both ends of each veth).
    for ns in reversed(created):
        try:
            _ip("netns", "del", ns)
        except NetnsError as exc:
            logger.warning("cleanup: %s", exc)


@asynccontextmanager
async def namespaces(config: TestnetConfig) -> AsyncIterator[TestnetConfig]:
    """Create the namespaces for ``config``'s nodes; yields the config that places them there."""
    check_available()
    processes = config.processes or DEFAULT_NAMESPACES
    processes = min(processes, config.nodes)
    groups = plan(config.nodes, processes)
    prefix = f"p2ptn{os.getpid()}"
    created: list[str] = []
    try:
        await trio.to_thread.run_sync(_setup, prefix, groups, created)
        placed = dataclasses.replace(
            config, processes=processes, host=node_address(0),
            launchers=tuple(("ip", "netns", "exec", f"{prefix}-{k}") for k in range(processes)),
            hosts=tuple(node_address(i) for i in range(config.nodes)))
        yield placed
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_teardown, created)
