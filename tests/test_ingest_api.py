"""KPI ingest through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import event

from conftest import count_rows, metric_samples, sample
from kpiguard.db.models import IngestRequest, KpiEvent
from kpiguard.keys import ENGINE

SEED_EVENT = {"domain": "WHOLESALE", "metric": "contract_rate", "success": True, "actor": "system"}
KPI = "/api/governance/regression/kpi"
BATCH = "/api/v1/kpi-events"


async def test_seed_curl_stores_event_and_counts_it(client):
    """The seed's first curl answers 201 with the stored event and counts it in /metrics."""
    resp = await client.post(KPI, json=SEED_EVENT)
    assert resp.status == 201
    body = await resp.json()
    assert body["id"] >= 1
    assert body["domain"] == "WHOLESALE" and body["metric"] == "contract_rate"
    assert body["success"] is True and body["actor"] == "system"
    assert body["created_at"].endswith("Z")
    assert await count_rows(client, KpiEvent) == 1
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_kpi_events_total", domain="WHOLESALE", metric="contract_rate",
                  outcome="success") == 1


@pytest.mark.parametrize(
    ("form", "success"),
    [
        ({"success": "true"}, True),
        ({"success": "false"}, False),
        ({"success": "1"}, True),
        ({"success": "0"}, False),
    ],
)
async def test_form_body_accepts_boolean_spellings(client, form, success):
    """A form body's success field takes true/false/1/0."""
    resp = await client.post(KPI, data={"domain": "WHOLESALE", "metric": "contract_rate", **form})
    assert resp.status == 201
    assert (await resp.json())["success"] is success


async def test_all_fields_round_trip(client):
    """value, correlation_id, detail and a backfilled created_at are stored and returned in UTC."""
    resp = await client.post(KPI, json={
        **SEED_EVENT, "value": -312.5, "correlation_id": "deal-42", "detail": {"offer": 3},
        "created_at": "2026-01-13T16:32:00+02:00",
    })
    assert resp.status == 201
    body = await resp.json()
    assert body["value"] == -312.5 and body["correlation_id"] == "deal-42" and body["detail"] == {"offer": 3}
    assert body["created_at"] == "2026-01-13T14:32:00Z"


async def test_form_detail_as_json_text(client):
    """A form body carries detail as JSON text."""
    resp = await client.post(KPI, data={"domain": "A", "metric": "b", "success": "1", "detail": '{"k": [1, 2]}'})
    assert resp.status == 201
    assert (await resp.json())["detail"] == {"k": [1, 2]}


async def test_value_is_exported_as_histogram(client):
    """Event values land in the histogram and in the positive/negative sum counters."""
    for value in (500, -300, 200):
        await client.post(KPI, json={"domain": "CAPITAL", "metric": "roi_event", "success": True, "value": value})
    samples = await metric_samples(client)
    labels = {"domain": "CAPITAL", "metric": "roi_event"}
    assert sample(samples, "kpiguard_kpi_event_value_count", **labels) == 3
    assert sample(samples, "kpiguard_kpi_event_value_bucket", le="0.0", **labels) == 1
    assert sample(samples, "kpiguard_kpi_event_value_positive_total", **labels) == 700
    assert sample(samples, "kpiguard_kpi_event_value_negative_total", **labels) == 300


def _json(body: Any) -> dict[str, Any]:
    return {"data": json.dumps(body), "headers": {"Content-Type": "application/json"}}


