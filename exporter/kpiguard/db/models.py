"""The tables, as SQLAlchemy 2 declarative models; Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, MetaData, String
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
