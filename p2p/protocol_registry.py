"""Sub-protocols by name, for ``p2p node --protocols chat,eth`` and other tools.

A *factory* makes the protocol object(s) one node runs. Register it under a name:

    from p2p.protocol_registry import register_protocol

    def make_chat(*, emit, signer):
        return ChatService(signer, nick="node", emit=emit).protocol

    register_protocol("chat", make_chat)

A factory is called with the keyword arguments it declares among these (any other parameter
must have a default):

- ``emit(event: str, **fields)``: report a protocol event; the ``p2p node --json`` command
  prints it as one JSON line ``{"event": event, **fields}`` (a no-op without ``--json``);
- ``node_id``: the local node's :class:`~p2p.enode.NodeID`;
- ``signer``: a :class:`~p2p.enode.Signer` for the local node, for a protocol whose messages
  carry their author's signature (protocols never get the private key itself).

It returns a :class:`~p2p.protocol.Protocol`, a sequence of them (several versions of one
protocol), or an object with a ``protocol`` (or ``protocols``) attribute, such as a service that
owns the protocol's handlers.

Where factories come from, in order: :func:`register_protocol` calls; the module
``protocols.<name>`` (imported on first lookup of ``name``, so that it can register itself);
and the ``p2p.protocols`` entry-point group of installed distributions (each entry point names
a factory).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points
from typing import Any

from p2p.protocol import Protocol

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "p2p.protocols"
FACTORY_ARGUMENTS = ("emit", "node_id", "signer")  # what a factory may ask for

ProtocolFactory = Callable[..., Any]
Emit = Callable[..., None]

_registry: dict[str, ProtocolFactory] = {}


class UnknownProtocol(LookupError):
    """No factory is registered (or can be found) for a protocol name."""


def register_protocol(name: str, factory: ProtocolFactory, *, replace: bool = False) -> None:
    """Register ``factory`` under ``name``. A second registration needs ``replace=True``."""
    if name in _registry and _registry[name] is not factory and not replace:
        raise ValueError(f"a protocol factory is already registered as {name!r}")
    _registry[name] = factory


def unregister_protocol(name: str) -> None:
    _registry.pop(name, None)


def _from_entry_points(name: str) -> ProtocolFactory | None:
    try:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                loaded: ProtocolFactory = ep.load()
                return loaded
    except Exception:  # a broken distribution must not hide the other protocols
        log.warning("loading entry point %s of group %s failed", name, ENTRY_POINT_GROUP, exc_info=True)
    return None


def get_factory(name: str) -> ProtocolFactory:
    """The factory registered as ``name`` (importing ``protocols.<name>`` first if needed)."""
    if name in _registry:
        return _registry[name]
    if name.isidentifier():
        try:
            importlib.import_module(f"protocols.{name}")
        except ModuleNotFoundError as exc:
            if exc.name not in ("protocols", f"protocols.{name}"):
                raise
        if name in _registry:
            return _registry[name]
    factory = _from_entry_points(name)
    if factory is not None:
        _registry[name] = factory
        return factory
    raise UnknownProtocol(f"no protocol registered as {name!r} (known: {', '.join(available()) or 'none'})")


def available() -> list[str]:
    """Names registered so far plus those advertised by entry points."""
    names = set(_registry)
    try:
        names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    except Exception:
        log.debug("entry points unavailable", exc_info=True)
    return sorted(names)


def _protocols_of(result: Any, name: str) -> list[Protocol]:
    if isinstance(result, Protocol):
        return [result]
    for attr in ("protocols", "protocol"):
        inner = getattr(result, attr, None)
        if inner is not None and not callable(inner):
            return _protocols_of(inner, name)
    if isinstance(result, Sequence) and result and all(isinstance(p, Protocol) for p in result):
        return list(result)
    raise TypeError(f"protocol factory {name!r} returned {type(result).__name__}, not a Protocol")


def create(name: str, **context: Any) -> tuple[Any, list[Protocol]]:
    """Call ``name``'s factory with the ``context`` arguments it accepts; return what it made
    (keep it: a service may hold state) and the protocols to pass to the server."""
    factory = get_factory(name)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in context.items() if k in FACTORY_ARGUMENTS and (accepts_any or k in params)}
    result = factory(**kwargs)
    return result, _protocols_of(result, name)


def create_protocols(names: Iterable[str], **context: Any) -> list[Protocol]:
    """The protocols of every name in ``names`` (see :func:`create`)."""
    out: list[Protocol] = []
    for name in names:
        out.extend(create(name, **context)[1])
    return out


__all__ = [
    "ENTRY_POINT_GROUP",
    "ProtocolFactory",
    "UnknownProtocol",
    "available",
    "create",
    "create_protocols",
    "get_factory",
    "register_protocol",
    "unregister_protocol",
]
