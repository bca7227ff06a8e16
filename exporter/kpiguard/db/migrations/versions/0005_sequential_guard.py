"""The sequential guard's state: the CUSUM statistic, its frozen reference and the last event folded in.

Revision ID: 0005_sequential_guard
Revises: 0004_monitor
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_sequential_guard"
down_revision = "0004_monitor"
branch_labels = None
depends_on = None

_COLUMNS = ("cusum_statistic", "cusum_reference", "cusum_level", "cusum_scale")


def upgrade() -> None:
    """Add the CUSUM columns to regression_state (all empty: every CUSUM starts fresh)."""
    with op.batch_alter_table("regression_state") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Float))
        batch.add_column(sa.Column("cusum_last_event_id", sa.BigInteger))


def downgrade() -> None:
    """Drop the CUSUM columns."""
    with op.batch_alter_table("regression_state") as batch:
        for name in ("cusum_last_event_id", *reversed(_COLUMNS)):
            batch.drop_column(name)
