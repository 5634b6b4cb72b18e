"""nodes.json as go-ethereum writes it, and the crawler's scoring rules."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from p2p.crypto import PrivateKey
from p2p.enode import ENR
from p2p.nodeset import ADDED, REMOVED, SKIP_INCOMPATIBLE, SKIP_RECENT, UPDATED, NodeEntry, NodeSetError, \
    check_result, dumps, loads, parse_duration

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
REC = ENR.build(PrivateKey.generate(), seq=3, ip="127.0.0.1", udp=30303, tcp=30303)


def test_reads_and_writes_go_ethereums_shape() -> None:
    go = {REC.node_id.hex(): {"seq": 3, "record": REC.to_text(),  # score omitted: it was 0
                              "firstResponse": "0001-01-01T00:00:00Z", "lastResponse": "0001-01-01T00:00:00Z",
                              "lastCheck": "2024-05-01T12:00:00Z"}}
    nodes = loads(json.dumps(go))
    e = nodes[REC.node_id]
    assert e.score == 0 and e.first_response is None and e.last_check == T0 and e.seq == 3
    assert json.loads(dumps(nodes)) == go
    text = dumps({REC.node_id: NodeEntry(REC, 2, T0, T0, T0)})
    assert text.startswith('{\n    "') and '"score": 2' in text and '"firstResponse": "2024-05-01T12:00:00Z"' in text


@pytest.mark.parametrize("item, words", [
    ({"record": "enr:-zz"}, "node"),
    ({"seq": 4, "record": REC.to_text()}, "seq 4"),
    ({"seq": 3, "record": REC.to_text(), "lastCheck": "yesterday"}, "RFC 3339"),
    ({"seq": 3, "record": REC.to_text(), "score": "high"}, "score"),
])
def test_bad_sets_are_refused_with_the_node_named(item: dict[str, object], words: str) -> None:
    with pytest.raises(NodeSetError, match=words):
        loads(json.dumps({REC.node_id.hex(): item}))
    with pytest.raises(NodeSetError, match="does not match"):
        loads(json.dumps({"00" * 32: {"seq": 3, "record": REC.to_text()}}))
    with pytest.raises(NodeSetError, match="not JSON"):
        loads("{")


def test_scores_rise_halve_and_drop() -> None:
    e, status = check_result(None, None, T0, 0)
    assert e is None and status == SKIP_INCOMPATIBLE  # never answered: not added
    e, status = check_result(None, REC, T0, 0)
    assert status == ADDED and e is not None and e.score == 1 and e.first_response == T0
    later = T0 + timedelta(hours=1)
    e2, status = check_result(e, REC, later, 600)
    assert status == UPDATED and e2 is not None and e2.score == 2 and e2.first_response == T0
    assert e2.last_response == later
    e3, status = check_result(e2, None, later + timedelta(minutes=5), 600)
    assert status == SKIP_RECENT and e3 == e2
    e4, status = check_result(e2, None, later + timedelta(hours=1), 600)
    assert status == UPDATED and e4 is not None and e4.score == 1 and e4.last_response == later
    e5, status = check_result(e4, None, later + timedelta(hours=2), 600)
    assert status == REMOVED and e5 is None


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1h30m") == 5400 and parse_duration("24h") == 86400
    assert parse_duration("1.5h") == 5400 and parse_duration("250ms") == 0.25 and parse_duration("42") == 42
    for bad in ("", "soon", "1d", "h", "-5", "5s junk"):
        with pytest.raises(ValueError):
            parse_duration(bad)
