"""The Alertmanager webhook receiver, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from conftest import count_rows, metric_samples, sample
from kpiguard.db.models import AlertDelivery, AuditEvent
from kpiguard.keys import RECEIVER

HOOK = "/api/v1/alertmanager/webhook"


def alert(action: str = "THROTTLE", *, status: str = "firing", domain: str = "WHOLESALE",
          metric: str = "contract_rate", fingerprint: str = "a1b2c3d4", starts: str = "2026-11-23T10:00:00Z",
          **labels: str) -> dict[str, Any]:
    """One alert as Alertmanager sends it."""
    return {
        "status": status,
        "labels": {"alertname": "KpiguardRegressionDrop", "domain": domain, "metric": metric, "action": action,
                   "severity": "critical", **labels},
        "annotations": {"summary": f"{domain}.{metric} dropped 79%"},
        "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=...", "fingerprint": fingerprint,
    }


def notification(*alerts: dict[str, Any], status: str = "firing", **extra: Any) -> dict[str, Any]:
    """A version-4 webhook notification."""
    return {"version": "4", "groupKey": "{}:{alertname=\"KpiguardRegressionDrop\"}", "truncatedAlerts": 0,
            "status": status, "receiver": "kpiguard", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": list(alerts), **extra}


async def engine_enabled(client, engine: str) -> bool:
    """Whether the engine's risk policy is enabled."""
    policies = await (await client.get("/api/governance/risk/policies")).json()
    return next(p["enabled"] for p in policies if p["engine"] == engine)


async def test_firing_throttle_disables_engine_and_audits(client):
    """A firing THROTTLE alert disables the engine, audited with source alertmanager, fingerprint and generatorURL."""
    resp = await client.post(HOOK, json=notification(alert()))
    assert resp.status == 200
    body = await resp.json()
    assert body["executed"][0]["action"] == "THROTTLE" and body["executed"][0]["changed"] is True
    assert await engine_enabled(client, "WHOLESALE") is False
    trail = await (await client.get("/api/governance/audit", params={"kind": "enforcement"})).json()
    assert trail[0]["source"] == "alertmanager" and trail[0]["detail"]["fingerprint"] == "a1b2c3d4"
    assert trail[0]["detail"]["generatorURL"].startswith("http://prometheus")
    state = await (await client.get("/api/governance/regression/state")).json()
    entry = next(s for s in state if s["metric"] == "contract_rate")
    assert entry["triggered"] is True and entry["last_triggered_at"]


async def test_kill_switch_alert_engages_kill_switch(client):
    """A firing KILL_SWITCH alert engages the global kill switch."""
    await client.post(HOOK, json=notification(alert("KILL_SWITCH", domain="CAPITAL", metric="roi_event")))
    state = await (await client.get("/api/governance/go-live/state")).json()
    assert state["kill_switch_engaged"] is True and state["source"] == "alertmanager"


async def test_replayed_notification_acts_once(client):
    """Alertmanager's re-sends of the same (fingerprint, startsAt) create no second action or audit entry."""
    payload = notification(alert())
    for _ in range(3):
        assert (await client.post(HOOK, json=payload)).status == 200
    last = await (await client.post(HOOK, json=payload)).json()
    assert last["duplicates"] == 1 and last["executed"] == []
    assert await count_rows(client, AlertDelivery) == 1
    trail = await (await client.get("/api/governance/audit", params={"kind": "enforcement"})).json()
    assert len(trail) == 1
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_webhook_alerts_total", status="firing", result="duplicate") == 3


async def test_new_firing_episode_acts_again(client):
    """A new startsAt for the same fingerprint is a new episode and acts (after a person re-enabled)."""
    await client.post(HOOK, json=notification(alert()))
    await client.post("/api/governance/regression/policies/upsert",
                      json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True})
    assert await engine_enabled(client, "WHOLESALE") is True
    await client.post(HOOK, json=notification(alert(starts="2026-11-23T12:00:00Z")))
    assert await engine_enabled(client, "WHOLESALE") is False


async def test_resolved_alert_never_acts_and_releases_nothing_by_default(client):
    """A resolved alert is recorded; the engine stays throttled until a person re-enables it."""
    await client.post(HOOK, json=notification(alert()))
    body = await (await client.post(HOOK, json=notification(alert(status="resolved"), status="resolved"))).json()
    assert body["executed"] == [] and body["released"] == [] and body["recorded"] == 1
    assert await engine_enabled(client, "WHOLESALE") is False
    # a resolved alert that never fired here executes nothing either
    await client.post(HOOK, json=notification(alert("KILL_SWITCH", status="resolved", fingerprint="ff"),
                                              status="resolved"))
    assert (await (await client.get("/api/governance/go-live/state")).json())["kill_switch_engaged"] is False