BAD_SINGLE = [
    # (id, request kwargs, status, field)
    ("malformed-json", {"data": b'{"domain": ', "headers": {"Content-Type": "application/json"}}, 400, None),
    ("not-utf8", {"data": b'{"domain": "\xff"}', "headers": {"Content-Type": "application/json"}}, 400, None),
    ("array-not-object", _json([SEED_EVENT]), 422, None),
    ("empty-body", {"data": b"", "headers": {"Content-Type": "application/json"}}, 422, None),
    ("missing-domain", _json({"metric": "m", "success": True}), 422, "domain"),
    ("missing-success", _json({"domain": "D", "metric": "m"}), 422, "success"),
    ("wrong-type-domain", _json({**SEED_EVENT, "domain": 5}), 422, "domain"),
    ("wrong-type-success", _json({**SEED_EVENT, "success": "maybe"}), 422, "success"),
    ("wrong-type-value", _json({**SEED_EVENT, "value": "lots"}), 422, "value"),
    ("nan-value", {"data": '{"domain":"D","metric":"m","success":true,"value":NaN}',
                   "headers": {"Content-Type": "application/json"}}, 422, "value"),
    ("bad-name", _json({**SEED_EVENT, "domain": "9bad name"}), 422, "domain"),
    ("name-too-long", _json({**SEED_EVENT, "metric": "m" * 65}), 422, "metric"),
    ("unknown-field", _json({**SEED_EVENT, "colour": "red"}), 422, "colour"),
    ("detail-not-object", _json({**SEED_EVENT, "detail": [1]}), 422, "detail"),
    ("bad-created-at", _json({**SEED_EVENT, "created_at": "last tuesday"}), 422, "created_at"),
    ("form-bad-detail", {"data": {"domain": "D", "metric": "m", "success": "1", "detail": "{"}}, 422, "detail"),
    ("form-repeated-field", {"data": "domain=D&domain=E&metric=m&success=1",
                             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 422, "domain"),
    ("wrong-content-type", {"data": "domain=D", "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type"),
]


@pytest.mark.parametrize(("kwargs", "status", "field"), [c[1:] for c in BAD_SINGLE], ids=[c[0] for c in BAD_SINGLE])
async def test_bad_single_event_is_refused_and_nothing_stored(client, kwargs, status, field):
    """Each bad input gets its 4xx with the field named, and no event is stored."""
    resp = await client.post(KPI, **kwargs)
    assert resp.status == status
    err = (await resp.json())["error"]
    assert err["field"] == field
    assert err["code"] and err["message"]
    assert await count_rows(client, KpiEvent) == 0


async def test_oversize_body_is_413(make_client):
    """A body over max_body_bytes answers 413 and stores nothing."""
    client = await make_client(max_body_bytes=2048)
    resp = await client.post(KPI, json={**SEED_EVENT, "detail": {"pad": "x" * 4000}})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"
    assert await count_rows(client, KpiEvent) == 0


async def test_unknown_route_and_method_are_json(client):
    """A wrong path is a JSON 404 and a wrong method a JSON 405."""
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.get(KPI)
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_event_id_makes_single_retry_count_once(client):
    """A retried single event with the same event_id is stored once and answers with the original."""
    first = await client.post(KPI, json={**SEED_EVENT, "event_id": "e-1"})
    again = await client.post(KPI, json={**SEED_EVENT, "event_id": "e-1"})
    assert first.status == 201 and again.status == 200
    a, b = await first.json(), await again.json()
    assert b["id"] == a["id"] and b["duplicate"] is True
    assert sample(await metric_samples(client), "kpiguard_ingest_duplicates_total", kind="kpi_event") == 1
    assert await count_rows(client, KpiEvent) == 1
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_kpi_events_total", domain="WHOLESALE", metric="contract_rate",
                  outcome="success") == 1


async def test_concurrent_single_events_all_stored(client):
    """Many concurrent single POSTs share group commits and every one is stored with its own id."""
    import asyncio

    resps = await asyncio.gather(*[
        client.post(KPI, json={"domain": "D", "metric": "m", "success": i % 2 == 0}) for i in range(60)
    ])
    ids = set()
    for r in resps:
        assert r.status == 201
        ids.add((await r.json())["id"])
    assert len(ids) == 60
    assert await count_rows(client, KpiEvent) == 60


@pytest.mark.parametrize("rows_per_statement", [3000, 7])
async def test_concurrent_single_events_answer_with_their_own_row(client, monkeypatch, rows_per_statement):
    """Each acknowledged event of a shared group commit answers with the id of the row that holds its values."""
    import asyncio

    # 7: SQLite splits a group's INSERT into statements of 7 rows, all in the group's one transaction
    monkeypatch.setattr("kpiguard.ingest._writer._SQLITE_ROWS_PER_STATEMENT", rows_per_statement)

    from sqlalchemy import select

    from kpiguard.keys import SESSIONS

    resps = await asyncio.gather(*[
        client.post(KPI, json={"domain": "D", "metric": "m", "success": i % 3 == 0, "value": float(i)})
        for i in range(80)
    ])
    answered = {}
    for r in resps:
        assert r.status == 201
        body = await r.json()
        answered[body["id"]] = (body["value"], body["success"])
    async with client.app[SESSIONS]() as session:
        stored = {e.id: (e.value, e.success) for e in (await session.execute(select(KpiEvent))).scalars()}
    assert stored == answered
    assert sorted(v for v, _ in stored.values()) == [float(i) for i in range(80)]


async def test_failed_group_commit_is_503_and_the_next_event_is_stored(client):
    """A group commit the database refuses answers 503 (retry) and stores nothing; once it can, events are stored."""
    engine = client.app[ENGINE]
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE kpi_event RENAME TO kpi_event_away")
    try:
        resp = await client.post(KPI, json=SEED_EVENT)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"]["code"] == "storage_unavailable"
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE kpi_event_away RENAME TO kpi_event")
    assert await count_rows(client, KpiEvent) == 0
    for _ in range(2):
        assert (await client.post(KPI, json=SEED_EVENT)).status == 201
    assert await count_rows(client, KpiEvent) == 2


# --- batches ---

def _events(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"domain": "WHOLESALE", "metric": "contract_rate", "success": i % 20 != 0, **extra} for i in range(n)]


