"""KPI events and ingest idempotency keys.

Revision ID: 0001_kpi_event
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from kpiguard.db._types import BigIntPK, UTCDateTime

revision = "0001_kpi_event"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create kpi_event and ingest_request."""
    op.create_table(
        "kpi_event",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("domain", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("detail", sa.JSON, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("event_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_kpi_event"),
        sa.UniqueConstraint("event_id", name="uq_kpi_event_event_id"),
    )
    op.create_index("ix_kpi_event_domain_metric_created_at", "kpi_event", ["domain", "metric", "created_at", "id"])
    op.create_table(
        "ingest_request",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_ingest_request"),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("ingest_request")
    op.drop_index("ix_kpi_event_domain_metric_created_at", table_name="kpi_event")
    op.drop_table("kpi_event")
