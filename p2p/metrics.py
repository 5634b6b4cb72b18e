"""Prometheus metrics of one server, in its own ``CollectorRegistry`` (many servers can share a
process), and a small trio HTTP responder that serves them (``--metrics HOST:PORT``).

Discovery figures are read when scraped from the discovery service's ``stats.snapshot()``, so
the discovery layer does not depend on Prometheus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD = 8192  # bytes of an HTTP request head we read before answering anyway
HTTP_TIMEOUT = 5.0  # a scraper that does not send its request in this time is dropped
MAX_HTTP_CLIENTS = 16  # concurrent scrapes; more are closed at once


class ServerMetrics:
    """Counters and gauges of one server. Implements the peer layer's ``MessageMeter``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.peers = Gauge("p2p_peers", "Connected peers by direction", ["direction"], registry=r)
        self.dials = Counter("p2p_dials", "Outbound dials by outcome (ok or error class)", ["outcome"], registry=r)
        self.inbound = Counter("p2p_inbound_connections", "Inbound connections by outcome", ["outcome"], registry=r)
        self.handshake_failures = Counter(
            "p2p_handshake_failures", "RLPx or Hello handshakes that failed, by stage and reason",
            ["stage", "reason"], registry=r)
        self.disconnects = Counter("p2p_disconnects", "Peers removed, by reason and side",
                                   ["reason", "side"], registry=r)
        # Per-message counts are plain integers, exported at scrape time: a Prometheus child's
        # inc() takes a lock and costs more than handling a small message.
        self._in: dict[tuple[str, int], list[int]] = {}
        self._out: dict[tuple[str, int], list[int]] = {}
        self._unhandled: dict[tuple[str, int], list[int]] = {}
        r.register(_MessageCollector(self._in, self._out, self._unhandled))
        self.events_dropped = Counter("p2p_events_dropped", "Events not delivered to a slow subscriber", registry=r)
        self.limits = Counter("p2p_limit_hits", "Times a bound on what peers may make us spend acted, by limit",
                              ["limit"], registry=r)
        self.peers.labels("inbound").set(0)
        self.peers.labels("outbound").set(0)

    def ingress(self, protocol: str, code: int, size: int) -> None:
        _count(self._in, protocol, code, size)

    def egress(self, protocol: str, code: int, size: int) -> None:
        _count(self._out, protocol, code, size)

    def unhandled(self, protocol: str, code: int, size: int) -> None:
        _count(self._unhandled, protocol, code, size)

    def send_queue_full(self) -> None:
        """A send found its peer's send queue full and waited for the writer (the peer layer
        calls it when its meter has it)."""
        self.limits.labels("send_queue").inc()

    def watch_frame_budget(self, budget: Any) -> None:
        """Export a :class:`p2p.rlpx.FrameBudget`'s use from now on."""
        self.registry.register(_BudgetCollector(budget))

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when never set), e.g. ``value("p2p_dials_total", outcome="ok")``."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def messages_unhandled(self, protocol: str, code: int) -> int:
        """Messages dropped so far because no handler takes them."""
        return self._unhandled.get((protocol, code), [0, 0])[0]

    def messages(self, direction: str, protocol: str, code: int) -> tuple[int, int]:
        """(messages, bytes) counted so far; ``direction`` is "in" or "out"."""
        entry = (self._in if direction == "in" else self._out).get((protocol, code), [0, 0])
        return entry[0], entry[1]

    def watch_protocols(self, protocols: Iterable[Any]) -> None:
        """Export the ``counters()`` of each protocol that has them, as
        ``p2p_<protocol>_<name>_total`` (read at scrape time)."""
        protocols = list(protocols)
        watched = [p for p in protocols if getattr(p, "counters", None) is not None]
        if watched:
            self.registry.register(_ProtocolCollector(watched))
        typed = [p for p in protocols if getattr(p, "messages", None)]
        if typed:
            self.registry.register(_TypedCollector(typed))

    def watch_discovery(self, disc: Any) -> None:
        """Export the discovery service's counters and table size from now on."""
        self.registry.register(_DiscoveryCollector(disc))

    def watch_discovery_v5(self, v5: Any) -> None:
        """Export the discovery v5 engine's counters (``p2p_discv5_*``) from now on."""
        self.registry.register(_DiscoveryCollector(v5, prefix="p2p_discv5", title="Discovery v5"))

    def watch_output(self, output: "OutputStats") -> None:
        """Export the command's stdout queue (``p2p node``, ``p2p chat``) from now on."""
        self.registry.register(_OutputCollector(output))

    def watch_node_mix(self, current: Callable[[], Any]) -> None:
        """Export the dialer's node mix (``current()``: the FairMix now, or None): nodes per
        source, turns a source missed (its timeout acted), sources refused at the bound."""
        self.registry.register(_NodeMixCollector(current))

    def watch_nodedb(self, db: Any) -> None:
        """Export the node database's bounds at work (evictions, refusals) and node counts."""
        self.registry.register(_NodeDBCollector(db))

    def watch_dnsdisc(self, client: Any) -> None:
        """Export a DNS discovery client's ``stats`` (``p2p_dnsdisc_*``) from now on."""
        self.registry.register(_DNSDiscCollector(client))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _count(table: dict[tuple[str, int], list[int]], protocol: str, code: int, size: int) -> None:
    entry = table.get((protocol, code))
    if entry is None:
        entry = table[(protocol, code)] = [0, 0]
    entry[0] += 1
    entry[1] += size