async def test_json_batch_is_stored(client):
    """A JSON array batch answers 201 with the count and is exported."""
    resp = await client.post(BATCH, json=_events(40))
    assert resp.status == 201
    assert await resp.json() == {"stored": 40, "duplicates": 0}
    assert await count_rows(client, KpiEvent) == 40
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_kpi_events_total", domain="WHOLESALE", metric="contract_rate",
                  outcome="failure") == 2


async def test_ndjson_batch_is_stored(client):
    """An NDJSON batch (blank lines ignored) is stored."""
    body = "\n".join(json.dumps(e) for e in _events(25)) + "\n\n"
    resp = await client.post(BATCH, data=body, headers={"Content-Type": "application/x-ndjson"})
    assert resp.status == 201
    assert (await resp.json())["stored"] == 25
    assert await count_rows(client, KpiEvent) == 25


async def test_idempotency_key_retry_is_stored_once(client):
    """A retried batch with the same Idempotency-Key is stored once and says it was replayed."""
    headers = {"Idempotency-Key": "batch-7"}
    first = await client.post(BATCH, json=_events(30), headers=headers)
    again = await client.post(BATCH, json=_events(30), headers=headers)
    assert first.status == 201
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())["stored"] == 30
    assert await count_rows(client, KpiEvent) == 30
    assert await count_rows(client, IngestRequest) == 1
    assert sample(await metric_samples(client), "kpiguard_ingest_duplicates_total", kind="idempotency_key") == 1


async def test_event_ids_in_batches_count_once(client):
    """Per-event event_ids skip events seen before, across and within batches."""
    batch = [{**e, "event_id": f"ev-{i}"} for i, e in enumerate(_events(10))]
    r1 = await client.post(BATCH, json=batch)
    r2 = await client.post(BATCH, json=batch[5:] + [{**batch[0], "event_id": "ev-new"}, batch[1]])
    assert (await r1.json()) == {"stored": 10, "duplicates": 0}
    assert (await r2.json()) == {"stored": 1, "duplicates": 6}
    assert await count_rows(client, KpiEvent) == 11
    assert sample(await metric_samples(client), "kpiguard_ingest_duplicates_total", kind="kpi_event") == 6


