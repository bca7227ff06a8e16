"""Alertmanager deliveries already handled (webhook idempotency).

Revision ID: 0003_alert_delivery
Revises: 0002_tripwire
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from kpiguard.db._types import BigIntPK, UTCDateTime

revision = "0003_alert_delivery"
down_revision = "0002_tripwire"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create alert_delivery."""
    op.create_table(
        "alert_delivery",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("starts_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("alertname", sa.String(200)),
        sa.Column("action", sa.String(32)),
        sa.Column("domain", sa.String(64)),
        sa.Column("metric", sa.String(64)),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("generator_url", sa.String(2048)),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_delivery"),
        sa.UniqueConstraint("fingerprint", "starts_at", "status", name="uq_alert_delivery_fingerprint_starts_at_status"),
    )


def downgrade() -> None:
    """Drop alert_delivery."""
    op.drop_table("alert_delivery")