class _MessageCollector(Collector):
    def __init__(self, ingress: dict[tuple[str, int], list[int]], egress: dict[tuple[str, int], list[int]],
                 unhandled: dict[tuple[str, int], list[int]]) -> None:
        self._ingress = ingress
        self._egress = egress
        self._unhandled = unhandled

    def collect(self) -> Iterable[Any]:
        dropped = CounterMetricFamily("p2p_unhandled_messages", "Messages no handler takes, dropped undecompressed",
                                      labels=["protocol", "code"])
        for (protocol, code), (count, _size) in list(self._unhandled.items()):
            dropped.add_metric([protocol, str(code)], float(count))
        yield dropped
        for direction, table in (("ingress", self._ingress), ("egress", self._egress)):
            verb = "received" if direction == "ingress" else "sent"
            messages = CounterMetricFamily(f"p2p_{direction}_messages", f"Messages {verb}, by protocol and code",
                                           labels=["protocol", "code"])
            size = CounterMetricFamily(f"p2p_{direction}_bytes", f"Payload bytes {verb}, by protocol and code",
                                       labels=["protocol", "code"])
            for (protocol, code), (count, total) in list(table.items()):
                messages.add_metric([protocol, str(code)], float(count))
                size.add_metric([protocol, str(code)], float(total))
            yield messages
            yield size


class _ProtocolCollector(Collector):
    """Reads each protocol's ``counters()`` at scrape time."""

    def __init__(self, protocols: list[Any]) -> None:
        self._protocols = protocols

    def collect(self) -> Iterable[Any]:
        seen: set[str] = set()
        for proto in self._protocols:
            try:
                counts = dict(proto.counters())
            except Exception:  # a scrape must not fail because of one protocol's counters
                log.debug("counters of protocol %s unavailable", proto.name, exc_info=True)
                continue
            for name, value in counts.items():
                metric = _metric_name(f"p2p_{proto.name}_{name}")
                if metric in seen:  # two versions of one protocol: the first one's counts
                    continue
                seen.add(metric)
                family = CounterMetricFamily(metric, f"{proto.name} protocol: {name.replace('_', ' ')}")
                family.add_metric([], float(value))
                yield family