async def test_batch_uses_bulk_statements_not_one_per_event(client, database):
    """A batch of 500 is written with one multi-row INSERT on SQLite and COPY (no INSERT) on PostgreSQL."""
    statements: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):
        if "INSERT INTO kpi_event" in statement:
            statements.append(statement)

    sync_engine = client.app[ENGINE].sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        resp = await client.post(BATCH, json=_events(500))
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    assert resp.status == 201
    assert await count_rows(client, KpiEvent) == 500
    assert len(statements) == (1 if database.kind == "sqlite" else 0)


BAD_BATCH = [
    ("malformed-json", {"data": b"[{", "headers": {"Content-Type": "application/json"}}, 400, None),
    ("not-utf8", {"data": b'[{"domain": "\xfe"}]', "headers": {"Content-Type": "application/json"}}, 400, None),
    ("object-not-array", _json(SEED_EVENT), 422, "events"),
    ("empty", _json([]), 422, "events"),
    ("bad-event-in-middle", _json(_events(3)[:2] + [{"domain": "D", "metric": "m"}]), 422, "events[2].success"),
    ("unknown-field", _json([{**SEED_EVENT, "extra": 1}]), 422, "events[0].extra"),
    ("ndjson-bad-line", {"data": json.dumps(SEED_EVENT) + "\n{oops\n",
                         "headers": {"Content-Type": "application/x-ndjson"}}, 400, "events[1]"),
    ("ndjson-not-object", {"data": json.dumps(SEED_EVENT) + "\n[1]\n",
                           "headers": {"Content-Type": "application/x-ndjson"}}, 422, "events[1]"),
    ("form-not-accepted", {"data": {"domain": "D"}}, 415, "Content-Type"),
    ("idempotency-key-too-long", {**_json(_events(1)), "headers": {"Content-Type": "application/json",
                                                                   "Idempotency-Key": "k" * 201}}, 422,
     "Idempotency-Key"),
]


@pytest.mark.parametrize(("kwargs", "status", "field"), [c[1:] for c in BAD_BATCH], ids=[c[0] for c in BAD_BATCH])
async def test_bad_batch_is_refused_whole(client, kwargs, status, field):
    """A batch with any bad part is refused whole with the field named; nothing is stored."""
    resp = await client.post(BATCH, **kwargs)
    assert resp.status == status
    assert (await resp.json())["error"]["field"] == field
    assert await count_rows(client, KpiEvent) == 0


async def test_batch_over_event_limit_is_413(make_client):
    """More events than max_batch_events answers 413 naming the batch; nothing stored."""
    client = await make_client(max_batch_events=10)
    resp = await client.post(BATCH, json=_events(11))
    assert resp.status == 413
    assert (await resp.json())["error"]["field"] == "events"
    assert await count_rows(client, KpiEvent) == 0


async def test_label_cap_stores_events_but_drops_series(make_client, caplog):
    """Past the cardinality cap events are stored, series are not exported, and the drop is counted and logged once."""
    client = await make_client(max_label_pairs=2)
    for metric in ("a", "b", "c", "c"):
        assert (await client.post(KPI, json={"domain": "D", "metric": metric, "success": True})).status == 201
    assert await count_rows(client, KpiEvent) == 4
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_kpi_events_total", domain="D", metric="b", outcome="success") == 1
    assert sample(samples, "kpiguard_kpi_events_total", domain="D", metric="c", outcome="success") is None
    assert sample(samples, "kpiguard_series_dropped_total") == 2
    assert sample(samples, "kpiguard_label_pairs") == 2
    assert sum("D.c" in r.getMessage() for r in caplog.records) == 1


async def test_unexpected_error_is_json_500_without_traceback(client, monkeypatch, caplog):
    """A bug behind an endpoint answers a JSON 500 that leaks nothing; the traceback goes to the log only."""
    from kpiguard.keys import WRITER

    async def broken(event):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(client.app[WRITER], "add_one", broken)
    resp = await client.post(KPI, json=SEED_EVENT)
    assert resp.status == 500
    text = await resp.text()
    assert "secret internal detail" not in text and "Traceback" not in text
    assert (await resp.json())["error"]["code"] == "internal_error"
    assert "secret internal detail" in caplog.text


