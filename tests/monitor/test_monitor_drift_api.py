"""The seed's drift scenarios through the HTTP API, on SQLite and PostgreSQL: ingest, compute, alerts."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from conftest import count_rows, metric_samples, sample
from kpiguard.db.models import MonitoringAlert, MonitoringBaseline, MonitoringMetrics
from kpiguard.keys import SESSIONS

from ._http import ALERTS, BASELINE, DAILY, compute, day_events, get_json, post_events

WEEK_START = date(2026, 2, 14)
# A normal day: 400 events, 2% errors, 5% fallbacks.
NORMAL = dict(events=400, failures=8, fallbacks=20)


def _active(alerts: list[dict[str, Any]]) -> dict[str, str]:
    return {a["alert_type"]: a["severity"] for a in alerts}


async def test_a_normal_week_then_drifting_days_raise_the_seed_alerts(mclient):
    """3x fallbacks -> HIGH fallback_spike; 1.6x errors -> LOW error_spike; health under 50 -> health_decline;
    re-checks update the one alert per type instead of adding rows."""
    week = [WEEK_START + timedelta(days=n) for n in range(7)]
    spike, errors, unhealthy = (WEEK_START + timedelta(days=n) for n in (7, 8, 9))
    events = [e for d in week for e in day_events(d, **NORMAL)]
    events += day_events(spike, **{**NORMAL, "fallbacks": 60})  # 15% = 3x the week's 5%
    events += day_events(errors, **{**NORMAL, "failures": 13})  # 3.25% = 1.625x the week's 2%
    # success 55%, fallbacks 25%: health 27.5 + 0 + 20 = 47.5
    events += day_events(unhealthy, **{**NORMAL, "failures": 180, "fallbacks": 100})
    assert await post_events(mclient, events) == {"stored": 4000, "new": 4000, "duplicates": 0}

    for d in week:
        body = await compute(mclient, date=d.isoformat())
        assert body["alerts"] == []
    assert (await get_json(mclient, ALERTS))["alerts"] == []

    body = await compute(mclient, date=spike.isoformat(), update_baseline=True)
    assert body["baseline"]["days_used"] == 7
    assert body["baseline"]["fallback_rate"] == pytest.approx(0.05)
    assert [(a["change"], a["alert_type"], a["severity"]) for a in body["alerts"]] == [
        ("created", "fallback_spike", "high")]
    listed = (await get_json(mclient, ALERTS, status="open"))["alerts"]
    assert _active(listed) == {"fallback_spike": "high"}
    assert listed[0]["ratio"] == pytest.approx(3.0) and listed[0]["current_value"] == pytest.approx(0.15)
    fallback_id = listed[0]["id"]

    body = await compute(mclient, date=errors.isoformat())
    assert [(a["change"], a["alert_type"], a["severity"]) for a in body["alerts"]] == [
        ("created", "error_spike", "low")]
    assert _active((await get_json(mclient, ALERTS))["alerts"]) == {"fallback_spike": "high", "error_spike": "low"}
    # threshold is the lowest severity shown
    assert _active((await get_json(mclient, ALERTS, threshold="medium"))["alerts"]) == {"fallback_spike": "high"}
    error_id = next(a["id"] for a in (await get_json(mclient, ALERTS))["alerts"] if a["alert_type"] == "error_spike")

    body = await compute(mclient, date=unhealthy.isoformat())
    changes = {a["alert_type"]: (a["change"], a["severity"], a["id"]) for a in body["alerts"]}
    assert changes["health_decline"][:2] == ("created", "high")
    assert changes["error_spike"] == ("updated", "critical", error_id)
    assert changes["fallback_spike"][0] == "updated" and changes["fallback_spike"][2] == fallback_id
    active = (await get_json(mclient, ALERTS))["alerts"]
    assert _active(active)["health_decline"] == "high"
    health = next(a for a in active if a["alert_type"] == "health_decline")
    assert health["current_value"] == pytest.approx(47.5)
    # one row per type: updates never add rows
    assert await count_rows(mclient, MonitoringAlert) == 3
    assert (await get_json(mclient, BASELINE))["end_date"] == unhealthy.isoformat()

    samples = await metric_samples(mclient)
    assert sample(samples, "kpiguard_monitor_alerts_active", type="error_spike", severity="critical",
                  status="open") == 1
    assert sample(samples, "kpiguard_monitor_health_score", granularity="day", scope="global") == pytest.approx(47.5)
    assert sample(samples, "kpiguard_monitor_deviation_ratio", signal="error", scope="global") > 5
    assert sample(samples, "kpiguard_monitor_computations_total", granularity="day", trigger="api",
                  result="ok") >= 10


async def test_recomputing_a_day_twice_leaves_the_same_rows(mclient):
    """A second computation of the same day replaces its rows in place: same ids, same values, no new alert."""
    days = [WEEK_START + timedelta(days=n) for n in range(4)]
    events = [e for d in days[:3] for e in day_events(d, **NORMAL)]
    events += day_events(days[3], **{**NORMAL, "fallbacks": 60})
    await post_events(mclient, events)

    async def snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        async with mclient.app[SESSIONS]() as session:
            m = (await session.execute(select(MonitoringMetrics).order_by(MonitoringMetrics.id))).scalars().all()
            b = (await session.execute(select(MonitoringBaseline).order_by(MonitoringBaseline.id))).scalars().all()
            a = (await session.execute(select(MonitoringAlert).order_by(MonitoringAlert.id))).scalars().all()
            return (
                [(r.id, r.granularity, r.bucket_start, r.total_events, r.fallback_rate, r.latency_p95,
                  r.model_distribution, r.top_fallback_reasons, r.health_score) for r in m],
                [(r.id, r.end_day, r.days_used, r.fallback_rate, r.latency_p95) for r in b],
                [(r.id, r.alert_type, r.severity, r.status, r.current_value, r.updated_at) for r in a],
            )

    first = await compute(mclient, date=days[3].isoformat())
    # the day's window was filled by itself: the three days before were computed too
    assert sorted(c["date"] for c in first["computed"]) == [d.isoformat() for d in days]
    assert [a["alert_type"] for a in first["alerts"]] == ["fallback_spike"]
    before = await snapshot()
    again = await compute(mclient, date=days[3].isoformat())
    assert [c["date"] for c in again["computed"]] == [days[3].isoformat()]
    assert again["alerts"] == []  # nothing changed, so nothing is reported
    after = await snapshot()
    assert after == before
    assert len(after[0]) == 4 and len(after[2]) == 1


async def test_a_replayed_event_id_raises_the_duplicate_rate_not_the_traffic(mclient):
    """Replays (across requests and within one) are stored flagged; totals, rates and counters ignore them."""
    day = WEEK_START
    events = day_events(day, events=50, failures=5, fallbacks=10)
    assert await post_events(mclient, events) == {"stored": 50, "new": 50, "duplicates": 0}
    row = (await compute(mclient, date=day.isoformat()))["computed"][0]
    assert (row["total_events"], row["duplicate_events"], row["duplicate_rate"]) == (50, 0, 0.0)

    assert await post_events(mclient, events[:10]) == {"stored": 10, "new": 0, "duplicates": 10}
    fresh = day_events(day, events=1, prefix="new-")
    assert await post_events(mclient, fresh + fresh) == {"stored": 2, "new": 1, "duplicates": 1}
    daily = (await get_json(mclient, DAILY, start=day.isoformat(), end=day.isoformat()))["days"]
    assert daily[0]["total_events"] == 50  # not recomputed yet
    await compute(mclient, date=day.isoformat())
    daily = (await get_json(mclient, DAILY, start=day.isoformat(), end=day.isoformat()))["days"]
    got = daily[0]
    assert got["total_events"] == 51 and got["duplicate_events"] == 11
    assert got["duplicate_rate"] == pytest.approx(11 / 62)
    # the replays changed no traffic rate: 5 failures and 10 fallbacks of 51 events
    assert got["error_rate"] == pytest.approx(5 / 51) and got["fallback_rate"] == pytest.approx(10 / 51)

    samples = await metric_samples(mclient)
    traffic = sum(v for (name, _), v in samples.items() if name == "kpiguard_telemetry_events_total")
    assert traffic == 51
    assert sample(samples, "kpiguard_ingest_duplicates_total", kind="telemetry_event") == 11


async def test_percentiles_equal_an_independent_reference_after_a_db_round_trip(mclient):
    """p50..p99, avg, min and max of a day and of an hour match numpy's linear interpolation within 1e-9."""
    rng = random.Random(20260221)
    day = WEEK_START
    events = day_events(day, events=997)
    for i, e in enumerate(events):
        if i % 50 == 7:
            del e["event_data"]["duration_ms"]  # events without a latency are traffic, not latency samples
        else:
            e["event_data"]["duration_ms"] = rng.lognormvariate(6.0, 1.1) + rng.random() / 7
    await post_events(mclient, events)
    latencies = [e["event_data"]["duration_ms"] for e in events if "duration_ms" in e["event_data"]]
    await compute(mclient, date=day.isoformat())
    got = (await get_json(mclient, DAILY, start=day.isoformat(), end=day.isoformat()))["days"][0]
    assert got["latency_count"] == len(latencies) and got["total_events"] == 997
    for name, q in (("p50", 50), ("p75", 75), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert abs(got[f"latency_{name}"] - float(np.percentile(latencies, q, method="linear"))) <= 1e-9, name
    assert abs(got["latency_avg"] - float(np.mean(latencies))) <= 1e-9
    assert got["latency_min"] == min(latencies) and got["latency_max"] == max(latencies)

    hour = 13
    in_hour = [e["event_data"]["duration_ms"] for e in events
               if e["occurred_at"].startswith(f"{day.isoformat()}T{hour:02d}:") and "duration_ms" in e["event_data"]]
    body = await compute(mclient, date=day.isoformat(), hour=hour)
    assert body["computed"][0]["hour"] == hour
    assert abs(body["computed"][0]["latency_p95"] - float(np.percentile(in_hour, 95, method="linear"))) <= 1e-9


async def test_a_day_without_a_thin_baseline_is_not_checked_for_spikes(mclient):
    """With fewer baseline days than monitor_min_baseline_days, a spike day raises no spike alert."""
    days = [WEEK_START + timedelta(days=n) for n in range(3)]
    events = [e for d in days[:2] for e in day_events(d, **NORMAL)]
    events += day_events(days[2], **{**NORMAL, "fallbacks": 100})
    await post_events(mclient, events)
    body = await compute(mclient, date=days[2].isoformat())
    assert body["baseline"]["days_used"] == 2
    assert body["alerts"] == []


async def test_auto_resolve_closes_an_alert_when_the_signal_is_back(make_client):
    """With monitor_auto_resolve, a normal day after a spike resolves the alert as kpiguard."""
    client = await make_client(monitor_scheduler=False, monitor_auto_resolve=True)
    days = [WEEK_START + timedelta(days=n) for n in range(5)]
    events = [e for d in days[:3] for e in day_events(d, **NORMAL)]
    events += day_events(days[3], **{**NORMAL, "fallbacks": 80})
    events += day_events(days[4], **NORMAL)
    await post_events(client, events)
    assert [a["change"] for a in (await compute(client, date=days[3].isoformat()))["alerts"]] == ["created"]
    body = await compute(client, date=days[4].isoformat())
    assert [(a["change"], a["status"], a["resolved_by"]) for a in body["alerts"]] == [
        ("resolved", "resolved", "kpiguard")]
    assert (await get_json(client, ALERTS))["alerts"] == []
    assert len((await get_json(client, ALERTS, status="resolved"))["alerts"]) == 1