class _TypedCollector(Collector):
    """Reads the typed layer's counts of each protocol (``Protocol.stats``) at scrape time."""

    def __init__(self, protocols: list[Any]) -> None:
        self._protocols = protocols

    def collect(self) -> Iterable[Any]:
        requests = CounterMetricFamily("p2p_requests", "Requests made through the typed layer, by outcome "
                                       "(ok, timeout, closed)", labels=["protocol", "outcome"])
        timeouts = CounterMetricFamily("p2p_request_timeouts", "Requests that got no response in time",
                                       labels=["protocol"])
        waits = CounterMetricFamily("p2p_request_slot_waits", "Requests that waited for a slot "
                                    "(max_in_flight reached: back-pressure)", labels=["protocol"])
        unsolicited = CounterMetricFamily("p2p_responses_unsolicited", "Responses no request waited for, "
                                          "dropped, by kind (unknown, duplicate, late, mismatched)",
                                          labels=["protocol", "kind"])
        unsolicited_off = CounterMetricFamily("p2p_unsolicited_disconnects", "Peers disconnected for "
                                              "unsolicited responses", labels=["protocol"])
        decode = CounterMetricFamily("p2p_decode_errors", "Payloads that did not decode as their message "
                                     "(each disconnected its peer)", labels=["protocol", "message"])
        limited = CounterMetricFamily("p2p_rate_limited", "Messages dropped by a protocol's rate limit",
                                      labels=["protocol", "limit"])
        floods = CounterMetricFamily("p2p_flood_disconnects", "Peers disconnected for exceeding a rate "
                                     "limit persistently", labels=["protocol"])
        seen: set[str] = set()
        for proto in self._protocols:
            if proto.name in seen:  # two versions of one protocol: the first one's counts
                continue
            seen.add(proto.name)
            stats = proto.stats
            req = stats.requests
            for outcome, count in list(req.outcomes.items()):
                requests.add_metric([proto.name, outcome], float(count))
            timeouts.add_metric([proto.name], float(req.outcomes.get("timeout", 0)))
            waits.add_metric([proto.name], float(req.slot_waits))
            for kind, count in list(req.unsolicited.items()):
                unsolicited.add_metric([proto.name, kind], float(count))
            unsolicited_off.add_metric([proto.name], float(req.disconnects))
            for message, count in list(stats.decode_errors.items()):
                decode.add_metric([proto.name, message], float(count))
            for limit, count in list(stats.rate_limited.items()):
                limited.add_metric([proto.name, limit], float(count))
            floods.add_metric([proto.name], float(stats.flood_disconnects))
        yield from (requests, timeouts, waits, unsolicited, unsolicited_off, decode, limited, floods)