_NDJSON = "application/x-ndjson"
_E = json.dumps(SEED_EVENT)
EXACT_BATCH_ERRORS = [
    # (id, body, content type, status, message): the whole error text, as clients and runbooks see it
    ("ndjson-malformed-line", _E + "\n{oops\n", _NDJSON, 400,
     "events[1]: malformed JSON at line 1 column 2: Expecting property name enclosed in double quotes"),
    ("ndjson-two-objects-on-a-line", _E + "\n" + _E + "," + _E + "\n", _NDJSON, 400,
     "events[1]: malformed JSON at line 1 column 87: Extra data"),
    ("ndjson-missing-field", _E + "\n" + _E + '\n{"domain":"D","metric":"m"}\n', _NDJSON, 422,
     "events[2].success: field required"),
    ("ndjson-bad-value", _E + "\n" + json.dumps({**SEED_EVENT, "value": "lots"}), _NDJSON, 422,
     "events[1].value: Input should be a valid number, unable to parse string as a number"),
    ("ndjson-two-errors", '{"domain":"D"}\n', _NDJSON, 422, "events[0].metric: field required (and 1 more error)"),
    ("json-trailing-comma", "[" + _E + ",]", "application/json", 400,
     "malformed JSON at line 1 column 89: Expecting value"),
    ("json-detail-too-big", json.dumps([{**SEED_EVENT, "detail": {"x": "y" * 17000}}]), "application/json", 422,
     "events[0].detail: Value error, must serialise to at most 16384 bytes"),
    ("json-nan-value", '[{"domain":"D","metric":"m","success":true,"value":NaN}]', "application/json", 422,
     "events[0].value: Input should be a finite number"),
]


@pytest.mark.parametrize(("body", "ctype", "status", "message"), [c[1:] for c in EXACT_BATCH_ERRORS],
                         ids=[c[0] for c in EXACT_BATCH_ERRORS])
async def test_batch_error_names_line_and_field_exactly(client, body, ctype, status, message):
    """A refused batch's error text names the line (NDJSON) or index and the field, word for word; nothing stored."""
    resp = await client.post(BATCH, data=body, headers={"Content-Type": ctype})
    assert resp.status == status
    assert (await resp.json())["error"]["message"] == message
    assert await count_rows(client, KpiEvent) == 0


@pytest.mark.parametrize("ctype", ["application/json", _NDJSON])
async def test_batch_blank_value_means_no_value(client, ctype):
    """A batch event with "value": "" (a form's empty field) is stored without a value, as a single event is."""
    events = [{**SEED_EVENT, "value": 1.5}, {**SEED_EVENT, "value": ""}]
    body = json.dumps(events) if ctype == "application/json" else "\n".join(json.dumps(e) for e in events)
    resp = await client.post(BATCH, data=body, headers={"Content-Type": ctype})
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {"stored": 2, "duplicates": 0}
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_kpi_event_value_count", domain="WHOLESALE", metric="contract_rate") == 1
    assert sample(samples, "kpiguard_kpi_events_total", domain="WHOLESALE", metric="contract_rate",
                  outcome="success") == 2


async def test_ndjson_batch_stores_every_field(client, database):
    """Every field of an NDJSON event reaches the table as sent (naive created_at as UTC, detail as an object)."""
    ev = {**SEED_EVENT, "value": -2.25, "actor": "a", "correlation_id": "c", "detail": {"k": [1, "x"]},
          "created_at": "2026-01-02T03:04:05", "event_id": "nd-1"}
    resp = await client.post(BATCH, data=json.dumps(ev) + "\n", headers={"Content-Type": _NDJSON})
    assert resp.status == 201
    from sqlalchemy import select

    from kpiguard.keys import SESSIONS

    async with client.app[SESSIONS]() as session:
        row = (await session.execute(select(KpiEvent))).scalar_one()
    assert (row.domain, row.metric, row.success, row.value, row.actor, row.correlation_id, row.detail, row.event_id) \
        == ("WHOLESALE", "contract_rate", True, -2.25, "a", "c", {"k": [1, "x"]}, "nd-1")
    assert row.created_at.isoformat() == "2026-01-02T03:04:05+00:00"
