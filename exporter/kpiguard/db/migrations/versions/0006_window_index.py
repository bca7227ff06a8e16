"""A covering index for the tripwire's windows: (domain, metric, created_at, id, success, value).

The window reads take a pair's newest events in (created_at, id) order and need only their id,
success and value. With those in the index the read is index-only: on SQLite always, on PostgreSQL
for the heap pages the visibility map marks all-visible (VACUUM or autovacuum has passed since
they were written; newer rows are still fetched from the table). It replaces the
(domain, metric, created_at, id) index, whose every use it serves in the same order.

On PostgreSQL the extra columns are key columns rather than INCLUDE: the same index then serves
both stores, and B-tree suffix truncation keeps them out of the inner pages all the same.

Building it rewrites the index of the largest table under a lock that holds writes back; on a
large PostgreSQL table create it first with ``CREATE INDEX CONCURRENTLY ix_kpi_event_window ...``
(this migration then only drops the old one).

Revision ID: 0006_window_index
Revises: 0005_sequential_guard
Create Date: 2026-11-23
"""

from alembic import op
from sqlalchemy import inspect

revision = "0006_window_index"
down_revision = "0005_sequential_guard"
branch_labels = None
depends_on = None

_OLD = "ix_kpi_event_domain_metric_created_at"
_NEW = "ix_kpi_event_window"


def upgrade() -> None:
    """Create the covering window index (unless built beforehand), then drop the one it replaces."""
    if _NEW not in {ix["name"] for ix in inspect(op.get_bind()).get_indexes("kpi_event")}:
        op.create_index(_NEW, "kpi_event", ["domain", "metric", "created_at", "id", "success", "value"])
    op.drop_index(_OLD, table_name="kpi_event")


def downgrade() -> None:
    """Restore the (domain, metric, created_at, id) index."""
    op.create_index(_OLD, "kpi_event", ["domain", "metric", "created_at", "id"])
    op.drop_index(_NEW, table_name="kpi_event")
