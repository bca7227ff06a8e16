"""The drift and regression monitor: telemetry events, bucket aggregates, rolling baselines and alerts.

Revision ID: 0004_monitor
Revises: 0003_alert_delivery
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from kpiguard.db._types import BigIntPK, UTCDateTime

revision = "0004_monitor"
down_revision = "0003_alert_delivery"
branch_labels = None
depends_on = None

_ACTIVE = "status IN ('open', 'acknowledged')"


def upgrade() -> None:
    """Create telemetry_event, monitoring_metrics, monitoring_baseline and monitoring_alerts."""
    op.create_table(
        "telemetry_event",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128)),
        sa.Column("backend", sa.String(128)),
        sa.Column("agent", sa.String(128)),
        sa.Column("duration_ms", sa.Float),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("fallback_reason", sa.String(512)),
        sa.Column("duplicate", sa.Boolean, nullable=False),
        sa.Column("event_data", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry_event"),
    )
    # One traffic row per event_id; replays are extra rows with duplicate = true.
    op.create_index(
        "uq_telemetry_event_event_id_first", "telemetry_event", ["event_id"], unique=True,
        sqlite_where=sa.text("duplicate = 0"), postgresql_where=sa.text("NOT duplicate"),
    )
    op.create_index("ix_telemetry_event_occurred_at", "telemetry_event", ["occurred_at", "id"])

    op.create_table(
        "monitoring_metrics",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("granularity", sa.String(8), nullable=False),
        sa.Column("bucket_start", UTCDateTime, nullable=False),
        sa.Column("scope", sa.String(160), nullable=False),
        sa.Column("total_events", sa.Integer, nullable=False),
        sa.Column("successful_events", sa.Integer, nullable=False),
        sa.Column("failed_events", sa.Integer, nullable=False),
        sa.Column("fallback_events", sa.Integer, nullable=False),
        sa.Column("duplicate_events", sa.Integer, nullable=False),
        sa.Column("fallback_rate", sa.Float),
        sa.Column("error_rate", sa.Float),
        sa.Column("duplicate_rate", sa.Float),
        sa.Column("success_rate", sa.Float),
        sa.Column("latency_count", sa.Integer, nullable=False),
        *(sa.Column(f"latency_{s}", sa.Float) for s in ("p50", "p75", "p90", "p95", "p99", "avg", "min", "max")),
        sa.Column("model_distribution", sa.JSON, nullable=False),
        sa.Column("backend_distribution", sa.JSON, nullable=False),
        sa.Column("agent_distribution", sa.JSON, nullable=False),
        sa.Column("top_fallback_reasons", sa.JSON, nullable=False),
        sa.Column("health_score", sa.Float),
        sa.Column("computed_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_metrics"),
        sa.UniqueConstraint(
            "granularity", "bucket_start", "scope", name="uq_monitoring_metrics_granularity_bucket_start_scope"
        ),
        sa.CheckConstraint("granularity IN ('hour', 'day')", name="granularity"),
    )

    op.create_table(
        "monitoring_baseline",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(160), nullable=False),
        sa.Column("window_days", sa.Integer, nullable=False),
        sa.Column("start_day", sa.Date, nullable=False),
        sa.Column("end_day", sa.Date, nullable=False),
        sa.Column("days_used", sa.Integer, nullable=False),
        sa.Column("total_events", sa.Integer, nullable=False),
        sa.Column("duplicate_events", sa.Integer, nullable=False),
        sa.Column("fallback_rate", sa.Float),
        sa.Column("error_rate", sa.Float),
        sa.Column("duplicate_rate", sa.Float),
        sa.Column("success_rate", sa.Float),
        sa.Column("latency_p95", sa.Float),
        sa.Column("latency_avg", sa.Float),
        sa.Column("health_score", sa.Float),
        sa.Column("computed_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_baseline"),
        sa.UniqueConstraint("name", "scope", "end_day", name="uq_monitoring_baseline_name_scope_end_day"),
    )

    op.create_table(
        "monitoring_alerts",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("alert_type", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(160), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("current_value", sa.Float, nullable=False),
        sa.Column("baseline_value", sa.Float),
        sa.Column("ratio", sa.Float),
        sa.Column("message", sa.String(1000), nullable=False),
        sa.Column("baseline_name", sa.String(64)),
        sa.Column("granularity", sa.String(8), nullable=False),
        sa.Column("bucket_start", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("acknowledged_at", UTCDateTime),
        sa.Column("acknowledged_by", sa.String(128)),
        sa.Column("acknowledge_note", sa.String(1000)),
        sa.Column("resolved_at", UTCDateTime),
        sa.Column("resolved_by", sa.String(128)),
        sa.Column("resolve_note", sa.String(1000)),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_alerts"),
        sa.CheckConstraint(
            "alert_type IN ('fallback_spike', 'error_spike', 'latency_spike', 'duplicate_spike', 'health_decline')",
            name="alert_type",
        ),
        sa.CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')", name="severity"),
        sa.CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="status"),
    )
    # (check constraint names get the ck_<table>_ prefix from the naming convention)
    # At most one open or acknowledged alert per (type, scope), even with two computations racing.
    op.create_index(
        "uq_monitoring_alerts_active", "monitoring_alerts", ["alert_type", "scope"], unique=True,
        sqlite_where=sa.text(_ACTIVE), postgresql_where=sa.text(_ACTIVE),
    )
    op.create_index("ix_monitoring_alerts_status_severity", "monitoring_alerts", ["status", "severity", "id"])


def downgrade() -> None:
    """Drop the monitor's tables."""
    for table in ("monitoring_alerts", "monitoring_baseline", "monitoring_metrics", "telemetry_event"):
        op.drop_table(table)
