"""The tables, as SQLAlchemy 2 declarative models; Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kpiguard.db._types import BigIntPK, UTCDateTime, utcnow

NAME_LEN = 64
ACTOR_LEN = 128

# Stable constraint names, so that migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with kpiguard's naming convention."""

    metadata = MetaData(naming_convention=NAMING)


class KpiEvent(Base):
    """One business KPI observation: a success flag and an optional value for (domain, metric)."""

    __tablename__ = "kpi_event"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(NAME_LEN))
    metric: Mapped[str] = mapped_column(String(NAME_LEN))
    success: Mapped[bool] = mapped_column(Boolean)
    value: Mapped[float | None] = mapped_column(Float)
    actor: Mapped[str | None] = mapped_column(String(ACTOR_LEN))
    correlation_id: Mapped[str | None] = mapped_column(String(ACTOR_LEN))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A client-chosen id that makes a retried event count once (unique where given).
    event_id: Mapped[str | None] = mapped_column(String(ACTOR_LEN))

    __table_args__ = (
        # The window queries read the newest N events of one (domain, metric): this index serves them
        # in order without touching the rest of the table, whatever its size, and holds the columns
        # they read (success, value) so that they need not visit the table (migration 0006).
        Index("ix_kpi_event_window", "domain", "metric", "created_at", "id", "success", "value"),
        # Partial: most events have no event_id, and indexing their NULLs cost every insert (migration 0007).
        Index(
            "uq_kpi_event_event_id", "event_id", unique=True,
            sqlite_where=text("event_id IS NOT NULL"), postgresql_where=text("event_id IS NOT NULL"),
        ),
    )


