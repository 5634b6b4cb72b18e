"""Which addresses may be relayed to whom (go-ethereum's ``netutil.CheckRelayIP``), for both
discovery protocols: what we pass on in Neighbors / NODES and what we accept from them."""

from __future__ import annotations

import functools
import ipaddress

from p2p.discover.table import is_lan
from p2p.enode import IPAddress

IP_CACHE_SIZE = 4096  # classified addresses kept; a Neighbors reply checks the same few over and over

_SPECIAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "255.255.255.255/32", "2001:db8::/32", "ff00::/8",
    "224.0.0.0/4"))


@functools.lru_cache(maxsize=IP_CACHE_SIZE)
def _ip_class(ip: IPAddress) -> tuple[bool, bool, bool]:
    """(relayable at all, loopback, LAN) of an address."""
    relayable = not (ip.is_unspecified or ip.is_multicast
                     or any(ip.version == n.version and ip in n for n in _SPECIAL_NETWORKS))
    return relayable, ip.is_loopback, is_lan(ip)


def relay_allowed(sender: IPAddress, addr: IPAddress) -> bool:
    """Whether ``addr`` may be passed to (or accepted from) a node at ``sender``: no
    unspecified, documentation or multicast addresses; loopback only between loopback
    nodes and LAN only between LAN nodes."""
    relayable, loopback, lan = _ip_class(addr)
    if not relayable:
        return False
    if loopback or lan:
        _, s_loopback, s_lan = _ip_class(sender)
        if loopback and not s_loopback:
            return False
        if lan and not s_lan:
            return False
    return True


__all__ = ["relay_allowed"]