async def test_auto_release_throttle_when_configured_but_never_kill_switch(make_client):
    """With webhook_auto_release_throttle a resolved THROTTLE re-enables the engine; a KILL_SWITCH still waits."""
    client = await make_client(webhook_auto_release_throttle=True)
    await client.post(HOOK, json=notification(alert(), alert("KILL_SWITCH", domain="CAPITAL", fingerprint="k1")))
    body = await (await client.post(HOOK, json=notification(
        alert(status="resolved"), alert("KILL_SWITCH", domain="CAPITAL", fingerprint="k1", status="resolved"),
        status="resolved"))).json()
    assert body["released"] == [{"action": "RELEASE_THROTTLE", "engine": "WHOLESALE", "fingerprint": "a1b2c3d4"}]
    assert await engine_enabled(client, "WHOLESALE") is True
    assert (await (await client.get("/api/governance/go-live/state")).json())["kill_switch_engaged"] is True


async def test_unknown_action_is_recorded_with_a_warning_not_an_error(client, caplog):
    """An alert without a known action label answers 200 with a warning, is audited, and acts on nothing."""
    body = await (await client.post(HOOK, json=notification(alert("PAGE_SOMEONE"), alert("", fingerprint="b")))).json()
    assert len(body["warnings"]) == 2 and body["executed"] == []
    assert await engine_enabled(client, "WHOLESALE") is True
    assert "PAGE_SOMEONE" in caplog.text
    alerts = await (await client.get("/api/governance/audit", params={"kind": "alert"})).json()
    assert {a["action"] for a in alerts} == {"UNKNOWN"}


async def test_truncated_alerts_are_reported(client):
    """truncatedAlerts > 0 is logged and reported as a warning; the alerts present still act."""
    body = await (await client.post(HOOK, json=notification(alert(), truncatedAlerts=5))).json()
    assert "truncated 5" in body["warnings"][0] and body["executed"]


BAD = [
    ("version-3", lambda p: p.update(version="3"), "version"),
    ("no-alerts", lambda p: p.pop("alerts"), "alerts"),
    ("alert-bad-status", lambda p: p["alerts"][0].update(status="pending"), "alerts[0].status"),
    ("alert-no-fingerprint", lambda p: p["alerts"][0].pop("fingerprint"), "alerts[0].fingerprint"),
    ("alert-bad-startsAt", lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
    ("labels-not-strings", lambda p: p["alerts"][0].update(labels={"action": 1}), "alerts[0].labels.action"),
]


@pytest.mark.parametrize(("mutate", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_payload_is_400_naming_the_field(client, mutate, field):
    """A malformed payload or another version answers 400 naming the field, and nothing is done."""
    payload = copy.deepcopy(notification(alert()))
    mutate(payload)
    resp = await client.post(HOOK, json=payload)
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == field
    assert await count_rows(client, AlertDelivery) == 0 and await count_rows(client, AuditEvent) == 0


async def test_malformed_json_is_400(client):
    """Not JSON at all is a 400."""
    resp = await client.post(HOOK, data=b"{]", headers={"Content-Type": "application/json"})
    assert resp.status == 400


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong", 401), ("ing", 403), ("hook", 200)])
async def test_webhook_needs_the_webhook_scope(make_client, token, status):
    """With tokens configured the receiver takes only a webhook (or admin) bearer token."""
    client = await make_client(ingest_tokens=["ing"], webhook_tokens=["hook"])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.post(HOOK, json=notification(alert()), headers=headers)
    assert resp.status == status
    assert await count_rows(client, AlertDelivery) == (1 if status == 200 else 0)


class _FailingSessions:
    """A session factory whose database is gone."""

    def __call__(self) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))


async def test_storage_failure_is_5xx_so_alertmanager_retries(client, monkeypatch):
    """If the action cannot be stored the receiver answers 503, which Alertmanager retries."""
    monkeypatch.setattr(client.app[RECEIVER], "_sessions", _FailingSessions())
    resp = await client.post(HOOK, json=notification(alert()))
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "storage_unavailable"
