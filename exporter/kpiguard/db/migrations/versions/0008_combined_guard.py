"""The combined guard's backstop: the log-likelihood ratio summed since the CUSUM's reference was taken.

The backstop re-takes its reference only when that sum has fallen to minus its boundary, so the sum is
state (Page's CUSUM of ``guard: sequential`` re-takes it whenever the statistic is back at 0, where the
sum equals the statistic: its existing rows keep null here and read it from the statistic).

Revision ID: 0008_combined_guard
Revises: 0007_event_id_partial
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_combined_guard"
down_revision = "0007_event_id_partial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add regression_state.cusum_total (empty: a stored sequential CUSUM reads it from its statistic)."""
    with op.batch_alter_table("regression_state") as batch:
        batch.add_column(sa.Column("cusum_total", sa.Float))


def downgrade() -> None:
    """Drop regression_state.cusum_total."""
    with op.batch_alter_table("regression_state") as batch:
        batch.drop_column("cusum_total")
