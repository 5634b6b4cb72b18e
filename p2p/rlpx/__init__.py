"""RLPx: the encrypted, authenticated TCP transport of devp2p.

The sans-IO pieces (:mod:`p2p.rlpx.handshake`, :mod:`p2p.rlpx.frame`, :mod:`p2p.rlpx.snappy`)
hold all of the wire logic; :mod:`p2p.rlpx.connection` runs them over a trio stream.
"""

from p2p.rlpx.budget import FrameBudget
from p2p.rlpx.connection import Connection, accept, connect, initiate
from p2p.rlpx.errors import (
    AuthTimeout,
    ConnectionClosed,
    FrameError,
    HandshakeError,
    HandshakeTimeout,
    MessageTooLarge,
    RLPxError,
    RLPxTimeout,
    SnappyError,
)
from p2p.rlpx.frame import MAX_FRAME_SIZE, FrameCodec
from p2p.rlpx.handshake import Completed, Handshake, NeedData, Secrets

__all__ = [
    "AuthTimeout",
    "FrameBudget",
    "Completed",
    "Connection",
    "ConnectionClosed",
    "FrameCodec",
    "FrameError",
    "Handshake",
    "HandshakeError",
    "HandshakeTimeout",
    "MAX_FRAME_SIZE",
    "MessageTooLarge",
    "NeedData",
    "RLPxError",
    "RLPxTimeout",
    "Secrets",
    "SnappyError",
    "accept",
    "connect",
    "initiate",
]
