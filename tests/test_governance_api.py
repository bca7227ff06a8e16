"""The control plane and the weekly figures through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from conftest import count_rows, metric_samples, sample
from kpiguard.db.models import AuditEvent, RegressionPolicy, RiskLedger
from kpiguard.governance._refresh import Refresher
from kpiguard.keys import METRICS, SESSIONS
from test_tripwire_api import EVALUATE, UPSERT, reserve, send, successes

WEEKLY = "/api/governance/weekly"
CONTROL = "/api/governance/control-plane"
KILL = "/api/governance/go-live/kill-switch"
MON = datetime(2026, 11, 16, tzinfo=UTC)  # 2026-W47


async def _trip(client: TestClient, domain: str, metric: str) -> None:
    """Enable the policy, feed it a regression, and evaluate it until it has triggered."""
    await client.post(UPSERT, json={"domain": domain, "metric": metric, "enabled": True})
    if metric == "roi_event":
        rng = random.Random(7)
        values = [rng.gauss(500, 80) for _ in range(200)] + [rng.gauss(-300, 80) for _ in range(50)]
        await send(client, domain, metric, [v > 0 for v in values], values)
    else:
        await send(client, domain, metric, successes(200, 0.95) + successes(50, 0.2))
    body = await (await client.post(EVALUATE, json={"domain": domain, "metric": metric})).json()
    assert body["triggered"] is True


async def _re_enable(client: TestClient, domain: str, metric: str, fp: bool) -> None:
    resp = await client.post(UPSERT, json={"domain": domain, "metric": metric, "enabled": True, "changed_by": "bryan",
                                           "reason": "fixed", "false_positive": fp})
    assert resp.status == 200


async def _backdate(client: TestClient, when: dict[tuple[str, str | None], datetime]) -> None:
    """Move the audit entries (action, domain) to the given times, as if they had happened then."""
    async with client.app[SESSIONS]() as session, session.begin():
        rows = (await session.execute(select(AuditEvent).where(AuditEvent.kind.in_(("enforcement", "release")))))
        for row in rows.scalars().all():
            at = when[(row.action, row.domain)]
            await session.execute(update(AuditEvent).where(AuditEvent.id == row.id).values(created_at=at))


async def test_weekly_figures_of_a_history_built_through_the_api(client):
    """3 triggers (2 THROTTLE : 1 KILL_SWITCH), MTTR 2 h 30 min, 1 false positive of 3, in the week they fired."""
    await _trip(client, "WHOLESALE", "contract_rate")
    await _re_enable(client, "WHOLESALE", "contract_rate", fp=False)
    await _trip(client, "BUYER_MATCH", "match_success")
    await _re_enable(client, "BUYER_MATCH", "match_success", fp=True)
    await _trip(client, "CAPITAL", "roi_event")
    resp = await client.post(KILL, json={"engaged": False, "reason": "ROI model rolled back", "changed_by": "bryan"})
    assert resp.status == 200
    await _re_enable(client, "CAPITAL", "roi_event", fp=False)
    h = timedelta(hours=1)
    await _backdate(client, {
        ("THROTTLE", "WHOLESALE"): MON + 10 * h, ("RELEASE_THROTTLE", "WHOLESALE"): MON + 11 * h,
        ("THROTTLE", "BUYER_MATCH"): MON + 12 * h, ("RELEASE_THROTTLE", "BUYER_MATCH"): MON + 15 * h,
        ("KILL_SWITCH", "CAPITAL"): MON + 13 * h, ("RELEASE_KILL_SWITCH", None): MON + 16.5 * h,
        ("REARM", "CAPITAL"): MON + 17 * h,
    })
    resp = await client.get(WEEKLY, params={"week": "2026-W47"})
    assert resp.status == 200
    body = await resp.json()
    o = body["overall"]
    assert (body["week"], body["start"], body["end"]) == ("2026-W47", "2026-11-16T00:00:00Z", "2026-11-23T00:00:00Z")
    assert o["triggers"] == 3 and o["by_action"] == {"THROTTLE": 2, "KILL_SWITCH": 1} and o["ratio"] == "2:1"
    assert o["mttr_seconds"] == 2.5 * 3600
    assert (o["false_positives"], o["released"]) == (1, 3) and o["false_positive_ratio"] == pytest.approx(1 / 3)
    per = {p["policy"]: p for p in body["policies"]}
    assert per["CAPITAL.roi_event"]["mttr_seconds"] == 3.5 * 3600
    assert [r["code"] for r in per["BUYER_MATCH.match_success"]["recommendations"]] == ["raise_max_drop_fraction"]
    assert [r["code"] for r in body["recommendations"]] == ["too_many_triggers", "raise_max_drop_fraction"]
    assert len(body["triggers"]) == 3
    # nothing of it falls in the next week, the current one here (the history is backdated)
    other = await (await client.get(WEEKLY, params={"week": "2026-W48"})).json()
    assert other["overall"]["triggers"] == 0 and other["overall"]["mttr_seconds"] is None


async def test_control_plane_of_a_degraded_system(client):
    """Throttled engine, its denials today, the kill switch and the regression that engaged it, decided degraded."""
    await _trip(client, "WHOLESALE", "contract_rate")
    assert (await reserve(client, "WHOLESALE"))["reason"] == "policy_disabled"
    assert (await reserve(client, "BUYER_MATCH"))["ok"] is True
    await _trip(client, "CAPITAL", "roi_event")
    resp = await client.get(CONTROL)
    assert resp.status == 200
    body = await resp.json()
    golive = body["go_live"]
    assert golive["kill_switch_engaged"] is True and golive["reason"].startswith("Regression: CAPITAL.roi_event")
    cause = golive["cause"]
    assert (cause["domain"], cause["metric"]) == ("CAPITAL", "roi_event") and cause["drop_fraction"] > 1
    throttled = body["risk"]["throttled_engines"]
    assert [t["engine"] for t in throttled] == ["WHOLESALE"]
    assert throttled[0]["reason"].startswith("Regression tripwire: WHOLESALE.contract_rate drop=")
    denials = body["risk"]["denials_today"]
    assert (denials["checks"], denials["denied"], denials["policy_disabled"]) == (2, 1, 1)
    assert denials["by_engine"] == {"WHOLESALE": {"policy_disabled": 1}}
    triggered = {(s["domain"], s["metric"]): s for s in body["regressions"]["triggered"]}
    assert set(triggered) == {("WHOLESALE", "contract_rate"), ("CAPITAL", "roi_event")}
    assert triggered[("WHOLESALE", "contract_rate")]["last_triggered_at"] is not None
    assert body["weekly"]["triggers"] == 2 and body["weekly"]["ratio"] == "1:1"
    decisions = [d["code"] for d in body["decisions"]]
    assert decisions == ["degraded"]
    because = " ".join(body["decisions"][0]["because"])
    assert "kill switch engaged" in because and "WHOLESALE" in because and "CAPITAL.roi_event" in because


async def test_control_plane_after_a_good_week_and_the_kill_switch_by_hand(client):
    """Nothing triggered: a good week; a kill switch engaged by hand is degraded, named as by hand, not a trigger."""
    body = await (await client.get(CONTROL)).json()
    assert [d["code"] for d in body["decisions"]] == ["good_week"]
    assert body["go_live"]["cause"] is None and body["risk"]["throttled_engines"] == []
    await client.post(KILL, json={"engaged": True, "reason": "incident 42", "changed_by": "ana"})
    body = await (await client.get(CONTROL)).json()
    assert body["go_live"]["cause"]["domain"] is None and body["go_live"]["cause"]["source"] == "api"
    assert [d["code"] for d in body["decisions"]] == ["degraded"] and body["weekly"]["triggers"] == 0


async def test_weekly_gauges_follow_enforcement(client):
    """The current week's gauges appear on /metrics, and a refresh after an enforcement updates them."""
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_governance_triggers", action="THROTTLE") == 0
    assert sample(samples, "kpiguard_governance_mttr_seconds") is None
    await _trip(client, "WHOLESALE", "contract_rate")
    refresher = Refresher(client.app[SESSIONS], client.app[METRICS].governance)
    assert await refresher.refresh() is True
    assert await refresher.refresh() is False  # nothing new in the audit trail
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_governance_triggers", action="THROTTLE") == 1
    assert sample(samples, "kpiguard_governance_open_triggers") == 1
    await _re_enable(client, "WHOLESALE", "contract_rate", fp=True)
    assert await refresher.refresh() is True
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_governance_false_positive_ratio") == 1.0
    assert sample(samples, "kpiguard_governance_mttr_seconds") >= 0
    assert sample(samples, "kpiguard_governance_recommendation", domain="WHOLESALE", metric="contract_rate",
                  code="raise_max_drop_fraction") == 1


