"""The monitor's tables: telemetry rows in and out, bucket upserts, baselines and alert rows.

Every function takes an open session and runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from kpiguard.db._types import utcnow
from kpiguard.db.models import MonitoringAlert, MonitoringBaseline, MonitoringMetrics, TelemetryEvent
from kpiguard.monitor._aggregate import Aggregate
from kpiguard.monitor._alerts import (
    ACTIVE_STATUSES,
    AUTO_RESOLVER,
    ActiveAlert,
    AlertChange,
    AlertStatus,
    AlertType,
    ChangeKind,
    Severity,
)
from kpiguard.monitor._baseline import Baseline, DailyAggregate
from kpiguard.monitor._schema import TelemetryRecord

_IN_CHUNK = 1000


class Granularity(enum.StrEnum):
    """The size of a bucket."""

    HOUR = "hour"
    DAY = "day"

    @property
    def span(self) -> timedelta:
        """How long one bucket lasts."""
        return timedelta(hours=1) if self is Granularity.HOUR else timedelta(days=1)

    def floor(self, moment: datetime) -> datetime:
        """The start of the bucket holding ``moment`` (UTC)."""
        moment = moment.astimezone(UTC)
        if self is Granularity.HOUR:
            return moment.replace(minute=0, second=0, microsecond=0)
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _dialect_insert(session: AsyncSession, model: Any) -> Any:
    """An INSERT that knows ON CONFLICT, for the session's store."""
    name = session.get_bind().dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(model)


async def lock_for_write(session: AsyncSession) -> None:
    """On SQLite take the write lock first (BEGIN IMMEDIATE), so that what the transaction reads stays true until
    it commits; must be the session's first statement. PostgreSQL relies on row locks and unique indexes."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(text("BEGIN IMMEDIATE"))


# --- telemetry events ---

async def known_event_ids(session: AsyncSession, event_ids: Iterable[str]) -> set[str]:
    """The event_ids among ``event_ids`` that already have a traffic (non-duplicate) row."""
    wanted = sorted(set(event_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        stmt = select(TelemetryEvent.event_id).where(
            TelemetryEvent.event_id.in_(chunk), TelemetryEvent.duplicate.is_(False)
        )
        found.update((await session.execute(stmt)).scalars())
    return found


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert telemetry rows as multi-row INSERT statements, never one statement per event."""
    if rows:
        # RETURNING makes SQLAlchemy use "insertmanyvalues": the rows go out as a few multi-row INSERTs
        # (at most 1000 rows and 32,700 parameters each), expanded as text instead of compiled per row.
        await session.execute(insert(TelemetryEvent).returning(TelemetryEvent.id), list(rows))


async def load_records(session: AsyncSession, start: datetime, end: datetime) -> list[TelemetryRecord]:
    """Every stored event (traffic and duplicates) with start <= occurred_at < end, as records."""
    t = TelemetryEvent
    stmt = select(
        t.event_id, t.occurred_at, t.event_type, t.model, t.backend, t.agent, t.duration_ms, t.success,
        t.fallback_reason, t.duplicate,
    ).where(t.occurred_at >= start, t.occurred_at < end)
    return [TelemetryRecord(*row) for row in (await session.execute(stmt)).all()]


async def first_event_at(session: AsyncSession, start: datetime, end: datetime) -> datetime | None:
    """The earliest occurred_at in [start, end), or None when the range is empty."""
    stmt = select(func.min(TelemetryEvent.occurred_at)).where(
        TelemetryEvent.occurred_at >= start, TelemetryEvent.occurred_at < end
    )
    value = (await session.execute(stmt)).scalar_one_or_none()
    # min() loses the column type on SQLite: bring back an aware datetime either way
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


async def has_events(session: AsyncSession, start: datetime, end: datetime) -> bool:
    """Whether any event occurred in [start, end)."""
    cond = and_(TelemetryEvent.occurred_at >= start, TelemetryEvent.occurred_at < end)
    return bool((await session.execute(select(exists().where(cond)))).scalar())


