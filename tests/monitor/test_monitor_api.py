"""The monitor's read, compute and lifecycle endpoints, their bad inputs, and the scheduler, on both stores."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from conftest import count_rows, metric_samples, sample
from kpiguard.db.models import MonitoringAlert, MonitoringBaseline, MonitoringMetrics, TelemetryEvent
from kpiguard.keys import SESSIONS

from ._http import ALERTS, BASELINE, COMPUTE, DAILY, SUMMARY, compute, day_events, get_json, post_events

FIRST = date(2026, 2, 14)
SMALL = dict(events=100, failures=2, fallbacks=5)


async def _spike(client: Any, *, days: int = 3, fallbacks: int = 15) -> tuple[list[date], dict[str, Any]]:
    """Ingest ``days`` normal days then a fallback spike, compute the spike day; return the days and its answer."""
    all_days = [FIRST + timedelta(days=n) for n in range(days + 1)]
    events = [e for d in all_days[:-1] for e in day_events(d, **SMALL)]
    events += day_events(all_days[-1], **{**SMALL, "fallbacks": fallbacks})
    await post_events(client, events)
    return all_days, await compute(client, date=all_days[-1].isoformat())


async def _alert_id(client: Any) -> int:
    alerts = (await get_json(client, ALERTS))["alerts"]
    assert len(alerts) == 1
    return int(alerts[0]["id"])


async def test_the_alert_lifecycle_with_who_when_and_notes(mclient):
    """open -> acknowledged (JSON body) -> resolved (form body); every other transition 409; unknown id 404."""
    await _spike(mclient)
    alert_id = await _alert_id(mclient)
    url = f"{ALERTS}/{alert_id}"

    resp = await mclient.post(f"{url}/acknowledge", json={"by": "alice", "note": "looking into the fallbacks"})
    assert resp.status == 200
    body = await resp.json()
    assert (body["status"], body["acknowledged_by"], body["acknowledge_note"]) == (
        "acknowledged", "alice", "looking into the fallbacks")
    assert body["acknowledged_at"].endswith("Z") and body["resolved_at"] is None
    samples = await metric_samples(mclient)
    assert sample(samples, "kpiguard_monitor_alerts_active", type="fallback_spike", severity="high",
                  status="acknowledged") == 1

    resp = await mclient.post(f"{url}/acknowledge")
    assert resp.status == 409
    err = (await resp.json())["error"]
    assert err["code"] == "conflict" and err["choices"] == ["resolve"]

    resp = await mclient.post(f"{url}/resolve", data={"actor": "bob", "note": "provider recovered"})
    assert resp.status == 200
    body = await resp.json()
    assert (body["status"], body["resolved_by"], body["resolve_note"]) == ("resolved", "bob", "provider recovered")
    assert body["acknowledged_by"] == "alice"  # the history is kept

    for action in ("acknowledge", "resolve"):
        resp = await mclient.post(f"{url}/{action}", json={})
        assert resp.status == 409, action
        assert (await resp.json())["error"]["choices"] == []
        resp = await mclient.post(f"{ALERTS}/{alert_id + 1000}/{action}")
        assert resp.status == 404, action
        assert (await resp.json())["error"]["field"] == "id"

    assert (await get_json(mclient, ALERTS))["alerts"] == []
    assert [a["id"] for a in (await get_json(mclient, ALERTS, status="resolved"))["alerts"]] == [alert_id]
    samples = await metric_samples(mclient)
    assert sample(samples, "kpiguard_monitor_alerts_active", type="fallback_spike", severity="high",
                  status="acknowledged") == 0

    # a resolved alert is final: the spike, checked again, opens a new one, which resolves straight from open
    days, _ = await _spike_again(mclient)
    new_id = await _alert_id(mclient)
    assert new_id != alert_id
    resp = await mclient.post(f"{ALERTS}/{new_id}/resolve")
    assert resp.status == 200 and (await resp.json())["resolved_by"] is None
    assert await count_rows(mclient, MonitoringAlert) == 2


async def _spike_again(client: Any) -> tuple[list[date], dict[str, Any]]:
    day = FIRST + timedelta(days=3)
    return [day], await compute(client, date=day.isoformat())


async def test_alerts_filter_by_threshold_status_and_type(mclient):
    """?threshold= is the lowest severity shown, ?status= and ?type= filter, ?limit= caps; newest first."""
    await _spike(mclient, fallbacks=11)  # 11% against 5%: 2.2x, MEDIUM
    errors_day = FIRST + timedelta(days=4)
    await post_events(mclient, day_events(errors_day, **{**SMALL, "failures": 4}))  # 2x errors: MEDIUM
    await compute(mclient, date=errors_day.isoformat())
    every = (await get_json(mclient, ALERTS))["alerts"]
    assert [(a["alert_type"], a["severity"]) for a in every] == [("error_spike", "medium"),
                                                                 ("fallback_spike", "medium")]
    for threshold, count in (("low", 2), ("MEDIUM", 2), ("high", 0), ("critical", 0)):
        got = await get_json(mclient, ALERTS, threshold=threshold, status="open")
        assert got["count"] == count, threshold
        assert got["threshold"] == threshold.lower()
    assert [a["alert_type"] for a in (await get_json(mclient, ALERTS, type="error_spike"))["alerts"]] == [
        "error_spike"]
    assert len((await get_json(mclient, ALERTS, limit="1"))["alerts"]) == 1
    assert (await get_json(mclient, ALERTS, status="acknowledged"))["alerts"] == []
    assert len((await get_json(mclient, ALERTS, status="all"))["alerts"]) == 2


async def test_summary_has_the_seed_shape_and_pooled_values(mclient):
    """window, metrics, baseline, trends and alerts as in the seed, with event-weighted averages."""
    days, _ = await _spike(mclient, days=6)
    end = days[-1] + timedelta(days=1)
    body = await get_json(mclient, SUMMARY, window="7d", end=end.isoformat())
    assert set(body) == {"window", "metrics", "baseline", "trends", "alerts"}
    assert body["window"] == {"start_date": days[0].isoformat(), "end_date": end.isoformat(), "days": 7}
    assert {"total_events", "avg_fallback_rate", "avg_error_rate", "avg_health_score"} <= set(body["metrics"])
    assert {"fallback_rate", "error_rate", "latency_p95"} <= set(body["baseline"])
    assert {"fallback_rate", "latency_p95"} <= set(body["trends"])
    assert set(body["trends"].values()) <= {"up", "down", "stable"}
    assert body["alerts"]["total_open"] == 1 and body["alerts"]["by_severity"] == {"high": 1}
    m = body["metrics"]
    assert m["total_events"] == 700 and m["days_with_data"] == 7
    assert m["avg_fallback_rate"] == pytest.approx((6 * 5 + 15) / 700)
    assert m["avg_error_rate"] == pytest.approx(0.02)
    daily = (await get_json(mclient, DAILY, start=days[0].isoformat(), end=days[-1].isoformat()))["days"]
    assert m["avg_health_score"] == pytest.approx(sum(d["health_score"] for d in daily) / 7)
    # the current baseline includes the spike day (it checks the day after it)
    assert body["baseline"]["fallback_rate"] == pytest.approx((6 * 5 + 15) / 700)
    # the window before held no data: nothing to compare with
    assert body["trends"]["fallback_rate"] == "stable"

    later = await get_json(mclient, SUMMARY, window="3d", end=(end + timedelta(days=3)).isoformat())
    assert later["metrics"]["total_events"] == 0 and later["metrics"]["avg_fallback_rate"] is None
    assert later["trends"]["fallback_rate"] == "stable"
    trending = await get_json(mclient, SUMMARY, window="1d", end=end.isoformat())
    assert trending["trends"]["fallback_rate"] == "up"  # 15% on the spike day against 5% the day before


async def test_baseline_and_daily_metrics_endpoints(mclient):
    """GET baseline answers the newest or the one for a date; metrics/daily lists the computed days in a range."""
    days, answer = await _spike(mclient)
    assert answer["baseline"]["end_date"] == days[-2].isoformat()
    newest = await get_json(mclient, BASELINE)
    assert newest["end_date"] == days[-1].isoformat() and newest["for_date"] == (
        days[-1] + timedelta(days=1)).isoformat()
    checking = await get_json(mclient, BASELINE, for_date=days[-1].isoformat())
    assert (checking["start_date"], checking["end_date"], checking["days_used"]) == (
        (days[-1] - timedelta(days=7)).isoformat(), days[-2].isoformat(), 3)
    assert checking["fallback_rate"] == pytest.approx(0.05)
    resp = await mclient.get(BASELINE, params={"for_date": "2020-01-01"})
    assert resp.status == 404 and (await resp.json())["error"]["field"] == "for_date"
    resp = await mclient.get(BASELINE, params={"name": "weekly"})
    assert resp.status == 404 and (await resp.json())["error"]["field"] == "name"

    daily = await get_json(mclient, DAILY, start=days[0].isoformat(), end=days[-1].isoformat())
    assert [d["date"] for d in daily["days"]] == [d.isoformat() for d in days]
    spike = daily["days"][-1]
    assert spike["fallback_rate"] == pytest.approx(0.15) and spike["top_fallback_reasons"] == [["rate_limited", 15]]
    assert spike["model_distribution"] == {"claude-sonnet-4": 66, "gpt-4o": 34}
    assert spike["agent_distribution"] == {"prince_flowers": 100}
    assert (await get_json(mclient, DAILY, start=days[1].isoformat(), end=days[1].isoformat()))["days"][0][
        "date"] == days[1].isoformat()


async def test_compute_with_an_empty_body_does_the_last_closed_hour_and_day(mclient):
    """An empty body computes the last closed hour and yesterday and says which."""
    now = datetime.now(UTC)
    resp = await mclient.post(COMPUTE)
    assert resp.status == 200
    body = await resp.json()
    hour = (now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1))
    assert body["requested"]["update_baseline"] is True
    kinds = [(c["granularity"], c["bucket_start"]) for c in body["computed"]]
    assert kinds[0][0] == "hour" and kinds[1][0] == "day"
    assert body["computed"][1]["date"] == (now.date() - timedelta(days=1)).isoformat()
    assert abs(datetime.fromisoformat(kinds[0][1]) - hour) <= timedelta(hours=1)
    assert body["checked"] == [body["computed"][1]["date"]]
    assert await count_rows(mclient, MonitoringBaseline) == 2  # checking yesterday, and the current one
    today = await compute(mclient, date=now.date().isoformat())  # today so far: checked, no baseline from it
    assert today["checked"] == [now.date().isoformat()]
    assert await count_rows(mclient, MonitoringBaseline) == 2


async def test_gauges_follow_the_newest_computation(mclient):
    """Bucket, baseline and threshold gauges are exported; recomputing an older day leaves them on the newest."""
    days, _ = await _spike(mclient)
    samples = await metric_samples(mclient)
    g = {"granularity": "day", "scope": "global"}
    assert sample(samples, "kpiguard_monitor_fallback_ratio", **g) == pytest.approx(0.15)
    assert sample(samples, "kpiguard_monitor_events", **g) == 100
    daily = (await get_json(mclient, DAILY, start=days[-1].isoformat(), end=days[-1].isoformat()))["days"][0]
    assert sample(samples, "kpiguard_monitor_latency_seconds", stat="p95", **g) == pytest.approx(
        daily["latency_p95"] / 1000)
    b = {"baseline": "default", "scope": "global"}
    assert sample(samples, "kpiguard_monitor_baseline_days", **b) == 4
    assert sample(samples, "kpiguard_monitor_baseline_fallback_ratio", **b) == pytest.approx(30 / 400)
    assert sample(samples, "kpiguard_monitor_threshold_ratio", severity="critical") == 5
    assert sample(samples, "kpiguard_monitor_health_threshold_score", severity="high") == 50
    assert sample(samples, "kpiguard_monitor_deviation_ratio", signal="fallback", scope="global") == pytest.approx(3)
    await compute(mclient, date=days[0].isoformat(), update_baseline=False)
    samples = await metric_samples(mclient)
    assert sample(samples, "kpiguard_monitor_fallback_ratio", **g) == pytest.approx(0.15)
    assert sample(samples, "kpiguard_monitor_last_computed_timestamp_seconds", granularity="day") == (
        datetime(2026, 2, 18, tzinfo=UTC).timestamp())


async def test_the_scheduler_computes_closed_hours_and_days_once(make_client):
    """With a short interval the scheduler computes the last closed hour and yesterday, and not again."""
    client = await make_client(monitor_interval_seconds=0.1)
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    yesterday = now.date() - timedelta(days=1)
    events = day_events(yesterday, events=24, failures=1, prefix="y-")
    events += [{**e, "event_id": f"h-{i}", "occurred_at": (hour + timedelta(minutes=2 * i)).isoformat()}
               for i, e in enumerate(day_events(yesterday, events=20))]
    await post_events(client, events)

    async def computed() -> set[tuple[str, datetime]]:
        async with client.app[SESSIONS]() as session:
            rows = (await session.execute(select(MonitoringMetrics.granularity, MonitoringMetrics.bucket_start)))
            return set(rows.all())

    want = {("hour", hour), ("day", datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=UTC))}
    for _ in range(100):
        if want <= await computed():
            break
        await asyncio.sleep(0.1)
    assert want <= await computed()
    runs = sample(await metric_samples(client), "kpiguard_monitor_computations_total", granularity="day",
                  trigger="scheduler", result="ok")
    await asyncio.sleep(0.5)  # several more runs: nothing new arrived, so nothing is recomputed
    again = sample(await metric_samples(client), "kpiguard_monitor_computations_total", granularity="day",
                   trigger="scheduler", result="ok")
    assert runs == again and runs is not None
    assert await count_rows(client, MonitoringBaseline) == 2  # the one checking yesterday and today's


async def test_reads_need_a_token_and_writes_the_admin_scope(make_client):
    """With tokens, reads take any known token, compute and the lifecycle need admin."""
    client = await make_client(monitor_scheduler=False, ingest_tokens="in-1", admin_tokens="ad-1")
    ingest, admin = {"Authorization": "Bearer in-1"}, {"Authorization": "Bearer ad-1"}
    assert (await client.get(SUMMARY)).status == 401
    assert (await client.get(SUMMARY, headers=ingest)).status == 200
    assert (await client.get(ALERTS, headers=ingest)).status == 200
    assert (await client.post(COMPUTE, headers=ingest)).status == 403
    assert (await client.post(f"{ALERTS}/1/resolve", headers=ingest)).status == 403
    assert await count_rows(client, MonitoringMetrics) == 0
    assert (await client.post(COMPUTE, headers=admin)).status == 200
    assert (await client.post(f"{ALERTS}/1/resolve", headers=admin)).status == 404


def _json(body: Any) -> dict[str, Any]:
    return {"data": json.dumps(body), "headers": {"Content-Type": "application/json"}}


TOMORROW = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()
BAD_READS = [
    # (id, path, query, status, field)
    ("alerts-bad-threshold", ALERTS, "threshold=urgent", 422, "threshold"),
    ("alerts-bad-status", ALERTS, "status=closed", 422, "status"),
    ("alerts-bad-type", ALERTS, "type=cpu_spike", 422, "type"),
    ("alerts-limit-zero", ALERTS, "limit=0", 422, "limit"),
    ("alerts-limit-text", ALERTS, "limit=ten", 422, "limit"),
    ("alerts-limit-huge", ALERTS, "limit=5000", 422, "limit"),
    ("alerts-unknown-param", ALERTS, "severity=high", 422, "severity"),
    ("alerts-repeated-param", ALERTS, "threshold=low&threshold=high", 422, "threshold"),
    ("summary-window-no-unit", SUMMARY, "window=7", 422, "window"),
    ("summary-window-zero", SUMMARY, "window=0d", 422, "window"),
    ("summary-window-too-long", SUMMARY, "window=400d", 422, "window"),
    ("summary-window-hours", SUMMARY, "window=24h", 422, "window"),
    ("summary-bad-end", SUMMARY, "end=2026-13-01", 422, "end"),
    ("summary-end-words", SUMMARY, "end=yesterday", 422, "end"),
    ("summary-unknown-param", SUMMARY, "days=7", 422, "days"),
    ("baseline-bad-date", BASELINE, "for_date=21-02-2026", 422, "for_date"),
    ("baseline-unknown-param", BASELINE, "scope=x", 422, "scope"),
    ("daily-bad-start", DAILY, "start=2026-02-30", 422, "start"),
    ("daily-bad-end", DAILY, "end=soon", 422, "end"),
    ("daily-start-after-end", DAILY, "start=2026-02-10&end=2026-02-01", 422, "start"),
    ("daily-range-too-long", DAILY, "start=2024-01-01&end=2026-01-01", 422, "start"),
    ("daily-unknown-param", DAILY, "granularity=hour", 422, "granularity"),
]
BAD_COMPUTE = [
    # (id, request kwargs, status, field)
    ("malformed-json", {"data": b'{"date": ', "headers": {"Content-Type": "application/json"}}, 400, None),
    ("not-utf8", {"data": b'{"date": "\xff"}', "headers": {"Content-Type": "application/json"}}, 400, None),
    ("array-body", _json([{"date": "2026-02-14"}]), 422, None),
    ("form-body", {"data": {"date": "2026-02-14"}}, 415, "Content-Type"),
    ("date-format", _json({"date": "14/02/2026"}), 422, "date"),
    ("date-impossible", _json({"date": "2026-02-30"}), 422, "date"),
    ("date-number", _json({"date": 20260214}), 422, "date"),
    ("date-future", _json({"date": TOMORROW}), 422, "date"),
    ("hour-24", _json({"date": "2026-02-14", "hour": 24}), 422, "hour"),
    ("hour-negative", _json({"date": "2026-02-14", "hour": -1}), 422, "hour"),
    ("hour-string", _json({"date": "2026-02-14", "hour": "3"}), 422, "hour"),
    ("hour-without-date", _json({"hour": 3}), 422, "hour"),
    ("update-baseline-string", _json({"date": "2026-02-14", "update_baseline": "yes"}), 422, "update_baseline"),
    ("unknown-field", _json({"date": "2026-02-14", "scope": "global"}), 422, "scope"),
]
BAD_ACTIONS = [
    # (id, path suffix, request kwargs, status, field)
    ("id-not-a-number", "abc/acknowledge", {}, 422, "id"),
    ("id-too-long", "1234567890123456789012/resolve", {}, 422, "id"),
    ("unknown-field", "{id}/acknowledge", _json({"who": "alice"}), 422, "who"),
    ("by-too-long", "{id}/acknowledge", _json({"by": "a" * 129}), 422, "by"),
    ("by-not-string", "{id}/resolve", _json({"by": 7}), 422, "by"),
    ("by-and-actor-differ", "{id}/resolve", _json({"by": "alice", "actor": "bob"}), 422, "actor"),
    ("note-too-long", "{id}/resolve", _json({"note": "n" * 1001}), 422, "note"),
    ("note-not-string", "{id}/acknowledge", _json({"note": ["x"]}), 422, "note"),
    ("malformed-json", "{id}/acknowledge", {"data": b"{", "headers": {"Content-Type": "application/json"}}, 400, None),
    ("array-body", "{id}/acknowledge", _json(["alice"]), 422, None),
    ("text-plain", "{id}/resolve", {"data": "alice", "headers": {"Content-Type": "text/plain"}}, 415,
     "Content-Type"),
    ("form-repeated", "{id}/resolve", {"data": "by=a&by=b",
                                       "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 422, "by"),
    ("unknown-id", "987654/resolve", {}, 404, "id"),
]


async def _counts(client: Any) -> tuple[int, ...]:
    return tuple([await count_rows(client, m) for m in (MonitoringMetrics, MonitoringBaseline, MonitoringAlert,
                                                        TelemetryEvent)])


async def test_bad_reads_and_computes_are_refused_and_change_nothing(mclient):
    """Every bad query or compute body gets its 4xx naming the field (and the choices of an enum); no row moves."""
    await _spike(mclient)
    before = await _counts(mclient)
    for case, path, query, status, field in BAD_READS:
        resp = await mclient.get(f"{path}?{query}")
        assert resp.status == status, (case, await resp.text())
        err = (await resp.json())["error"]
        assert err["field"] == field and err["message"], (case, err)
    for case, kwargs, status, field in BAD_COMPUTE:
        resp = await mclient.post(COMPUTE, **kwargs)
        assert resp.status == status, (case, await resp.text())
        assert (await resp.json())["error"]["field"] == field, case
    assert await _counts(mclient) == before
    err = (await (await mclient.get(f"{ALERTS}?threshold=urgent")).json())["error"]
    assert err["choices"] == ["low", "medium", "high", "critical"]
    err = (await (await mclient.get(f"{ALERTS}?status=closed")).json())["error"]
    assert err["choices"] == ["open", "acknowledged", "resolved", "active", "all"]


async def test_bad_lifecycle_requests_leave_the_alert_as_it_was(mclient):
    """Every bad acknowledge or resolve request gets its 4xx naming the field; the alert stays open, untouched."""
    await _spike(mclient)
    alert_id = await _alert_id(mclient)

    async def row() -> tuple[Any, ...]:
        async with mclient.app[SESSIONS]() as session:
            a = (await session.execute(select(MonitoringAlert))).scalar_one()
            return (a.status, a.updated_at, a.acknowledged_by, a.resolved_by, a.acknowledge_note, a.resolve_note)

    before = await row()
    assert before[0] == "open"
    for case, suffix, kwargs, status, field in BAD_ACTIONS:
        resp = await mclient.post(f"{ALERTS}/{suffix.format(id=alert_id)}", **kwargs)
        assert resp.status == status, (case, await resp.text())
        assert (await resp.json())["error"]["field"] == field, case
    assert await row() == before
