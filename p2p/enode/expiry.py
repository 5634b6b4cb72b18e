"""The node database's expiry, run by exactly one owner: whoever opened the database.

The store (:class:`~p2p.enode.nodedb.NodeDB`) is passive. Its opener runs the expiry beside
it, for as long as it uses it:

    with NodeDB.open(path) as db:
        async with expiring(db):      # or: nursery.start(run_expiry, db)
            ...                       # discovery calls db.mark_bonded() on its first pong

Nothing is deleted before the node has bonded with someone, so that the seeds of a node
started offline survive; then every ``db.cleanup_interval`` seconds the nodes with no pong for
``db.expiration`` seconds go. A second owner is a bug and raises at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import plyvel
import trio

from p2p.enode.nodedb import NodeDB

log = logging.getLogger(__name__)

EXPIRE_NODES_PER_CHECKPOINT = 256  # the expiry scan yields to trio this often, so a big store never stalls the loop


class ExpiryOwned(RuntimeError):
    """A second task tried to run the expiry of a database that already has its owner."""


async def run_expiry(db: NodeDB, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Own ``db``'s expiry until cancelled (or until the database is closed): wait for the node
    to bond, then scan every ``db.cleanup_interval`` seconds. Reports started once it owns it."""
    if db.expiry_owner is not None:
        raise ExpiryOwned("the node database's expiry already has its owner")
    owner = object()
    db.expiry_owner = owner
    try:
        task_status.started()
        await db.wait_bonded()
        db.expirer_running = True
        log.debug("node database expiry started (every %ss, expiration %ss)", db.cleanup_interval, db.expiration)
        while True:
            await trio.sleep(db.cleanup_interval)
            if db.closed:  # its opener closed it: nothing left to expire
                return
            deleted = 0
            try:
                for i, _ in enumerate(db.expire_steps()):
                    deleted += 1
                    if i % EXPIRE_NODES_PER_CHECKPOINT == EXPIRE_NODES_PER_CHECKPOINT - 1:
                        await trio.lowlevel.checkpoint()
            except plyvel.Error as exc:  # damage found at run time: keep the node up, try next cycle
                log.error("node database: expiry scan failed: %s", exc)
            if deleted:
                log.debug("node database: expired %d nodes", deleted)
    finally:
        db.expirer_running = False
        if db.expiry_owner is owner:
            db.expiry_owner = None


@asynccontextmanager
async def expiring(db: NodeDB) -> AsyncIterator[NodeDB]:
    """Run :func:`run_expiry` for ``db`` for the duration of the ``async with``."""
    async with trio.open_nursery() as nursery:
        await nursery.start(run_expiry, db)
        try:
            yield db
        finally:
            nursery.cancel_scope.cancel()


__all__ = ["EXPIRE_NODES_PER_CHECKPOINT", "ExpiryOwned", "expiring", "run_expiry"]