async def count_events(session: AsyncSession, start: datetime, end: datetime) -> int:
    """How many events (traffic and duplicates) occurred in [start, end)."""
    stmt = select(func.count()).select_from(TelemetryEvent).where(
        TelemetryEvent.occurred_at >= start, TelemetryEvent.occurred_at < end
    )
    return int((await session.execute(stmt)).scalar_one())


# --- bucket aggregates ---

_AGGREGATE_FIELDS = tuple(f.name for f in dataclasses.fields(Aggregate))


def _metrics_values(agg: Aggregate) -> dict[str, Any]:
    values = {name: getattr(agg, name) for name in _AGGREGATE_FIELDS}
    values["model_distribution"] = dict(agg.model_distribution)
    values["backend_distribution"] = dict(agg.backend_distribution)
    values["agent_distribution"] = dict(agg.agent_distribution)
    values["top_fallback_reasons"] = [[reason, count] for reason, count in agg.top_fallback_reasons]
    return values


async def upsert_metrics(
    session: AsyncSession, granularity: Granularity, bucket_start: datetime, scope: str, agg: Aggregate
) -> None:
    """Store the bucket's aggregate, replacing the row a previous computation left (one row per bucket)."""
    values = {"granularity": granularity.value, "bucket_start": bucket_start, "scope": scope,
              **_metrics_values(agg), "computed_at": utcnow()}
    stmt = _dialect_insert(session, MonitoringMetrics).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["granularity", "bucket_start", "scope"],
        set_={k: stmt.excluded[k] for k in values if k not in ("granularity", "bucket_start", "scope")},
    )
    await session.execute(stmt)


def aggregate_from_row(row: MonitoringMetrics) -> Aggregate:
    """Rebuild the Aggregate a metrics row holds."""
    values = {name: getattr(row, name) for name in _AGGREGATE_FIELDS}
    values["top_fallback_reasons"] = tuple((str(r), int(c)) for r, c in row.top_fallback_reasons)
    return Aggregate(**values)


def _metrics_query(granularity: Granularity, scope: str, start: datetime, end: datetime) -> Select[Any]:
    m = MonitoringMetrics
    return (
        select(m)
        .where(m.granularity == granularity.value, m.scope == scope, m.bucket_start >= start, m.bucket_start < end)
        .order_by(m.bucket_start)
    )


async def metrics_rows(
    session: AsyncSession, granularity: Granularity, scope: str, start: datetime, end: datetime
) -> list[MonitoringMetrics]:
    """The stored buckets with start <= bucket_start < end, oldest first."""
    return list((await session.execute(_metrics_query(granularity, scope, start, end))).scalars())


async def daily_aggregates(session: AsyncSession, scope: str, first: date, last: date) -> list[DailyAggregate]:
    """The stored daily aggregates of the days first..last (inclusive)."""
    rows = await metrics_rows(session, Granularity.DAY, scope, day_start(first), day_start(last + timedelta(days=1)))
    return [DailyAggregate(row.bucket_start.date(), aggregate_from_row(row)) for row in rows]


async def newest_bucket(
    session: AsyncSession, granularity: Granularity, scope: str, since: datetime
) -> tuple[datetime, int] | None:
    """(bucket_start, events it counted: traffic and duplicates) of the newest stored bucket since ``since``."""
    m = MonitoringMetrics
    stmt = (
        select(m.bucket_start, m.total_events + m.duplicate_events)
        .where(m.granularity == granularity.value, m.scope == scope, m.bucket_start >= since)
        .order_by(m.bucket_start.desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], int(row[1])) if row is not None else None


def metrics_json(row: MonitoringMetrics) -> dict[str, Any]:
    """A metrics row as the API returns it."""
    out: dict[str, Any] = {"granularity": row.granularity, "scope": row.scope, "bucket_start": row.bucket_start}
    if row.granularity == Granularity.DAY:
        out["date"] = row.bucket_start.date()
    out.update({name: getattr(row, name) for name in _AGGREGATE_FIELDS})
    out["computed_at"] = row.computed_at
    return out


# --- baselines ---

