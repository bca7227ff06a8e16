"""The seed policies take the new default guard, combined, unless someone set their guard.

``guard: combined`` (the evidence guard's window test, or a CUSUM backstop) is the default for new
policies: DETECTION.md shows it meets every detection target the evidence guard meets, and catches
the real drops of 1.5x the threshold the evidence guard misses a fifth to a quarter of the time. The
seed policies were inserted by 0002 with the then default, evidence. This moves those that still
hold exactly what 0002 wrote (changed_by 'migration', guard evidence with its default parameters),
and records each change in the audit trail; a policy anyone has upserted keeps its guard.

Revision ID: 0009_default_combined_guard
Revises: 0008_combined_guard
Create Date: 2026-11-23
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from kpiguard.db._types import UTCDateTime

revision = "0009_default_combined_guard"
down_revision = "0008_combined_guard"
branch_labels = None
depends_on = None

_POLICY = sa.table(
    "regression_policy",
    sa.column("id", sa.Integer), sa.column("domain", sa.String), sa.column("metric", sa.String),
    sa.column("guard", sa.String), sa.column("guard_confidence", sa.Float), sa.column("guard_alpha", sa.Float),
    sa.column("changed_by", sa.String), sa.column("reason", sa.String), sa.column("updated_at", UTCDateTime),
)
_AUDIT = sa.table(
    "audit_event",
    sa.column("created_at", UTCDateTime), sa.column("kind", sa.String), sa.column("action", sa.String),
    sa.column("source", sa.String), sa.column("actor", sa.String), sa.column("reason", sa.String),
    sa.column("domain", sa.String), sa.column("metric", sa.String), sa.column("before", sa.JSON),
    sa.column("after", sa.JSON),
)
_REASON = {"combined": "default guard: combined (migration 0009)", "evidence": "default guard: evidence (0009 undone)"}


def _move(old: str, new: str) -> None:
    """Set guard ``new`` on the seed policies the migrations alone have written with ``old``, audited."""
    bind = op.get_bind()
    untouched = sa.and_(
        _POLICY.c.changed_by == "migration", _POLICY.c.guard == old,
        _POLICY.c.guard_confidence == 0.95, _POLICY.c.guard_alpha == 3e-6,
    )
    rows = bind.execute(sa.select(_POLICY.c.id, _POLICY.c.domain, _POLICY.c.metric).where(untouched)).all()
    if not rows:
        return
    now = datetime.now(UTC)
    bind.execute(
        _POLICY.update().where(_POLICY.c.id.in_([r.id for r in rows]))
        .values(guard=new, reason=_REASON[new], updated_at=now)
    )
    op.bulk_insert(_AUDIT, [
        {"created_at": now, "kind": "policy_change", "action": "UPDATE", "source": "migration", "actor": "migration",
         "reason": _REASON[new], "domain": r.domain, "metric": r.metric, "before": {"guard": old},
         "after": {"guard": new}}
        for r in rows
    ])


def upgrade() -> None:
    """Seed policies still as 0002 wrote them: evidence -> combined."""
    _move("evidence", "combined")


def downgrade() -> None:
    """Seed policies the migrations alone set to combined: back to evidence (0008 and before know no default)."""
    _move("combined", "evidence")