def _metric_name(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


class _BudgetCollector(Collector):
    def __init__(self, budget: Any) -> None:
        self._budget = budget

    def collect(self) -> Iterable[Any]:
        used = GaugeMetricFamily("p2p_frame_budget_used_bytes", "Bytes reserved by frames being read")
        used.add_metric([], float(self._budget.used))
        yield used
        waits = CounterMetricFamily("p2p_frame_budget_waits", "Frame reads that waited for the memory budget")
        waits.add_metric([], float(self._budget.waits))
        yield waits
        refused = CounterMetricFamily("p2p_frame_budget_refused", "Frames larger than the whole memory budget")
        refused.add_metric([], float(self._budget.refused))
        yield refused


class OutputStats(Protocol):
    """What :meth:`ServerMetrics.watch_output` reads of a command's output queue."""

    @property
    def dropped(self) -> int: ...

    @property
    def queued(self) -> int: ...


class _OutputCollector(Collector):
    def __init__(self, output: OutputStats) -> None:
        self._output = output

    def collect(self) -> Iterable[Any]:
        dropped = CounterMetricFamily("p2p_output_dropped",
                                      "Lines of stdout dropped because the reader did not keep up")
        dropped.add_metric([], float(self._output.dropped))
        yield dropped
        queued = GaugeMetricFamily("p2p_output_queued_lines", "Lines of stdout waiting for the reader")
        queued.add_metric([], float(self._output.queued))
        yield queued


def _snapshot(disc: Any) -> Mapping[str, Any]:
    stats = getattr(disc, "stats", None)
    snap = getattr(stats, "snapshot", None)
    if callable(snap):
        result = snap()
        if isinstance(result, Mapping):
            return result
    return {}


class _DiscoveryCollector(Collector):
    """Reads the discovery service's ``stats.snapshot()`` at scrape time."""

    # bounded stores of the v5 engine whose evictions its snapshot reports
    _EVICTIONS = ("sessions_evicted", "challenges_evicted", "challenges_expired", "sent_nonces_evicted",
                  "sent_nonces_expired", "rate_limit_evicted")

    def __init__(self, disc: Any, *, prefix: str = "p2p_discovery", title: str = "Discovery") -> None:
        self._disc = disc
        self._prefix = prefix
        self._title = title

    def collect(self) -> Iterable[Any]:
        p, title = self._prefix, self._title
        try:
            snap = _snapshot(self._disc)
        except Exception:  # a scrape must not fail because discovery is shutting down
            log.debug("discovery stats unavailable", exc_info=True)
            snap = {}
        table = getattr(self._disc, "table", None)
        size = GaugeMetricFamily(f"{p}_table_size", f"Nodes in the {title.lower()} table")
        try:
            size.add_metric([], float(snap.get("table_size", len(table) if table is not None else 0)))
        except TypeError:
            size.add_metric([], 0.0)
        yield size
        packets = CounterMetricFamily(f"{p}_packets", f"{title} packets by direction and type",
                                      labels=["direction", "type"])
        for direction in ("in", "out"):
            for ptype, count in dict(snap.get(f"packets_{direction}", {})).items():
                packets.add_metric([direction, str(ptype)], float(count))
        yield packets
        traffic = CounterMetricFamily(f"{p}_bytes", f"{title} datagram bytes", labels=["direction"])
        for direction in ("in", "out"):
            traffic.add_metric([direction], float(snap.get(f"bytes_{direction}", 0)))
        yield traffic
        drops = CounterMetricFamily(f"{p}_drops", f"{title} packets dropped, by reason", labels=["reason"])
        for reason, count in dict(snap.get("drops", {})).items():
            drops.add_metric([str(reason)], float(count))
        yield drops
        lookups = CounterMetricFamily(f"{p}_lookups", f"{title} lookups run")
        lookups.add_metric([], float(snap.get("lookups", 0)))
        yield lookups
        if "pings_shared" in snap:
            shared = CounterMetricFamily(f"{p}_pings_shared",
                                         f"{title} Pings not sent: one to the same node awaited its Pong")
            shared.add_metric([], float(snap["pings_shared"]))
            yield shared
        evicted = {k: snap[k] for k in self._EVICTIONS if k in snap}
        if evicted:
            stores = CounterMetricFamily(f"{p}_store_evictions", f"{title} entries dropped from bounded stores",
                                         labels=["store"])
            for name, count in evicted.items():
                stores.add_metric([name], float(count))
            yield stores


class _NodeDBCollector(Collector):
    """Reads the node database's ``stats`` and counts at scrape time (plain integers there)."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def collect(self) -> Iterable[Any]:
        stats = self._db.stats
        evicted = CounterMetricFamily(
            "p2p_nodedb_evicted", "Node database entries dropped by its bounds: nodes (least recently seen "
            "unprotected) and endpoints (a node's least recently seen IP)", labels=["kind"])
        evicted.add_metric(["node"], float(stats.evicted_nodes))
        evicted.add_metric(["endpoint"], float(stats.evicted_endpoints))
        yield evicted
        refused = CounterMetricFamily("p2p_nodedb_protect_refused", "Protections refused: max_protected reached")
        refused.add_metric([], float(stats.protect_refused))
        yield refused
        nodes = GaugeMetricFamily("p2p_nodedb_nodes", "Nodes the node database tracks, by protection",
                                  labels=["state"])
        nodes.add_metric(["unprotected"], float(self._db.unprotected_count))
        nodes.add_metric(["protected"], float(self._db.protected_count))
        yield nodes


class _DNSDiscCollector(Collector):
    """Reads a :class:`p2p.dnsdisc.DNSClient`'s ``stats`` at scrape time (plain integers there)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def collect(self) -> Iterable[Any]:
        stats = self._client.stats
        for name, text, value in (
                ("p2p_dnsdisc_queries", "DNS discovery TXT queries sent", stats.queries),
                ("p2p_dnsdisc_cache_hits", "DNS discovery entries answered from the cache", stats.cache_hits),
                ("p2p_dnsdisc_rate_limited", "DNS discovery queries delayed by the rate limit", stats.rate_limited),
                ("p2p_dnsdisc_nodes", "Nodes DNS discovery handed out", stats.nodes)):
            family = CounterMetricFamily(name, text)
            family.add_metric([], float(value))
            yield family
        failures = CounterMetricFamily("p2p_dnsdisc_lookup_failures", "DNS discovery queries without an answer, "
                                       "by reason (timeout, nxdomain, ...)", labels=["reason"])
        for reason, count in dict(stats.failures).items():
            failures.add_metric([reason], float(count))
        yield failures
        rejected = CounterMetricFamily("p2p_dnsdisc_rejected", "DNS discovery roots, entries and subtrees refused, "
                                       "by reason (bad_signature, hash_mismatch, limit_*, ...)", labels=["reason"])
        for reason, count in dict(stats.rejected).items():
            rejected.add_metric([reason], float(count))
        yield rejected


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6]:PORT`` or ``:PORT`` (all interfaces would be "", we use 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


async def serve_metrics(
    render: Callable[[], bytes], host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Answer every HTTP request on ``host:port`` with the Prometheus text of ``render()``.
    ``task_status.started`` gets the bound port."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    limiter = trio.CapacityLimiter(MAX_HTTP_CLIENTS)

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            if limiter.available_tokens == 0:
                return
            async with limiter:
                head = b""
                with trio.move_on_after(HTTP_TIMEOUT):
                    while b"\r\n\r\n" not in head and len(head) < MAX_REQUEST_HEAD:
                        chunk = await stream.receive_some(4096)
                        if not chunk:
                            break
                        head += chunk
                if not head.startswith(b"GET "):
                    body, status = b"only GET is served\n", b"405 Method Not Allowed"
                else:
                    body, status = render(), b"200 OK"
                response = (b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"
                            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
                with trio.move_on_after(HTTP_TIMEOUT):
                    try:
                        await stream.send_all(response)
                    except (trio.BrokenResourceError, OSError):
                        pass

    async def guarded(stream: trio.SocketStream) -> None:
        try:
            await handle(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    task_status.started(bound)
    await trio.serve_listeners(guarded, listeners)




class _NodeMixCollector(Collector):
    def __init__(self, current: Callable[[], Any]) -> None:
        self._current = current

    def collect(self) -> Iterable[Any]:
        mix = self._current()
        nodes = CounterMetricFamily("p2p_node_source_nodes", "Dial candidates taken from each node source",
                                    labels=["source"])
        missed = CounterMetricFamily("p2p_node_source_timeouts",
                                     "Turns a node source missed: no node within its timeout, another source's taken",
                                     labels=["source"])
        refused = CounterMetricFamily("p2p_node_sources_refused", "Node sources refused at the mix's bound")
        if mix is not None:
            for src in mix.sources:
                nodes.add_metric([src.name], float(src.delivered))
                missed.add_metric([src.name], float(src.timeouts))
        refused.add_metric([], float(mix.refused_sources if mix is not None else 0))
        yield nodes
        yield missed
        yield refused


__all__ = ["OutputStats", "ServerMetrics", "parse_hostport", "serve_metrics"]