async def upsert_baseline(session: AsyncSession, baseline: Baseline, scope: str) -> None:
    """Store a baseline, replacing the one of the same (name, scope, end_day)."""
    values = {
        "name": baseline.name, "scope": scope, "window_days": baseline.window_days, "start_day": baseline.start,
        "end_day": baseline.end, "days_used": baseline.days_used, "total_events": baseline.total_events,
        "duplicate_events": baseline.duplicate_events, "fallback_rate": baseline.fallback_rate,
        "error_rate": baseline.error_rate, "duplicate_rate": baseline.duplicate_rate,
        "success_rate": baseline.success_rate, "latency_p95": baseline.latency_p95,
        "latency_avg": baseline.latency_avg, "health_score": baseline.health_score, "computed_at": utcnow(),
    }
    stmt = _dialect_insert(session, MonitoringBaseline).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name", "scope", "end_day"],
        set_={k: stmt.excluded[k] for k in values if k not in ("name", "scope", "end_day")},
    )
    await session.execute(stmt)


def baseline_from_row(row: MonitoringBaseline) -> Baseline:
    """The plain Baseline a row holds."""
    return Baseline(
        name=row.name, window_days=row.window_days, start=row.start_day, end=row.end_day, days_used=row.days_used,
        total_events=row.total_events, duplicate_events=row.duplicate_events, fallback_rate=row.fallback_rate,
        error_rate=row.error_rate, duplicate_rate=row.duplicate_rate, success_rate=row.success_rate,
        latency_p95=row.latency_p95, latency_avg=row.latency_avg, health_score=row.health_score,
    )