BAD = [
    ("week-no-W", WEEKLY, {"week": "2026-47"}, "week"),
    ("week-53-in-short-year", WEEKLY, {"week": "2025-W53"}, "week"),
    ("week-empty", WEEKLY, {"week": ""}, "week"),
    ("week-zero", WEEKLY, {"week": "2026-W00"}, "week"),
    ("weekly-unknown-parameter", WEEKLY, {"weeks": "2026-W47"}, "weeks"),
    ("control-plane-unknown-parameter", CONTROL, {"verbose": "1"}, "verbose"),
]


@pytest.mark.parametrize(("path", "params", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_governance_queries_are_refused(client, path, params, field):
    """A bad week or an unknown parameter is a 422 naming it; nothing is stored."""
    before = (await count_rows(client, AuditEvent), await count_rows(client, RegressionPolicy),
              await count_rows(client, RiskLedger))
    resp = await client.get(path, params=params)
    assert resp.status == 422
    err = (await resp.json())["error"]
    assert err["field"] == field and err["code"] == "validation_failed"
    after = (await count_rows(client, AuditEvent), await count_rows(client, RegressionPolicy),
             await count_rows(client, RiskLedger))
    assert after == before


async def test_governance_reads_need_a_token_when_tokens_are_set(make_client):
    """With tokens configured, the control plane and weekly figures need a token of any scope."""
    client = await make_client(ingest_tokens=["ing"], admin_tokens=["adm"])
    for path in (CONTROL, WEEKLY):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers={"Authorization": "Bearer nope"})).status == 401
        assert (await client.get(path, headers={"Authorization": "Bearer ing"})).status == 200
