"""Builders of synthetic telemetry for the monitor's domain tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from datetime import UTC, date, datetime, timedelta

import pytest

from kpiguard.monitor import Aggregate, DailyAggregate, TelemetryRecord, aggregate

DayBuilder = Callable[..., DailyAggregate]


def build_records(
    day: date,
    *,
    events: int,
    failures: int = 0,
    fallbacks: int = 0,
    duplicates: int = 0,
    latency_ms: float = 400.0,
) -> list[TelemetryRecord]:
    """``events`` traffic records of one day: the first ``failures`` fail, the last ``fallbacks`` fell back,
    then ``duplicates`` replays of the first ids; latencies spread evenly around ``latency_ms``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    records = []
    for i in range(events):
        records.append(TelemetryRecord(
            event_id=f"{day.isoformat()}-{i}",
            occurred_at=start + timedelta(seconds=i * 86_400 / max(events, 1)),
            event_type="chat_completion",
            model="model-a" if i % 3 else "model-b",
            backend="railway" if i % 2 else "vercel",
            agent="prince_flowers",
            duration_ms=latency_ms * (0.5 + i / max(events - 1, 1)),
            success=i >= failures,
            fallback_reason="rate_limited" if i >= events - fallbacks else None,
        ))
    for i in range(duplicates):
        records.append(dataclasses.replace(records[i % events], duplicate=True))
    return records


@pytest.fixture
def day_aggregate() -> DayBuilder:
    """Build the DailyAggregate of a synthetic day from counts."""

    def build(day: date, **counts: float) -> DailyAggregate:
        agg: Aggregate = aggregate(build_records(day, **counts))  # type: ignore[arg-type]
        return DailyAggregate(day, agg)

    return build


@pytest.fixture
def records_of_day() -> Callable[..., list[TelemetryRecord]]:
    """Build the records of a synthetic day from counts."""
    return build_records


@pytest.fixture
async def mclient(make_client: Callable[..., Any]) -> Any:
    """A client on an app without the background scheduler, so that only the test computes."""
    return await make_client(monitor_scheduler=False)
