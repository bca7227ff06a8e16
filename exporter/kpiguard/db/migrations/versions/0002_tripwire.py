"""The Regression Tripwire: policies, state, risk guard, go-live and the audit trail, with the seed's data.

Revision ID: 0002_tripwire
Revises: 0001_kpi_event
Create Date: 2026-11-23
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from kpiguard.db._types import BigIntPK, UTCDateTime

revision = "0002_tripwire"
down_revision = "0001_kpi_event"
branch_labels = None
depends_on = None

# The seed's table, all disabled (the safest start); frozen here as data, not imported from code.
SEED_POLICIES = [
    ("WHOLESALE", "contract_rate", 0.20, "THROTTLE", "success_rate"),
    ("WHOLESALE", "offer_accept_rate", 0.15, "THROTTLE", "success_rate"),
    ("BUYER_MATCH", "match_success", 0.25, "THROTTLE", "success_rate"),
    ("CAPITAL", "roi_event", 0.30, "KILL_SWITCH", "mean_value"),
]
SEED_ENGINES = ["WHOLESALE", "BUYER_MATCH", "CAPITAL"]


def upgrade() -> None:
    """Create the tripwire's tables and insert the seed policies, risk policies and go-live row."""
    policy = op.create_table(
        "regression_policy",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("domain", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("window_events", sa.Integer, nullable=False),
        sa.Column("baseline_events", sa.Integer, nullable=False),
        sa.Column("min_events_to_enforce", sa.Integer, nullable=False),
        sa.Column("max_drop_fraction", sa.Float, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("aggregation", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("guard", sa.String(16), nullable=False),
        sa.Column("guard_confidence", sa.Float, nullable=False),
        sa.Column("guard_alpha", sa.Float, nullable=False),
        sa.Column("changed_by", sa.String(128)),
        sa.Column("reason", sa.String(1024)),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_regression_policy"),
        sa.UniqueConstraint("domain", "metric", name="uq_regression_policy_domain_metric"),
    )
    state = op.create_table(
        "regression_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("domain", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("triggered", sa.Boolean, nullable=False),
        sa.Column("baseline", sa.Float),
        sa.Column("current", sa.Float),
        sa.Column("drop_fraction", sa.Float),
        sa.Column("recent_events", sa.Integer, nullable=False),
        sa.Column("baseline_events", sa.Integer, nullable=False),
        sa.Column("evidence", sa.JSON),
        sa.Column("last_checked_at", UTCDateTime),
        sa.Column("last_triggered_at", UTCDateTime),
        sa.Column("note", sa.String(1024)),
        sa.Column("rearm_after_id", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_regression_state"),
        sa.UniqueConstraint("domain", "metric", name="uq_regression_state_domain_metric"),
    )
    risk = op.create_table(
        "risk_policy",
        sa.Column("engine", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(1024)),
        sa.Column("max_single_amount", sa.Float),
        sa.Column("daily_limit", sa.Float),
        sa.Column("changed_by", sa.String(128)),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("engine", name="pk_risk_policy"),
    )
    op.create_table(
        "risk_exposure",
        sa.Column("engine", sa.String(64), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("reserved", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("engine", "day", name="pk_risk_exposure"),
    )
    op.create_table(
        "risk_ledger",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("engine", sa.String(64), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_risk_ledger"),
    )
    op.create_index("ix_risk_ledger_created_at", "risk_ledger", ["created_at"])
    golive = op.create_table(
        "go_live_state",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("kill_switch_engaged", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(1024)),
        sa.Column("changed_by", sa.String(128)),
        sa.Column("source", sa.String(16)),
        sa.Column("changed_at", UTCDateTime),
        sa.PrimaryKeyConstraint("id", name="pk_go_live_state"),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("reason", sa.String(1024)),
        sa.Column("domain", sa.String(64)),
        sa.Column("metric", sa.String(64)),
        sa.Column("engine", sa.String(64)),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON),
        sa.Column("detail", sa.JSON),
        sa.PrimaryKeyConstraint("id", name="pk_audit_event"),
    )
    op.create_index("ix_audit_event_created_at", "audit_event", ["created_at"])
    op.create_index("ix_audit_event_kind", "audit_event", ["kind"])

    now = datetime.now(UTC)
    op.bulk_insert(policy, [
        {"domain": d, "metric": m, "window_events": 50, "baseline_events": 200, "min_events_to_enforce": 50,
         "max_drop_fraction": x, "action": a, "aggregation": agg, "enabled": False, "dry_run": False,
         # The default guard of new policies; databases seeded with the earlier default (evidence) are
         # moved by 0009, which audits it. A fresh database starts with it, nothing to audit.
         "guard": "combined", "guard_confidence": 0.95, "guard_alpha": 3e-6,
         "changed_by": "migration", "reason": "seed policy", "updated_at": now}
        for d, m, x, a, agg in SEED_POLICIES
    ])
    op.bulk_insert(state, [
        {"domain": d, "metric": m, "triggered": False, "recent_events": 0, "baseline_events": 0}
        for d, m, *_ in SEED_POLICIES
    ])
    op.bulk_insert(risk, [
        {"engine": e, "enabled": True, "changed_by": "migration", "reason": "seed risk policy", "updated_at": now}
        for e in SEED_ENGINES
    ])
    op.bulk_insert(golive, [{"id": 1, "kill_switch_engaged": False}])


def downgrade() -> None:
    """Drop the tripwire's tables."""
    for table in ("audit_event", "go_live_state", "risk_ledger", "risk_exposure", "risk_policy",
                  "regression_state", "regression_policy"):
        op.drop_table(table)
