"""devp2p disconnect reasons (rlpx.md, "Disconnect (0x01)")."""

from __future__ import annotations

import enum


class DisconnectReason(enum.IntEnum):
    REQUESTED = 0x00
    TCP_ERROR = 0x01
    BREACH_OF_PROTOCOL = 0x02
    USELESS_PEER = 0x03
    TOO_MANY_PEERS = 0x04
    ALREADY_CONNECTED = 0x05
    INCOMPATIBLE_VERSION = 0x06
    INVALID_IDENTITY = 0x07
    CLIENT_QUITTING = 0x08
    UNEXPECTED_IDENTITY = 0x09
    CONNECTED_TO_SELF = 0x0A
    TIMEOUT = 0x0B
    SUBPROTOCOL_ERROR = 0x10

    @classmethod
    def parse(cls, value: int) -> "DisconnectReason | int":
        """The enum member, or the bare number for a code the specification does not name."""
        try:
            return cls(value)
        except ValueError:
            return value

    def describe(self) -> str:
        return self.name.lower().replace("_", " ")