async def find_baseline(
    session: AsyncSession, name: str, scope: str, *, before: date | None = None
) -> MonitoringBaseline | None:
    """The newest stored baseline of ``name``; with ``before``, the newest whose days all precede it."""
    b = MonitoringBaseline
    stmt = select(b).where(b.name == name, b.scope == scope)
    if before is not None:
        stmt = stmt.where(b.end_day < before)
    stmt = stmt.order_by(b.end_day.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


def baseline_json(row: MonitoringBaseline) -> dict[str, Any]:
    """A baseline row as the API returns it."""
    return {
        "name": row.name, "scope": row.scope, "window_days": row.window_days, "start_date": row.start_day,
        "end_date": row.end_day, "for_date": row.end_day + timedelta(days=1), "days_used": row.days_used,
        "total_events": row.total_events, "duplicate_events": row.duplicate_events,
        "fallback_rate": row.fallback_rate, "error_rate": row.error_rate, "duplicate_rate": row.duplicate_rate,
        "success_rate": row.success_rate, "latency_p95": row.latency_p95, "latency_avg": row.latency_avg,
        "health_score": row.health_score, "computed_at": row.computed_at,
    }


# --- alerts ---

async def active_alert_rows(session: AsyncSession, scope: str) -> list[MonitoringAlert]:
    """The open and acknowledged alerts of ``scope``, locked on PostgreSQL until the transaction ends."""
    a = MonitoringAlert
    stmt = select(a).where(a.scope == scope, a.status.in_([s.value for s in ACTIVE_STATUSES])).order_by(a.id)
    return list((await session.execute(stmt.with_for_update())).scalars())


def active_alert(row: MonitoringAlert) -> ActiveAlert:
    """The reconcile view of an alert row."""
    return ActiveAlert(row.id, AlertType(row.alert_type), row.scope, Severity(row.severity), AlertStatus(row.status))


@dataclasses.dataclass(frozen=True, slots=True)
class AppliedChange:
    """One alert row written by a check, for the compute answer."""

    change: str  # created | updated | resolved
    alert: dict[str, Any]
    previous_severity: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        out = {"change": self.change, **self.alert}
        if self.previous_severity is not None:
            out["previous_severity"] = self.previous_severity
        return out


async def apply_changes(
    session: AsyncSession,
    changes: Sequence[AlertChange],
    rows: Sequence[MonitoringAlert],
    *,
    granularity: Granularity,
    bucket_start: datetime,
    baseline_name: str | None,
) -> list[AppliedChange]:
    """Write reconcile's creates, updates and resolutions; an older bucket never overwrites a newer check."""
    by_id = {row.id: row for row in rows}
    applied: list[AppliedChange] = []
    now = utcnow()
    for change in changes:
        f = change.finding
        severity = f.severity.value if f.severity is not None else None
        if change.kind is ChangeKind.CREATE:
            assert severity is not None
            row = MonitoringAlert(
                alert_type=f.type.value, scope=f.scope, severity=severity, status=AlertStatus.OPEN.value,
                current_value=f.current_value, baseline_value=f.baseline_value, ratio=f.ratio, message=f.message,
                baseline_name=baseline_name, granularity=granularity.value, bucket_start=bucket_start,
                created_at=now, updated_at=now,
            )
            session.add(row)
            await session.flush()
            applied.append(AppliedChange("created", alert_json(row)))
            continue
        row = by_id[change.alert_id]  # type: ignore[index]
        if row.bucket_start > bucket_start:
            continue  # the alert already reflects a newer bucket: a re-check of an older one leaves it
        if change.kind is ChangeKind.UPDATE:
            assert severity is not None
            before = (row.severity, row.current_value, row.baseline_value, row.bucket_start)
            if before == (severity, f.current_value, f.baseline_value, bucket_start):
                continue
            previous = row.severity
            row.severity, row.current_value, row.baseline_value, row.ratio = (
                severity, f.current_value, f.baseline_value, f.ratio)
            row.message, row.baseline_name, row.granularity, row.bucket_start = (
                f.message, baseline_name, granularity.value, bucket_start)
            row.updated_at = now
            applied.append(AppliedChange("updated", alert_json(row), previous))
        else:
            row.status = AlertStatus.RESOLVED.value
            row.resolved_at = row.updated_at = now
            row.resolved_by = AUTO_RESOLVER
            row.resolve_note = f"back under LOW: {f.message}"
            row.current_value, row.ratio, row.bucket_start = f.current_value, f.ratio, bucket_start
            applied.append(AppliedChange("resolved", alert_json(row)))
    await session.flush()
    return applied


_ALERT_FIELDS = (
    "id", "alert_type", "scope", "severity", "status", "current_value", "baseline_value", "ratio", "message",
    "baseline_name", "granularity", "bucket_start", "created_at", "updated_at", "acknowledged_at",
    "acknowledged_by", "acknowledge_note", "resolved_at", "resolved_by", "resolve_note",
)


def alert_json(row: MonitoringAlert) -> dict[str, Any]:
    """An alert row as the API returns it."""
    return {name: getattr(row, name) for name in _ALERT_FIELDS}


async def list_alerts(
    session: AsyncSession,
    *,
    severities: Sequence[Severity],
    statuses: Sequence[AlertStatus],
    types: Sequence[AlertType] | None = None,
    limit: int = 100,
) -> list[MonitoringAlert]:
    """Alerts of the given severities and statuses, newest first."""
    a = MonitoringAlert
    stmt = select(a).where(a.severity.in_([s.value for s in severities]), a.status.in_([s.value for s in statuses]))
    if types:
        stmt = stmt.where(a.alert_type.in_([t.value for t in types]))
    stmt = stmt.order_by(a.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def get_alert(session: AsyncSession, alert_id: int, *, lock: bool = False) -> MonitoringAlert | None:
    """One alert by id, locked on PostgreSQL when ``lock``."""
    stmt = select(MonitoringAlert).where(MonitoringAlert.id == alert_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def alert_counts(session: AsyncSession) -> dict[tuple[str, str, str], int]:
    """Open and acknowledged alerts counted by (type, severity, status)."""
    a = MonitoringAlert
    stmt = (
        select(a.alert_type, a.severity, a.status, func.count())
        .where(a.status.in_([s.value for s in ACTIVE_STATUSES]))
        .group_by(a.alert_type, a.severity, a.status)
    )
    return {(t, s, st): int(n) for t, s, st, n in (await session.execute(stmt)).all()}
