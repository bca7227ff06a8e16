"""The tables, as SQLAlchemy 2 declarative models; Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, Float, Index, Integer, MetaData, String, UniqueConstraint
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
    event_id: Mapped[str | None] = mapped_column(String(ACTOR_LEN), unique=True)

    # The window queries read the newest N events of one (domain, metric): this index serves them
    # in order without touching the rest of the table, whatever its size.
    __table_args__ = (Index("ix_kpi_event_domain_metric_created_at", "domain", "metric", "created_at", "id"),)


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
