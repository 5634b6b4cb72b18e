"""A byte budget for frames being read, shared by every connection of a server.

A frame header announces its size before the body arrives. Without a shared bound, each
connection may buffer one whole frame (up to 16 MiB), and a few dozen peers sending large
frames at once take the process's memory. A connection reserves the announced size here before
it reads a large frame's body, and gives it back when the frame is whole (or the read ends).
When the budget is spent the reader waits, under its own read deadline, so the bytes stay in
the kernel's socket buffer; a frame larger than the whole budget is refused at once.
"""

from __future__ import annotations

import trio

from p2p.rlpx.errors import MessageTooLarge

# Four frames of the largest size (16 MiB) being read at once. Honest messages are far smaller
# (a block-bodies response is a few MiB): honest peers rarely wait, an attacker gets no more.
FRAME_MEMORY_BUDGET = 64 * 1024 * 1024
# Frames up to this size are read without a reservation: a connection already buffers this
# much per read (the read chunk), so reserving it would only add work per message.
RESERVE_ABOVE = 256 * 1024


class FrameBudget:
    """Bytes reserved by frames being read, against a total."""

    def __init__(self, total: int = FRAME_MEMORY_BUDGET) -> None:
        if total < RESERVE_ABOVE:
            raise ValueError(f"a frame budget below {RESERVE_ABOVE} bytes would refuse ordinary frames")
        self.total = total
        self.used = 0
        self.waits = 0  # reservations that had to wait for others to finish
        self.refused = 0  # frames larger than the whole budget
        self._lot = trio.lowlevel.ParkingLot()

    async def reserve(self, size: int) -> None:
        if size > self.total:
            self.refused += 1
            raise MessageTooLarge(size, self.total, "frame (memory budget for frames being read)")
        if self.used + size > self.total:
            self.waits += 1
            while self.used + size > self.total:
                await self._lot.park()
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size
        self._lot.unpark_all()


__all__ = ["FRAME_MEMORY_BUDGET", "FrameBudget", "RESERVE_ABOVE"]