class IngestRequest(Base):
    """An Idempotency-Key already accepted, with what it stored, so that a retry counts once."""

    __tablename__ = "ingest_request"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    events: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RegressionPolicy(Base):
    """Thresholds of the tripwire for one (domain, metric)."""

    __tablename__ = "regression_policy"
    __table_args__ = (UniqueConstraint("domain", "metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(NAME_LEN))
    metric: Mapped[str] = mapped_column(String(NAME_LEN))
    window_events: Mapped[int] = mapped_column(Integer)
    baseline_events: Mapped[int] = mapped_column(Integer)
    min_events_to_enforce: Mapped[int] = mapped_column(Integer)
    max_drop_fraction: Mapped[float] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(16))
    aggregation: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    guard: Mapped[str] = mapped_column(String(16))
    guard_confidence: Mapped[float] = mapped_column(Float)
    guard_alpha: Mapped[float] = mapped_column(Float)
    changed_by: Mapped[str | None] = mapped_column(String(ACTOR_LEN))
    reason: Mapped[str | None] = mapped_column(String(1024))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RegressionState(Base):
    """The tripwire's last verdict for one (domain, metric)."""

    __tablename__ = "regression_state"
    __table_args__ = (UniqueConstraint("domain", "metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(NAME_LEN))
    metric: Mapped[str] = mapped_column(String(NAME_LEN))
    triggered: Mapped[bool] = mapped_column(Boolean, default=False)
    baseline: Mapped[float | None] = mapped_column(Float)
    current: Mapped[float | None] = mapped_column(Float)
    drop_fraction: Mapped[float | None] = mapped_column(Float)
    recent_events: Mapped[int] = mapped_column(Integer, default=0)
    baseline_events: Mapped[int] = mapped_column(Integer, default=0)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(String(1024))
    # After a re-enable, only events with a larger id count towards re-arming the tripwire.
    rearm_after_id: Mapped[int | None] = mapped_column(BigInteger)
    # guard: sequential and combined: the CUSUM statistic, the frozen reference (value, zero-drift level, a
    # mean's sd), the log-likelihood ratio summed since the reference was taken and the id of the newest
    # event folded in; all null for a fresh CUSUM.
    cusum_statistic: Mapped[float | None] = mapped_column(Float)
    cusum_reference: Mapped[float | None] = mapped_column(Float)
    cusum_level: Mapped[float | None] = mapped_column(Float)
    cusum_scale: Mapped[float | None] = mapped_column(Float)
    cusum_total: Mapped[float | None] = mapped_column(Float)
    cusum_last_event_id: Mapped[int | None] = mapped_column(BigInteger)


class RiskPolicy(Base):
    """Whether an engine may take work, and its limits."""

    __tablename__ = "risk_policy"

    engine: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str | None] = mapped_column(String(1024))
    max_single_amount: Mapped[float | None] = mapped_column(Float)
    daily_limit: Mapped[float | None] = mapped_column(Float)
    changed_by: Mapped[str | None] = mapped_column(String(ACTOR_LEN))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RiskExposure(Base):
    """Amount reserved by an engine on one UTC day; updated atomically against the daily limit."""

    __tablename__ = "risk_exposure"

    engine: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    reserved: Mapped[float] = mapped_column(Float, default=0.0)


class RiskLedger(Base):
    """Every risk check and its answer."""

    __tablename__ = "risk_ledger"
    __table_args__ = (Index("ix_risk_ledger_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    engine: Mapped[str] = mapped_column(String(NAME_LEN))
    amount: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(ACTOR_LEN))
    correlation_id: Mapped[str | None] = mapped_column(String(ACTOR_LEN))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GoLiveState(Base):
    """The global go-live state: one row, id 1."""

    __tablename__ = "go_live_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kill_switch_engaged: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(String(1024))
    changed_by: Mapped[str | None] = mapped_column(String(ACTOR_LEN))
    source: Mapped[str | None] = mapped_column(String(16))
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """One entry of the audit trail: a policy change or an enforcement action, with before and after."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_created_at", "created_at"), Index("ix_audit_event_kind", "kind"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    action: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(ACTOR_LEN))
    reason: Mapped[str | None] = mapped_column(String(1024))
    domain: Mapped[str | None] = mapped_column(String(NAME_LEN))
    metric: Mapped[str | None] = mapped_column(String(NAME_LEN))
    engine: Mapped[str | None] = mapped_column(String(NAME_LEN))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AlertDelivery(Base):
    """An Alertmanager alert already handled, keyed so a re-sent notification does nothing twice."""

    __tablename__ = "alert_delivery"
    __table_args__ = (UniqueConstraint("fingerprint", "starts_at", "status"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    alertname: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str | None] = mapped_column(String(32))
    domain: Mapped[str | None] = mapped_column(String(NAME_LEN))
    metric: Mapped[str | None] = mapped_column(String(NAME_LEN))
    result: Mapped[str] = mapped_column(String(32))
    generator_url: Mapped[str | None] = mapped_column(String(2048))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
# --- monitor (drift and regression monitor: telemetry, aggregates, baselines, alerts) ---

TELEMETRY_NAME_LEN = 128  # monitor._schema.MAX_NAME_LENGTH: model names like "claude-sonnet-4-20250514"
SCOPE_LEN = 160
NOTE_LEN = 1000


class TelemetryEvent(Base):
    """One telemetry event; a replayed event_id is stored again with duplicate=true and never counted as traffic."""

    __tablename__ = "telemetry_event"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event_type: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(TELEMETRY_NAME_LEN))
    backend: Mapped[str | None] = mapped_column(String(TELEMETRY_NAME_LEN))
    agent: Mapped[str | None] = mapped_column(String(TELEMETRY_NAME_LEN))
    duration_ms: Mapped[float | None] = mapped_column(Float)
    success: Mapped[bool] = mapped_column(Boolean)
    fallback_reason: Mapped[str | None] = mapped_column(String(512))
    duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    event_data: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        # One traffic row per event_id, enforced by the store even under concurrent ingest: a second
        # duplicate=false row for an event_id fails, and the ingest retries seeing the first.
        Index(
            "uq_telemetry_event_event_id_first", "event_id", unique=True,
            sqlite_where=text("duplicate = 0"), postgresql_where=text("NOT duplicate"),
        ),
        # Bucket computation reads [start, end) of occurred_at.
        Index("ix_telemetry_event_occurred_at", "occurred_at", "id"),
    )


class MonitoringMetrics(Base):
    """The aggregate of one bucket (hour or day) of one scope; recomputing replaces the row."""

    __tablename__ = "monitoring_metrics"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    granularity: Mapped[str] = mapped_column(String(8))  # "hour" | "day"
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime)
    scope: Mapped[str] = mapped_column(String(SCOPE_LEN), default="global")
    total_events: Mapped[int] = mapped_column(Integer)
    successful_events: Mapped[int] = mapped_column(Integer)
    failed_events: Mapped[int] = mapped_column(Integer)
    fallback_events: Mapped[int] = mapped_column(Integer)
    duplicate_events: Mapped[int] = mapped_column(Integer)
    fallback_rate: Mapped[float | None] = mapped_column(Float)
    error_rate: Mapped[float | None] = mapped_column(Float)
    duplicate_rate: Mapped[float | None] = mapped_column(Float)
    success_rate: Mapped[float | None] = mapped_column(Float)
    latency_count: Mapped[int] = mapped_column(Integer)
    latency_p50: Mapped[float | None] = mapped_column(Float)
    latency_p75: Mapped[float | None] = mapped_column(Float)
    latency_p90: Mapped[float | None] = mapped_column(Float)
    latency_p95: Mapped[float | None] = mapped_column(Float)
    latency_p99: Mapped[float | None] = mapped_column(Float)
    latency_avg: Mapped[float | None] = mapped_column(Float)
    latency_min: Mapped[float | None] = mapped_column(Float)
    latency_max: Mapped[float | None] = mapped_column(Float)
    model_distribution: Mapped[dict[str, int]] = mapped_column(JSON)
    backend_distribution: Mapped[dict[str, int]] = mapped_column(JSON)
    agent_distribution: Mapped[dict[str, int]] = mapped_column(JSON)
    top_fallback_reasons: Mapped[list[list[Any]]] = mapped_column(JSON)  # [[reason, count], ...]
    health_score: Mapped[float | None] = mapped_column(Float)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("granularity", "bucket_start", "scope"),
        CheckConstraint("granularity IN ('hour', 'day')", name="granularity"),
    )


class MonitoringBaseline(Base):
    """A named rolling baseline of the days start_day..end_day (inclusive), computed to check end_day + 1."""

    __tablename__ = "monitoring_baseline"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    scope: Mapped[str] = mapped_column(String(SCOPE_LEN), default="global")
    window_days: Mapped[int] = mapped_column(Integer)
    start_day: Mapped[date] = mapped_column(Date)
    end_day: Mapped[date] = mapped_column(Date)
    days_used: Mapped[int] = mapped_column(Integer)
    total_events: Mapped[int] = mapped_column(Integer)
    duplicate_events: Mapped[int] = mapped_column(Integer)
    fallback_rate: Mapped[float | None] = mapped_column(Float)
    error_rate: Mapped[float | None] = mapped_column(Float)
    duplicate_rate: Mapped[float | None] = mapped_column(Float)
    success_rate: Mapped[float | None] = mapped_column(Float)
    latency_p95: Mapped[float | None] = mapped_column(Float)
    latency_avg: Mapped[float | None] = mapped_column(Float)
    health_score: Mapped[float | None] = mapped_column(Float)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Recomputing the same baseline for the same day replaces it; the newest end_day is "current".
    __table_args__ = (UniqueConstraint("name", "scope", "end_day"),)


class MonitoringAlert(Base):
    """A drift alert; at most one open or acknowledged per (alert_type, scope), re-checks update it."""

    __tablename__ = "monitoring_alerts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    alert_type: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(SCOPE_LEN), default="global")
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    current_value: Mapped[float] = mapped_column(Float)
    baseline_value: Mapped[float | None] = mapped_column(Float)
    ratio: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(String(NOTE_LEN))
    baseline_name: Mapped[str | None] = mapped_column(String(NAME_LEN))
    granularity: Mapped[str] = mapped_column(String(8))
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime)  # the bucket last checked
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(ACTOR_LEN))
    acknowledge_note: Mapped[str | None] = mapped_column(String(NOTE_LEN))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(ACTOR_LEN))  # monitor.AUTO_RESOLVER when automatic
    resolve_note: Mapped[str | None] = mapped_column(String(NOTE_LEN))

    __table_args__ = (
        Index(
            "uq_monitoring_alerts_active", "alert_type", "scope", unique=True,
            sqlite_where=text("status IN ('open', 'acknowledged')"),
            postgresql_where=text("status IN ('open', 'acknowledged')"),
        ),
        Index("ix_monitoring_alerts_status_severity", "status", "severity", "id"),
        CheckConstraint(
            "alert_type IN ('fallback_spike', 'error_spike', 'latency_spike', 'duplicate_spike', 'health_decline')",
            name="alert_type",
        ),
        CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')", name="severity"),
        CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="status"),
    )
