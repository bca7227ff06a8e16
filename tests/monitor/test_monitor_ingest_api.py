"""Telemetry ingest through POST /api/monitor/events, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

from sqlalchemy import event, select

from conftest import count_rows, metric_samples, sample
from kpiguard.db.models import TelemetryEvent
from kpiguard.keys import ENGINE, SESSIONS

from ._http import EVENTS, day_events, post_events

DAY = date(2026, 2, 21)
SEED_EVENT = day_events(DAY, events=1)[0]


async def test_one_event_object_is_stored_with_its_event_data(mclient):
    """A single event object answers 201; the row keeps the flattened fields and the event_data sent."""
    ev = {
        "event_id": "req-7f3a", "occurred_at": "2026-02-21T12:15:00+02:00", "event_type": "chat_completion",
        "event_data": {"model": "claude-sonnet-4", "backend": "railway", "duration_ms": 812.5, "error": "boom",
                       "custom": {"k": [1, 2]},
                       "telemetry": {"request_chain": [{"fallback_reason": "rate_limited", "hop": 1}, {}]}},
    }
    resp = await mclient.post(EVENTS, json=ev)
    assert resp.status == 201
    assert await resp.json() == {"stored": 1, "new": 1, "duplicates": 0}
    async with mclient.app[SESSIONS]() as session:
        row = (await session.execute(select(TelemetryEvent))).scalar_one()
    assert row.occurred_at.isoformat() == "2026-02-21T10:15:00+00:00"
    assert (row.model, row.backend, row.agent, row.duration_ms) == ("claude-sonnet-4", "railway", None, 812.5)
    assert row.success is False and row.fallback_reason == "rate_limited" and row.duplicate is False
    assert row.event_data == ev["event_data"]


async def test_ndjson_is_stored_and_counted_after_commit(mclient):
    """An NDJSON body (blank lines ignored) is stored; counters, fallbacks and the latency histogram follow."""
    events = day_events(DAY, events=30, failures=3, fallbacks=6)
    body = "\n".join(json.dumps(e) for e in events) + "\n\n"
    resp = await mclient.post(EVENTS, data=body, headers={"Content-Type": "application/x-ndjson"})
    assert resp.status == 201 and (await resp.json())["new"] == 30
    assert await count_rows(mclient, TelemetryEvent) == 30
    samples = await metric_samples(mclient)
    by_outcome = {"success": 0.0, "failure": 0.0}
    for (name, labels), value in samples.items():
        if name == "kpiguard_telemetry_events_total":
            by_outcome[dict(labels)["outcome"]] += value
    assert by_outcome == {"success": 27, "failure": 3}
    assert sample(samples, "kpiguard_telemetry_events_total", outcome="failure", model="gpt-4o",
                  backend="vercel") == 1  # event 0: model gpt-4o (i % 3 == 0), backend vercel (even)
    fallbacks = sum(v for (n, _), v in samples.items() if n == "kpiguard_telemetry_fallbacks_total")
    assert fallbacks == 6
    observed = sum(v for (n, _), v in samples.items() if n == "kpiguard_telemetry_request_duration_seconds_count")
    assert observed == 30
    assert sample(samples, "kpiguard_ingest_batch_size_events_count", endpoint="monitor-events") == 1


async def test_a_large_batch_uses_a_few_multi_row_inserts(mclient):
    """2500 events go out in at most a handful of INSERT statements, each carrying many rows."""
    statements: list[tuple[str, int]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if "INSERT INTO telemetry_event" in statement:
            statements.append((statement, statement.count("?") + statement.count("$")))

    engine = mclient.app[ENGINE].sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        events = [e for d in (DAY, date(2026, 2, 22)) for e in day_events(d, events=1250)]
        await post_events(mclient, events)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert await count_rows(mclient, TelemetryEvent) == 2500
    assert 1 <= len(statements) <= 5
    assert all(params >= 100 for _, params in statements)


async def test_concurrent_requests_with_the_same_new_ids_count_each_id_once(mclient):
    """Two racing requests carrying the same new event_ids store one traffic row per id; the rest are replays."""
    events = day_events(DAY, events=40)
    first, second = await asyncio.gather(
        mclient.post(EVENTS, json=events), mclient.post(EVENTS, json=list(reversed(events)))
    )
    assert first.status == 201 and second.status == 201
    bodies = [await first.json(), await second.json()]
    assert sum(b["new"] for b in bodies) == 40 and sum(b["duplicates"] for b in bodies) == 40
    async with mclient.app[SESSIONS]() as session:
        traffic = (await session.execute(
            select(TelemetryEvent.event_id).where(TelemetryEvent.duplicate.is_(False)))).scalars().all()
    assert sorted(traffic) == sorted(e["event_id"] for e in events)


async def test_label_cap_counts_the_overflow_under_other(make_client):
    """Past max_label_pairs, events are counted under model="other", backend="other" and the overflow counted."""
    client = await make_client(monitor_scheduler=False, max_label_pairs=1)
    events = day_events(DAY, events=6)  # (gpt-4o, vercel), (claude-sonnet-4, railway), (claude-sonnet-4, vercel)...
    await post_events(client, events)
    samples = await metric_samples(client)
    total = sum(v for (n, _), v in samples.items() if n == "kpiguard_telemetry_events_total")
    assert total == 6
    assert sample(samples, "kpiguard_telemetry_events_total", outcome="success", model="other", backend="other") == 5
    assert sample(samples, "kpiguard_telemetry_label_overflow_total") == 5


def _json(body: Any) -> dict[str, Any]:
    return {"data": json.dumps(body), "headers": {"Content-Type": "application/json"}}


def _ndjson(*lines: str) -> dict[str, Any]:
    return {"data": "\n".join(lines), "headers": {"Content-Type": "application/x-ndjson"}}


def _with(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the seed event with the dotted ``path`` set (or removed when value is ...)."""
    ev = json.loads(json.dumps(base or SEED_EVENT))
    *parents, leaf = path.split(".")
    node = ev
    for p in parents:
        node = node.setdefault(p, {})
    if value is ...:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return ev


