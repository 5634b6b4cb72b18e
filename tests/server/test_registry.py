"""The protocol registry behind ``p2p node --protocols``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from p2p import protocol_registry as reg
from p2p.crypto import PrivateKey
from p2p.enode import NodeID, Signer
from p2p.protocol import Protocol


@pytest.fixture
def clean() -> Iterator[None]:
    saved = dict(reg._registry)
    yield
    reg._registry.clear()
    reg._registry.update(saved)


def test_factories_get_only_the_arguments_they_declare(clean: None) -> None:
    seen: dict[str, Any] = {}

    def plain() -> Protocol:
        return Protocol("plain", 1, 1)

    def with_emit(*, emit: Any) -> list[Protocol]:
        seen["emit"] = emit
        return [Protocol("multi", 1, 2), Protocol("multi", 2, 3)]

    class Service:
        def __init__(self, node_id: NodeID) -> None:
            seen["node_id"] = node_id
            self.protocol = Protocol("svc", 3, 1)

    reg.register_protocol("plain", plain)
    reg.register_protocol("multi", with_emit)
    reg.register_protocol("svc", lambda node_id: Service(node_id))
    node_id = NodeID(bytes(32))
    emit = print
    made = reg.create_protocols(["plain", "multi", "svc"], emit=emit, node_id=node_id, signer=None)
    assert [(p.name, p.version) for p in made] == [("plain", 1), ("multi", 1), ("multi", 2), ("svc", 3)]
    assert seen == {"emit": emit, "node_id": node_id}
    service, protos = reg.create("svc", node_id=node_id)
    assert isinstance(service, Service) and protos == [service.protocol]


def test_duplicate_registration_and_unknown_names(clean: None) -> None:
    def factory() -> Protocol:
        return Protocol("dup", 1, 1)

    reg.register_protocol("dup", factory)
    reg.register_protocol("dup", factory)  # the same factory again is harmless
    with pytest.raises(ValueError):
        reg.register_protocol("dup", lambda: Protocol("dup", 2, 1))
    reg.register_protocol("dup", lambda: Protocol("dup", 2, 1), replace=True)
    assert reg.create("dup")[1][0].version == 2
    with pytest.raises(reg.UnknownProtocol):
        reg.get_factory("no-such-protocol")
    reg.register_protocol("bad", lambda: 42)
    with pytest.raises(TypeError):
        reg.create("bad")


def test_builtin_protocols_register_themselves_on_lookup() -> None:
    for name in ("chat", "eth"):
        key = PrivateKey.generate()
        _, protos = reg.create(name, emit=lambda event, **fields: None, node_id=NodeID.from_pubkey(key.public_key),
                               signer=Signer(key))
        assert protos and all(p.name == name for p in protos)
    assert {"chat", "eth"} <= set(reg.available())


def test_factories_get_a_signer_never_the_key(clean: None) -> None:
    got: dict[str, Any] = {}

    def greedy(**context: Any) -> Protocol:
        got.update(context)
        return Protocol("greedy", 1, 1)

    reg.register_protocol("greedy", greedy)
    key = PrivateKey.generate()
    signer = Signer(key)
    reg.create("greedy", signer=signer, private_key=key)  # a caller passing the key anyway
    assert got == {"signer": signer}
