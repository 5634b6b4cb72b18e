"""``ProcessLimits``: the bounds shared by every node of one process (a local testnet).

One node bounds its own work (``ServerConfig.max_active_dials``, discovery's lookups); many
nodes in one process also share the CPU, so that a burst of all of them at once would push
each past its deadlines. One ``ProcessLimits`` object, given to each node's ``ServerConfig``,
carries the limiters they share; a lone node needs none.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    """Limiters shared by the nodes of one process; None leaves that work to each node's own bound."""

    # RLPx dials in flight across all servers (each a handshake's CPU and a socket). None: each
    # server's max_active_dials alone.
    dials: trio.CapacityLimiter | None = None
    # Discovery lookups at once across all nodes. None: discovery's own default (one limiter
    # per trio run, shared_lookup_limiter).
    lookups: trio.CapacityLimiter | None = None

    @classmethod
    def of(cls, dials: int | None = None, lookups: int | None = None) -> "ProcessLimits":
        """New limiters with these many tokens (None: no shared limiter for that work)."""
        return cls(trio.CapacityLimiter(dials) if dials is not None else None,
                   trio.CapacityLimiter(lookups) if lookups is not None else None)


__all__ = ["ProcessLimits"]
