"""The event writer's own rules: its group commits as exported, and how SQLite's group INSERT stores values."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import count_rows, metric_samples, sample
from kpiguard.db.models import KpiEvent
from kpiguard.ingest._writer import _COLUMNS, StoredEvent, sqlite_params
from kpiguard.keys import WRITER

KPI = "/api/governance/regression/kpi"


def _row(**kw: Any) -> StoredEvent:
    base = dict(id=None, domain="D", metric="m", success=True, value=None, actor=None, correlation_id=None,
                detail=None, created_at=datetime(2026, 1, 13, 15, 0, 0, 123456, tzinfo=UTC), event_id=None)
    return StoredEvent(**(base | kw))


@pytest.mark.parametrize("row", [
    _row(),
    _row(success=False, value=0.25, actor="a", correlation_id="c", event_id="e-1"),
    _row(value=3.0, detail={"k": [1, "x", None], "é": 1.5}),
    _row(detail={}),
    _row(created_at=datetime(2026, 1, 13, 15, 0, tzinfo=UTC)),  # no microseconds
    _row(created_at=datetime(2026, 1, 13, 16, 32, 5, 7, tzinfo=timezone(timedelta(hours=2)))),
    _row(created_at=datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC)),  # a three-digit year
], ids=["seed", "every-field", "detail", "empty-detail", "whole-second", "other-zone", "year-999"])
def test_sqlite_params_store_what_sqlalchemy_would(row):
    """The group INSERT's values are exactly what SQLAlchemy's bind processors make of each column on SQLite."""
    dialect = create_async_engine("sqlite+aiosqlite://").dialect
    procs = [KpiEvent.__table__.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in _COLUMNS]
    expected = [v if p is None else p(v) for v, p in zip(row[1:10], procs, strict=True)]
    assert sqlite_params([row, row]) == expected * 2


def test_sqlite_params_refuse_a_naive_time_as_the_column_type_does():
    """A naive created_at is refused, as UTCDateTime refuses it, rather than stored in an unknown zone."""
    with pytest.raises(ValueError, match="naive"):
        sqlite_params([_row(created_at=datetime(2026, 1, 13, 15, 0))])


async def test_each_group_commit_is_exported_with_its_size(client, monkeypatch):
    """Concurrent single events share group commits, and the histogram counts each commit with the events it stored."""
    writer = client.app[WRITER]
    groups: list[int] = []
    real = writer._commit_group

    async def commit_group(rows: list[StoredEvent]) -> list[StoredEvent]:
        groups.append(len(rows))
        return await real(rows)

    monkeypatch.setattr(writer, "_commit_group", commit_group)
    resps = await asyncio.gather(*(client.post(KPI, json={"domain": "D", "metric": "m", "success": True})
                                   for _ in range(40)))
    assert [r.status for r in resps] == [201] * 40
    assert sum(groups) == 40 and len(groups) < 40
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_ingest_group_commit_events_count") == len(groups)
    assert sample(samples, "kpiguard_ingest_group_commit_events_sum") == 40
    assert sample(samples, "kpiguard_ingest_group_commit_events_bucket", le="1.0") == groups.count(1)


@pytest.mark.parametrize("pool_size", [1, 2, 20])
async def test_the_writer_never_holds_the_whole_pool(make_client, pool_size):
    """Whatever the pool size, the writer keeps at most all but one connection: events, batches and reads all go on."""
    client = await make_client(database_pool_size=pool_size)
    resps = await asyncio.gather(
        *(client.post(KPI, json={"domain": "D", "metric": "m", "success": True}) for _ in range(20)),
        *(client.post("/api/v1/kpi-events", json=[{"domain": "D", "metric": "m", "success": False}] * 5)
          for _ in range(3)),
    )
    assert sorted({r.status for r in resps}) == [201]
    state = await client.get("/api/governance/regression/state")
    assert state.status == 200
    writer = client.app[WRITER]
    assert len(writer._pg_kept) <= max(0, pool_size - 1)


async def test_the_next_group_starts_before_the_last_group_is_answered(client, database, monkeypatch):
    """Once a group is committed, the next group's commit starts before the committed group's waiters wake.

    Answering first let the waiters' handlers run ahead of the writer, and the one SQLite writer sat
    idle while the loop wrote their responses. Every commit slot is held first (one on SQLite, two on
    PostgreSQL), so that the next group can start only when the first held one is done.
    """
    from kpiguard.ingest._writer import _PG_COMMITS_IN_FLIGHT

    slots = _PG_COMMITS_IN_FLIGHT if database.kind == "postgresql" else 1
    writer = client.app[WRITER]
    log: list[str] = []
    holds = [asyncio.Event() for _ in range(slots)]
    real = writer._commit_group

    async def commit_group(rows: list[StoredEvent]) -> list[StoredEvent]:
        n = len([e for e in log if e.startswith("commit")])
        log.append(f"commit {len(rows)}")
        if n < slots:
            await holds[n].wait()
        return await real(rows)

    monkeypatch.setattr(writer, "_commit_group", commit_group)
    event = ("D", "m", True, None, None, None, None, None, None)

    async def add(name: str) -> None:
        await writer.add_one(event)
        log.append(f"answered {name}")

    held = []
    for i in range(slots):
        held.append(asyncio.create_task(add(f"held{i}")))
        while len(log) <= i:
            await asyncio.sleep(0)
    rest = [asyncio.create_task(add(f"next{i}")) for i in range(3)]
    await asyncio.sleep(0.01)  # the three queue behind the held commits
    holds[0].set()
    while "answered held0" not in log:
        await asyncio.sleep(0.001)
    for h in holds:
        h.set()
    await asyncio.gather(*held, *rest)
    after = log[slots:]
    assert after.index("commit 3") < after.index("answered held0"), log


async def test_a_group_of_several_statements_on_sqlite_is_stored_whole_or_not_at_all(client, database, monkeypatch):
    """SQLite's writer commits each one-statement group by itself; a group of several statements is one transaction."""
    if database.kind != "sqlite":
        pytest.skip("PostgreSQL stores a group in one statement whatever its size")
    import kpiguard.ingest._writer as writer_module

    monkeypatch.setattr(writer_module, "_SQLITE_ROWS_PER_STATEMENT", 3)
    real = writer_module.sqlite_params
    calls: list[int] = []

    def failing_second_statement(rows: Any) -> list[Any]:
        calls.append(len(rows))
        values = real(rows)
        if len(calls) == 2:
            values[0] = None  # domain is NOT NULL: the second statement fails after the first ran
        return values

    monkeypatch.setattr(writer_module, "sqlite_params", failing_second_statement)
    writer = client.app[WRITER]
    event = ("D", "m", True, None, None, None, None, None, None)
    # queued at once: one group of 7, three statements
    results = await asyncio.gather(*(writer.add_one(event) for _ in range(7)), return_exceptions=True)
    assert calls[:2] == [3, 3]
    assert all(isinstance(r, Exception) for r in results)
    assert await count_rows(client, KpiEvent) == 0
    monkeypatch.setattr(writer_module, "sqlite_params", real)
    stored = await asyncio.gather(*(writer.add_one(event) for _ in range(4)))
    assert len({s.id for s in stored}) == 4
    assert await count_rows(client, KpiEvent) == 4
