"""The event writer's own rules: its group commits as exported, and how SQLite's group INSERT stores values."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import metric_samples, sample
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
