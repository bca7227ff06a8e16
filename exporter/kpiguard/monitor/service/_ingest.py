"""Storing telemetry events all-or-nothing, with replays flagged, and counting them once committed.

A request's events go into one transaction with multi-row INSERTs. An event whose ``event_id`` already has
a traffic row, or appeared earlier in the same request, is stored with ``duplicate = true``: it raises the
duplicate rate and never the traffic. Two requests racing with the same new ``event_id`` both try a traffic
row; the partial unique index refuses the second, whose transaction is retried once and then sees the first.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter as Tally
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpiguard.db._types import utcnow
from kpiguard.errors import StorageError, ValidationFailed
from kpiguard.metrics import Metrics
from kpiguard.monitor._aggregate import UNKNOWN
from kpiguard.monitor._schema import TelemetryEvent, fallback_reason, is_success
from kpiguard.monitor.service import _store as store

# Label values of the telemetry series past the (model, backend) cap.
OVERFLOW_LABEL = "other"


@dataclasses.dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest request stored."""

    stored: int
    new: int
    duplicates: int
    rows: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """As the API answers it."""
        return {"stored": self.stored, "new": self.new, "duplicates": self.duplicates}


def event_row(event: TelemetryEvent, *, duplicate: bool, received_at: datetime, field: str) -> dict[str, Any]:
    """The telemetry_event row of a validated event; ``field`` names it in errors (``events[3]``)."""
    data = event.event_data
    # python mode: JSON mode would turn an Infinity among the free-form keys into null without a word
    payload = data.model_dump(exclude_unset=True)
    prefix = f"{field}." if field else ""
    try:
        json.dumps(payload, allow_nan=False)
    except ValueError:
        raise ValidationFailed(f"{prefix}event_data: NaN and Infinity are not JSON",
                               field=f"{prefix}event_data") from None
    reason = fallback_reason(data)
    if reason is not None and "\x00" in reason:
        # PostgreSQL text cannot hold NUL; refuse it on both stores alike
        where = f"{prefix}event_data.telemetry.request_chain[0].fallback_reason"
        raise ValidationFailed(f"{where}: must not contain NUL characters", field=where)
    return {
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        "received_at": received_at,
        "event_type": event.event_type,
        "model": data.model,
        "backend": data.backend,
        "agent": data.agent,
        "duration_ms": data.duration_ms,
        "success": is_success(data),
        "fallback_reason": reason,
        "duplicate": duplicate,
        "event_data": payload,
    }


async def store_events(
    sessions: async_sessionmaker[AsyncSession], events: Sequence[TelemetryEvent], fields: Sequence[str]
) -> IngestResult:
    """Store the events in one transaction, flagging replays; ``fields`` names each event in errors."""
    received_at = utcnow()
    # Every row is built (and checked) before the transaction opens; only the duplicate flags wait for it.
    built = [
        event_row(event, duplicate=False, received_at=received_at, field=field)
        for event, field in zip(events, fields, strict=True)
    ]
    for attempt in (1, 2):
        try:
            async with sessions() as session, session.begin():
                await store.lock_for_write(session)
                seen = await store.known_event_ids(session, (r["event_id"] for r in built))
                rows = []
                for row in built:
                    rows.append({**row, "duplicate": row["event_id"] in seen})
                    seen.add(row["event_id"])
                await store.insert_events(session, rows)
        except IntegrityError as exc:
            if attempt == 2:
                raise StorageError("the events conflicted with a concurrent request twice") from exc
            continue
        except (OperationalError, DBAPIError, OSError) as exc:
            raise StorageError(f"the database did not store the events: {type(exc).__name__}") from exc
        duplicates = sum(r["duplicate"] for r in rows)
        return IngestResult(len(rows), len(rows) - duplicates, duplicates, tuple(rows))
    raise AssertionError("unreachable")


def count_committed(metrics: Metrics, rows: Sequence[dict[str, Any]]) -> None:
    """Export committed rows: traffic by outcome, model and backend, fallbacks, latencies; replays apart."""
    events: Tally[tuple[str, str, str]] = Tally()
    fallbacks: Tally[tuple[str, str]] = Tally()
    durations: list[tuple[str, float]] = []
    duplicates = 0
    for row in rows:
        if row["duplicate"]:
            duplicates += 1
            continue
        pair = (row["model"] or UNKNOWN, row["backend"] or UNKNOWN)
        outcome = "success" if row["success"] else "failure"
        events[(outcome, *pair)] += 1
        if row["fallback_reason"] is not None:
            fallbacks[pair] += 1
        if row["duration_ms"] is not None:
            durations.append((pair[1], row["duration_ms"] / 1000.0))
    labels: dict[tuple[str, str], tuple[str, str]] = {}
    pair_counts: Tally[tuple[str, str]] = Tally()
    for (_, model, backend), n in events.items():
        pair_counts[(model, backend)] += n
    for pair, n in pair_counts.items():
        admitted = metrics.telemetry_labels.admit(*pair, n)
        labels[pair] = pair if admitted else (OVERFLOW_LABEL, OVERFLOW_LABEL)
    for (outcome, model, backend), n in events.items():
        metrics.telemetry_events.labels(outcome, *labels[(model, backend)]).inc(n)
    for pair, n in fallbacks.items():
        metrics.telemetry_fallbacks.labels(*labels[pair]).inc(n)
    admitted_backends = {pair[1]: label[1] for pair, label in labels.items() if label[1] != OVERFLOW_LABEL}
    for backend, seconds in durations:
        metrics.telemetry_duration.labels(admitted_backends.get(backend, OVERFLOW_LABEL)).observe(seconds)
    if duplicates:
        metrics.ingest_duplicates.labels("telemetry_event").inc(duplicates)
