"""The monitor's tables on both stores: migration 0003 matches the models, and the constraints hold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from kpiguard.db import migrate
from kpiguard.db.engine import create_engine
from kpiguard.db.models import Base, MonitoringAlert, MonitoringMetrics, TelemetryEvent
from kpiguard.errors import ConfigError
from kpiguard.settings import load_settings

NOW = datetime(2026, 2, 21, tzinfo=UTC)
EVENT = dict(event_id="e1", occurred_at=NOW, received_at=NOW, event_type="t", success=True, event_data={},
             duplicate=False)
ALERT = dict(alert_type="fallback_spike", scope="global", severity="high", status="open", current_value=0.1,
             message="m", granularity="day", bucket_start=NOW, created_at=NOW, updated_at=NOW)


async def _refused(engine, table, values) -> bool:
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(table), values)
    except IntegrityError:
        return True
    return False


async def test_migration_matches_the_models_and_enforces_the_constraints(make_settings):
    """After upgrade the schema equals the models; a second traffic row per event_id, a second active alert
    per (type, scope), an unknown severity and a second row per bucket are refused; replays and old alerts are not."""
    engine = create_engine(make_settings())
    try:
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
        assert diff == []
        events, alerts = TelemetryEvent.__table__, MonitoringAlert.__table__
        async with engine.begin() as conn:
            await conn.execute(insert(events), [EVENT, {**EVENT, "duplicate": True}, {**EVENT, "duplicate": True}])
            await conn.execute(insert(alerts), [{**ALERT, "status": "resolved"}, {**ALERT, "status": "resolved"},
                                                ALERT])
        assert await _refused(engine, events, EVENT)
        assert await _refused(engine, alerts, {**ALERT, "status": "acknowledged"})
        assert await _refused(engine, alerts, {**ALERT, "scope": "model:x", "severity": "severe"})
        assert not await _refused(engine, alerts, {**ALERT, "scope": "model:x"})
        row = dict(granularity="day", bucket_start=NOW, scope="global", total_events=1, successful_events=1,
                   failed_events=0, fallback_events=0, duplicate_events=0, latency_count=0, model_distribution={},
                   backend_distribution={}, agent_distribution={}, top_fallback_reasons=[], computed_at=NOW)
        assert not await _refused(engine, MonitoringMetrics.__table__, row)
        assert await _refused(engine, MonitoringMetrics.__table__, row)
        assert await _refused(engine, MonitoringMetrics.__table__, {**row, "granularity": "week"})
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"monitor_threshold_high": 6.0}, "KPIGUARD_MONITOR_THRESHOLD_CRITICAL"),
        ({"monitor_threshold_low": 1.0}, "KPIGUARD_MONITOR_THRESHOLD_LOW"),
        ({"monitor_min_error_rate": 0.0}, "KPIGUARD_MONITOR_MIN_ERROR_RATE"),
        ({"monitor_health_critical_below": 60.0}, "KPIGUARD_MONITOR_HEALTH_CRITICAL_BELOW"),
        ({"monitor_min_baseline_days": 0}, "KPIGUARD_MONITOR_MIN_BASELINE_DAYS"),
        ({"monitor_interval_seconds": 0}, "KPIGUARD_MONITOR_INTERVAL_SECONDS"),
        ({"monitor_baseline_days": 400}, "KPIGUARD_MONITOR_BASELINE_DAYS"),
    ],
)
def test_inconsistent_monitor_settings_stop_start_up_naming_the_setting(overrides, setting):
    """Thresholds that would make a severity unreachable, or a ratio meaningless, are refused by name."""
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    assert info.value.setting == setting


def test_monitor_settings_come_from_the_environment(monkeypatch):
    """KPIGUARD_MONITOR_* variables set the thresholds the monitor uses."""
    monkeypatch.setenv("KPIGUARD_MONITOR_THRESHOLD_CRITICAL", "8")
    monkeypatch.setenv("KPIGUARD_MONITOR_AUTO_RESOLVE", "true")
    monkeypatch.setenv("KPIGUARD_MONITOR_SCHEDULER", "false")
    s = load_settings()
    assert s.monitor_thresholds.critical == 8.0 and s.monitor_thresholds.auto_resolve is True
    assert s.monitor_scheduler is False