GOOD = day_events(DAY, events=3)
BAD_INGEST = [
    # (id, request kwargs, status, field)
    ("malformed-json", {"data": b'{"event_id": ', "headers": {"Content-Type": "application/json"}}, 400, None),
    ("not-utf8", {"data": b'{"event_id": "\xff"}', "headers": {"Content-Type": "application/json"}}, 400, None),
    ("empty-body", {"data": b"", "headers": {"Content-Type": "application/json"}}, 422, "events"),
    ("a-string", _json("event"), 422, "events"),
    ("empty-array", _json([]), 422, "events"),
    ("form-not-accepted", {"data": {"event_id": "x"}}, 415, "Content-Type"),
    ("text-plain", {"data": "x", "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type"),
    ("missing-event-id", _json(_with("event_id", ...)), 422, "event_id"),
    ("missing-occurred-at", _json(_with("occurred_at", ...)), 422, "occurred_at"),
    ("missing-event-type", _json(_with("event_type", ...)), 422, "event_type"),
    ("event-id-number", _json(_with("event_id", 7)), 422, "event_id"),
    ("event-id-too-long", _json(_with("event_id", "e" * 129)), 422, "event_id"),
    ("event-id-control-char", _json(_with("event_id", "a\nb")), 422, "event_id"),
    ("occurred-at-not-iso", _json(_with("occurred_at", "last tuesday")), 422, "occurred_at"),
    ("occurred-at-unix-number", _json(_with("occurred_at", 1771632000)), 422, "occurred_at"),
    ("unknown-top-level-field", _json(_with("colour", "red")), 422, "colour"),
    ("event-data-not-object", _json(_with("event_data", [1])), 422, "event_data"),
    ("duration-string", _json(_with("event_data.duration_ms", "812")), 422, "event_data.duration_ms"),
    ("duration-negative", _json(_with("event_data.duration_ms", -1)), 422, "event_data.duration_ms"),
    ("duration-bool", _json(_with("event_data.duration_ms", True)), 422, "event_data.duration_ms"),
    ("duration-nan", {"data": json.dumps(_with("event_data.duration_ms", "NAN")).replace('"NAN"', "NaN"),
                      "headers": {"Content-Type": "application/json"}}, 422, "event_data.duration_ms"),
    ("success-string", _json(_with("event_data.success", "yes")), 422, "event_data.success"),
    ("model-number", _json(_with("event_data.model", 4)), 422, "event_data.model"),
    ("model-empty", _json(_with("event_data.model", "")), 422, "event_data.model"),
    ("request-chain-not-list", _json(_with("event_data.telemetry", {"request_chain": {"a": 1}})), 422,
     "event_data.telemetry.request_chain"),
    ("fallback-reason-number", _json(_with("event_data.telemetry", {"request_chain": [{"fallback_reason": 3}]})),
     422, "event_data.telemetry.request_chain[0].fallback_reason"),
    ("fallback-reason-nul", _json(_with("event_data.telemetry", {"request_chain": [{"fallback_reason": "a\u0000"}]})),
     422, "event_data.telemetry.request_chain[0].fallback_reason"),
    ("extra-nan-in-event-data", {"data": json.dumps(_with("event_data.x", "NAN")).replace('"NAN"', "Infinity"),
                                 "headers": {"Content-Type": "application/json"}}, 422, "event_data"),
    ("bad-event-in-array", _json([*GOOD[:2], _with("event_data.duration_ms", "slow", GOOD[2])]), 422,
     "events[2].event_data.duration_ms"),
    ("array-item-not-object", _json([GOOD[0], 5]), 422, "events[1]"),
    ("nul-in-array-item", _json([GOOD[0], _with("event_data.telemetry",
                                               {"request_chain": [{"fallback_reason": "\u0000"}]}, GOOD[1])]), 422,
     "events[1].event_data.telemetry.request_chain[0].fallback_reason"),
    ("ndjson-bad-line", _ndjson(json.dumps(GOOD[0]), "{oops"), 400, "events[1]"),
    ("ndjson-not-object", _ndjson(json.dumps(GOOD[0]), "[1]"), 422, "events[1]"),
    ("ndjson-bad-field", _ndjson(json.dumps(GOOD[0]), json.dumps(_with("occurred_at", "x", GOOD[1]))), 422,
     "events[1].occurred_at"),
    ("ndjson-empty", _ndjson("", "  "), 422, "events"),
]


async def test_bad_ingest_is_refused_whole_and_nothing_stored(mclient):
    """Each bad body of the table gets its 4xx naming the field; nothing of the request is stored, not even
    the good events. (One app for the whole table keeps the matrix fast on both stores.)"""
    for case, kwargs, status, field in BAD_INGEST:
        resp = await mclient.post(EVENTS, **kwargs)
        assert resp.status == status, (case, await resp.text())
        err = (await resp.json())["error"]
        assert err["field"] == field, (case, err)
        assert err["code"] and err["message"], case
        assert await count_rows(mclient, TelemetryEvent) == 0, case


async def test_limits_answer_413_and_store_nothing(make_client):
    """A batch over max_batch_events or a body over max_body_bytes answers 413; nothing is stored."""
    client = await make_client(monitor_scheduler=False, max_batch_events=5, max_body_bytes=4096)
    resp = await client.post(EVENTS, json=day_events(DAY, events=6))
    assert resp.status == 413 and (await resp.json())["error"]["field"] == "events"
    resp = await client.post(EVENTS, json=_with("event_data.pad", "x" * 5000))
    assert resp.status == 413
    assert await count_rows(client, TelemetryEvent) == 0


async def test_ingest_needs_the_ingest_scope(make_client):
    """With tokens configured, a missing token is 401 and a webhook token 403; an ingest token stores."""
    client = await make_client(monitor_scheduler=False, ingest_tokens="in-1", webhook_tokens="wh-1")
    assert (await client.post(EVENTS, json=SEED_EVENT)).status == 401
    resp = await client.post(EVENTS, json=SEED_EVENT, headers={"Authorization": "Bearer wh-1"})
    assert resp.status == 403
    assert await count_rows(client, TelemetryEvent) == 0
    resp = await client.post(EVENTS, json=SEED_EVENT, headers={"Authorization": "Bearer in-1"})
    assert resp.status == 201
