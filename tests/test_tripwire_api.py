"""The Regression Tripwire through the HTTP API, as the seed describes it, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from conftest import count_rows, metric_samples, sample
from kpiguard.db.models import AuditEvent, KpiEvent, RegressionPolicy, RiskLedger
from kpiguard.enforcement import DatabaseGateSource, HttpGateSource, execution_class_middleware
from kpiguard.client._demo import outcomes as successes
from kpiguard.keys import SESSIONS

KPI = "/api/governance/regression/kpi"
BATCH = "/api/v1/kpi-events"
UPSERT = "/api/governance/regression/policies/upsert"
EVALUATE = "/api/governance/regression/evaluate"
STATE = "/api/governance/regression/state"
RESERVE = "/api/governance/risk/check-and-reserve"



async def send(client: TestClient, domain: str, metric: str, outcomes: list[bool],
               values: list[float] | None = None) -> None:
    """Ingest a sequence of events in one batch, in order."""
    events: list[dict[str, Any]] = [{"domain": domain, "metric": metric, "success": s} for s in outcomes]
    if values is not None:
        for e, v in zip(events, values, strict=True):
            e["value"] = v
    resp = await client.post(BATCH, json=events)
    assert resp.status == 201, await resp.text()


async def state_of(client: TestClient, domain: str, metric: str) -> dict[str, Any]:
    """The regression state entry for (domain, metric)."""
    resp = await client.get(STATE)
    assert resp.status == 200
    return next(s for s in await resp.json() if (s["domain"], s["metric"]) == (domain, metric))


async def reserve(client: TestClient, engine: str, amount: float = 10000) -> dict[str, Any]:
    """check-and-reserve with a form body, as the seed's curl does."""
    resp = await client.post(RESERVE, data={"engine": engine, "amount": str(amount)})
    assert resp.status == 200
    return await resp.json()


async def test_seed_testing_flow_step_by_step_with_form_bodies(client):
    """The seed's seven steps: no trigger on the baseline, trigger at drop 0.789, risk guard denies, re-enable allows."""
    # 1. 200 events at 95% success, one POST each
    for ok in successes(200, 0.95):
        resp = await client.post(KPI, data={"domain": "WHOLESALE", "metric": "contract_rate",
                                            "success": "true" if ok else "false", "actor": "system"})
        assert resp.status == 201
    # 2. enable the policy
    resp = await client.post(UPSERT, data={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": "true"})
    assert resp.status == 200
    # 3. evaluate: the baseline is good
    resp = await client.post(EVALUATE, data={"domain": "WHOLESALE", "metric": "contract_rate", "actor": "bryan"})
    assert resp.status == 200
    body = await resp.json()
    assert body["triggered"] is False
    # 4. 50 events at 20% success
    for ok in successes(50, 0.20):
        resp = await client.post(KPI, data={"domain": "WHOLESALE", "metric": "contract_rate",
                                            "success": "1" if ok else "0"})
        assert resp.status == 201
    # 5. evaluate again
    resp = await client.post(EVALUATE, data={"domain": "WHOLESALE", "metric": "contract_rate", "actor": "bryan"})
    body = await resp.json()
    assert body["triggered"] is True
    assert body["drop_fraction"] == 0.789
    assert body["baseline"] == pytest.approx(0.95) and body["current"] == pytest.approx(0.20)
    assert body["note"] == "TRIGGERED drop=0.789 action=THROTTLE"
    assert body["last_triggered_at"] is not None
    policies = {p["engine"]: p for p in await (await client.get("/api/governance/risk/policies")).json()}
    assert policies["WHOLESALE"]["enabled"] is False
    assert policies["WHOLESALE"]["reason"].startswith("Regression tripwire: WHOLESALE.contract_rate drop=")
    # 6. the risk guard blocks
    check = await reserve(client, "WHOLESALE")
    assert check["ok"] is False and check["reason"] == "policy_disabled"
    # 7. fix and re-enable
    resp = await client.post(UPSERT, data={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": "true"})
    assert resp.status == 200
    assert (await resp.json())["released"] == [{"action": "RELEASE_THROTTLE", "engine": "WHOLESALE"}]
    check = await reserve(client, "WHOLESALE")
    assert check["ok"] is True and check["reason"] == "ok"
    ledger = await (await client.get("/api/governance/risk/ledger/today")).json()
    assert ledger["by_engine"]["WHOLESALE"] == {"policy_disabled": 1, "ok": 1}
    assert ledger["by_reason"] == {"policy_disabled": 1, "ok": 1}


async def test_seed_json_upsert_and_state_shape(client):
    """The seed's JSON upsert works; with the plain rule 0.95 -> 0.75 reads as the seed's state example."""
    resp = await client.post(UPSERT, json={
        "domain": "WHOLESALE", "metric": "contract_rate", "window_events": 50, "baseline_events": 200,
        "min_events_to_enforce": 50, "max_drop_fraction": 0.20, "action": "THROTTLE", "enabled": True,
        "changed_by": "bryan",
    })
    assert resp.status == 200
    # 0.75 needs an even window: 75 of 100. The evidence guard would rightly hold a 21% drop against a
    # 20% threshold back, so this shows the seed's plain rule.
    resp = await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "window_events": 100,
                                           "guard": "none", "changed_by": "bryan"})
    assert resp.status == 200
    await send(client, "WHOLESALE", "contract_rate", successes(200, 0.95) + successes(100, 0.75))
    await client.post(EVALUATE, data={"domain": "WHOLESALE", "metric": "contract_rate"})
    entry = await state_of(client, "WHOLESALE", "contract_rate")
    assert {"domain", "metric", "triggered", "baseline", "current", "drop_fraction", "last_triggered_at",
            "note"} <= set(entry)
    assert entry["drop_fraction"] == 0.211
    assert entry["triggered"] is True and entry["note"] == "TRIGGERED drop=0.211 action=THROTTLE"


async def test_scenario_1_offer_accept_drift_throttles(client):
    """Scenario 1: 95% -> 60% acceptance triggers THROTTLE of WHOLESALE."""
    await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True})
    await send(client, "WHOLESALE", "contract_rate", successes(200, 0.95) + successes(50, 0.60))
    body = await (await client.post(EVALUATE, json={"domain": "WHOLESALE", "metric": "contract_rate"})).json()
    assert body["triggered"] is True and body["drop_fraction"] == pytest.approx(0.368, abs=1e-3)
    assert (await reserve(client, "WHOLESALE"))["reason"] == "policy_disabled"


async def test_scenario_2_buyer_match_below_threshold_does_not_trigger(client):
    """Scenario 2: 85% -> 70% is an 18% drop, under the 25% threshold: no trigger, engine keeps working."""
    await client.post(UPSERT, json={"domain": "BUYER_MATCH", "metric": "match_success", "enabled": True})
    await send(client, "BUYER_MATCH", "match_success", successes(200, 0.85) + successes(50, 0.70))
    body = await (await client.post(EVALUATE, json={"domain": "BUYER_MATCH", "metric": "match_success"})).json()
    assert body["triggered"] is False
    assert body["drop_fraction"] == pytest.approx(0.176, abs=1e-3)
    assert (await reserve(client, "BUYER_MATCH"))["ok"] is True


async def _guarded_app(aiohttp_client: Any, source: Any) -> TestClient:
    async def deal(request: web.Request) -> web.Response:
        return web.json_response({"booked": True})

    app = web.Application(middlewares=[execution_class_middleware(
        source, routes={"book": ("PROD_EXEC", "CAPITAL")})])
    app.router.add_post("/deal", deal, name="book")
    app.router.add_get("/report", deal)
    return await aiohttp_client(app)


async def test_scenario_3_roi_flip_engages_kill_switch_and_everything_obeys(client, aiohttp_client):
    """Scenario 3: mean ROI +500 -> -300 engages the kill switch; risk guard, gate and guarded apps refuse PROD_EXEC."""
    rng = random.Random(3)
    await client.post(UPSERT, json={"domain": "CAPITAL", "metric": "roi_event", "enabled": True})
    values = [rng.gauss(500, 80) for _ in range(200)] + [rng.gauss(-300, 80) for _ in range(50)]
    await send(client, "CAPITAL", "roi_event", [v > 0 for v in values], values)
    body = await (await client.post(EVALUATE, json={"domain": "CAPITAL", "metric": "roi_event"})).json()
    assert body["triggered"] is True and body["drop_fraction"] == pytest.approx(1.6, abs=0.05)
    assert body["note"].endswith("action=KILL_SWITCH")
    golive = await (await client.get("/api/governance/go-live/state")).json()
    assert golive["kill_switch_engaged"] is True and golive["reason"].startswith("Regression: CAPITAL.roi_event drop=")
    assert (await reserve(client, "WHOLESALE"))["reason"] == "kill_switch_engaged"
    gate = await client.get("/api/governance/gate", params={"engine": "WHOLESALE", "class": "PROD_EXEC"})
    assert gate.status == 403 and (await gate.json())["error"]["code"] == "kill_switch_engaged"
    assert (await client.get("/api/governance/gate", params={"class": "BATCH"})).status == 204
    # a guarded application reading kpiguard's database, and one asking its gate over HTTP
    for source in (DatabaseGateSource(client.app[SESSIONS]),
                   HttpGateSource(str(client.make_url("")), ttl=0)):
        guarded = await _guarded_app(aiohttp_client, source)
        denied = await guarded.post("/deal")
        assert denied.status == 403 and (await denied.json())["error"]["code"] == "kill_switch_engaged"
        by_header = await guarded.get("/report", headers={"X-Execution-Class": "PROD_EXEC"})
        assert by_header.status == 403
        assert (await guarded.get("/report")).status == 200
        if isinstance(source, HttpGateSource):
            await source.close()
    samples = await metric_samples(client)
    assert sample(samples, "kpiguard_kill_switch_engaged") == 1
    # whichever evaluation (after ingest, or the call above) crossed first acted, and only once
    assert sum(sample(samples, "kpiguard_enforcement_actions_total", action="KILL_SWITCH", source=src) or 0
               for src in ("api", "evaluator")) == 1
    # only a person releases it
    resp = await client.post("/api/governance/go-live/kill-switch", json={"engaged": False})
    assert resp.status == 422 and (await resp.json())["error"]["field"] == "reason"
    resp = await client.post("/api/governance/go-live/kill-switch",
                             json={"engaged": False, "reason": "ROI model rolled back", "changed_by": "bryan"})
    assert resp.status == 200 and (await resp.json())["kill_switch_engaged"] is False
    assert (await reserve(client, "CAPITAL"))["ok"] is True


async def test_triggered_policy_acts_once_and_is_audited_once(client):
    """Re-evaluating a policy that stays triggered neither acts nor audits again."""
    await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True,
                                    "changed_by": "bryan", "reason": "go"})
    await send(client, "WHOLESALE", "contract_rate", successes(200, 0.95) + successes(50, 0.2))
    for _ in range(3):
        assert (await (await client.post(EVALUATE, json={"domain": "WHOLESALE", "metric": "contract_rate"}))
                .json())["triggered"] is True
    trail = await (await client.get("/api/governance/audit", params={"kind": "enforcement"})).json()
    assert len(trail) == 1
    entry = trail[0]
    assert entry["action"] == "THROTTLE" and entry["engine"] == "WHOLESALE"
    assert entry["before"]["enabled"] is True and entry["after"]["enabled"] is False
    assert entry["source"] in ("evaluator", "api") and entry["detail"]["changed"] is True
    changes = await (await client.get("/api/governance/audit", params={"kind": "policy_change"})).json()
    assert [c["actor"] for c in changes] == ["bryan"]
    assert changes[0]["before"]["enabled"] is False and changes[0]["after"]["enabled"] is True


async def test_concurrent_evaluations_act_once(client):
    """Ten evaluations racing on a triggered policy execute the action exactly once."""
    await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True})
    await client.post(BATCH, json=[{"domain": "WHOLESALE", "metric": "contract_rate", "success": s}
                                   for s in successes(200, 0.95) + successes(50, 0.2)])
    resps = await asyncio.gather(*[
        client.post(EVALUATE, json={"domain": "WHOLESALE", "metric": "contract_rate"}) for _ in range(10)
    ])
    assert all(r.status == 200 for r in resps)
    assert await count_rows(client, AuditEvent) == 2  # the policy change and one enforcement


@pytest.mark.parametrize(("guard", "bad", "fires"), [
    ("evidence", 0.20, True),  # the testing flow: a sure drop far past 20%
    ("evidence", 0.75, False),  # 21%: past the threshold, not surely: the guard holds it
    ("none", 0.75, True),  # the seed's plain rule fires on it
])
async def test_firing_gauge_is_the_evaluators_verdict(client, guard, bad, fires):
    """kpiguard_regression_firing (what the guarded alert reads) is 1 exactly when the evaluation triggers, armed."""
    await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True,
                                    "guard": guard})
    await send(client, "WHOLESALE", "contract_rate", successes(200, 0.95) + successes(50, bad))
    body = await (await client.post(EVALUATE, json={"domain": "WHOLESALE", "metric": "contract_rate"})).json()
    assert body["triggered"] is fires
    labels = {"domain": "WHOLESALE", "metric": "contract_rate"}
    assert sample(await metric_samples(client), "kpiguard_regression_firing", **labels) == (1 if fires else 0)
    if fires:  # re-enabled: re-arming on the same windows, nothing fires until new events
        await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True})
        await client.post(EVALUATE, json={"domain": "WHOLESALE", "metric": "contract_rate"})
        assert sample(await metric_samples(client), "kpiguard_regression_firing", **labels) == 0


async def test_dry_run_policy_reports_but_never_enforces(client):
    """A dry_run policy shows triggered in its state and note, and the engine stays enabled."""
    await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True,
                                    "dry_run": True})
    await send(client, "WHOLESALE", "contract_rate", successes(200, 0.95) + successes(50, 0.2))
    body = await (await client.post(EVALUATE, json={"domain": "WHOLESALE", "metric": "contract_rate"})).json()
    assert body["triggered"] is True and "dry_run" in body["note"] and body["enforced"] is None
    assert (await reserve(client, "WHOLESALE"))["ok"] is True
    assert (await (await client.get("/api/governance/audit", params={"kind": "enforcement"})).json()) == []


async def test_re_enable_rearms_only_after_new_events(client):
    """After a re-enable the same bad events do not fire again; min_events_to_enforce new bad ones do."""
    await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True})
    await send(client, "WHOLESALE", "contract_rate", successes(200, 0.95) + successes(50, 0.2))
    await client.post(EVALUATE, json={"domain": "WHOLESALE", "metric": "contract_rate"})
    resp = await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True,
                                           "changed_by": "bryan", "reason": "false alarm", "false_positive": True})
    assert (await resp.json())["released"]
    body = await (await client.post(EVALUATE, json={"domain": "WHOLESALE", "metric": "contract_rate"})).json()
    assert body["triggered"] is False and body["note"].startswith("REARMING 0/50")
    assert (await reserve(client, "WHOLESALE"))["ok"] is True
    await send(client, "WHOLESALE", "contract_rate", successes(49, 0.2))
    body = await (await client.post(EVALUATE, json={"domain": "WHOLESALE", "metric": "contract_rate"})).json()
    assert body["triggered"] is False and body["note"].startswith("REARMING 49/50")
    await send(client, "WHOLESALE", "contract_rate", successes(1, 0.0))
    body = await (await client.post(EVALUATE, json={"domain": "WHOLESALE", "metric": "contract_rate"})).json()
    assert body["triggered"] is True
    release = await (await client.get("/api/governance/audit", params={"kind": "release"})).json()
    assert release[-1]["detail"]["false_positive"] is True and release[-1]["actor"] == "bryan"


async def test_ingest_triggers_evaluation_without_a_manual_call(client):
    """With the policy enabled, ingest alone throttles the engine: enforcement never waits for a Friday."""
    await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True})
    await send(client, "WHOLESALE", "contract_rate", successes(200, 0.95) + successes(50, 0.2))
    for _ in range(100):
        if (await reserve(client, "WHOLESALE"))["reason"] == "policy_disabled":
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the engine was not throttled after ingest")
    trail = await (await client.get("/api/governance/audit", params={"kind": "enforcement"})).json()
    assert trail[0]["source"] == "evaluator"


async def test_evaluate_all_enabled(client):
    """An evaluate with no domain and metric evaluates every enabled policy (the seed's four start disabled)."""
    body = await (await client.post(EVALUATE, data={})).json()
    assert body == []
    await client.post(UPSERT, json={"domain": "BUYER_MATCH", "metric": "match_success", "enabled": True})
    body = await (await client.post(EVALUATE)).json()
    assert [(b["domain"], b["metric"]) for b in body] == [("BUYER_MATCH", "match_success")]
    assert body[0]["note"].startswith("INSUFFICIENT_DATA")


async def test_seed_policies_exist_disabled(client):
    """The first migration holds the seed's four policies, all disabled, with their thresholds and actions."""
    body = await (await client.get("/api/governance/regression/policies")).json()
    table = {(p["domain"], p["metric"]): (p["max_drop_fraction"], p["action"], p["aggregation"], p["enabled"])
             for p in body}
    assert table == {
        ("WHOLESALE", "contract_rate"): (0.20, "THROTTLE", "success_rate", False),
        ("WHOLESALE", "offer_accept_rate"): (0.15, "THROTTLE", "success_rate", False),
        ("BUYER_MATCH", "match_success"): (0.25, "THROTTLE", "success_rate", False),
        ("CAPITAL", "roi_event"): (0.30, "KILL_SWITCH", "mean_value", False),
    }
    assert all(p["window_events"] == 50 and p["baseline_events"] == 200 for p in body)
    engines = {p["engine"]: p["enabled"] for p in await (await client.get("/api/governance/risk/policies")).json()}
    assert engines == {"WHOLESALE": True, "BUYER_MATCH": True, "CAPITAL": True}


async def test_partial_upsert_merges_and_new_policy_takes_defaults(client):
    """A partial upsert keeps stored fields; a new policy gets the seed's defaults."""
    await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "max_drop_fraction": 0.3})
    resp = await client.post(UPSERT, json={"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True,
                                           "changed_by": "bryan", "reason": "Retrained offer-accept model v2.1"})
    policy = (await resp.json())["policy"]
    assert policy["max_drop_fraction"] == 0.3 and policy["enabled"] is True
    assert policy["reason"] == "Retrained offer-accept model v2.1"
    resp = await client.post(UPSERT, json={"domain": "NEW", "metric": "thing"})
    assert resp.status == 201
    policy = (await resp.json())["policy"]
    assert (policy["window_events"], policy["baseline_events"], policy["min_events_to_enforce"],
            policy["max_drop_fraction"], policy["action"]) == (50, 200, 50, 0.2, "THROTTLE")


async def test_risk_limits_and_unknown_engine(client):
    """Limits deny with limit_exceeded, unknown engines with unknown_engine; every check is in the ledger."""
    resp = await client.post("/api/governance/risk/policies/upsert",
                             json={"engine": "WHOLESALE", "max_single_amount": 5000, "daily_limit": 8000})
    assert resp.status == 200
    assert (await reserve(client, "WHOLESALE", 6000))["reason"] == "limit_exceeded"
    assert (await reserve(client, "WHOLESALE", 5000))["ok"] is True
    second = await reserve(client, "WHOLESALE", 4000)
    assert second["reason"] == "limit_exceeded" and second["reserved_today"] == 5000
    assert (await reserve(client, "NOPE"))["reason"] == "unknown_engine"
    assert await count_rows(client, RiskLedger) == 4


async def test_concurrent_reserves_never_pass_the_daily_cap(client):
    """Forty concurrent reservations of 100 under a cap of 1,000: exactly ten succeed."""
    await client.post("/api/governance/risk/policies/upsert", json={"engine": "WHOLESALE", "daily_limit": 1000})
    resps = await asyncio.gather(*[
        client.post(RESERVE, json={"engine": "WHOLESALE", "amount": 100}) for _ in range(40)
    ])
    answers = [await r.json() for r in resps]
    assert sum(a["ok"] for a in answers) == 10
    assert max(a["reserved_today"] for a in answers) == 1000


def _bad(path: str, body: Any, status: int, field: str | None, *, form: bool = False) -> tuple:
    return (path, body, form, status, field)


BAD = [
    ("upsert-missing-metric", _bad(UPSERT, {"domain": "W"}, 422, "metric")),
    ("upsert-bad-action", _bad(UPSERT, {"domain": "W", "metric": "m", "action": "EXPLODE"}, 422, "action")),
    ("upsert-bad-aggregation", _bad(UPSERT, {"domain": "W", "metric": "m", "aggregation": "median"}, 422,
                                    "aggregation")),
    ("upsert-bad-guard", _bad(UPSERT, {"domain": "W", "metric": "m", "guard": "vibes"}, 422, "guard")),
    ("upsert-drop-one", _bad(UPSERT, {"domain": "W", "metric": "m", "max_drop_fraction": 1}, 422,
                             "max_drop_fraction")),
    ("upsert-zero-window", _bad(UPSERT, {"domain": "W", "metric": "m", "window_events": 0}, 422, "window_events")),
    ("upsert-min-over-window", _bad(UPSERT, {"domain": "W", "metric": "m", "window_events": 10}, 422,
                                    "min_events_to_enforce")),
    ("upsert-wrong-type", _bad(UPSERT, {"domain": "W", "metric": "m", "enabled": "perhaps"}, 422, "enabled")),
    ("upsert-unknown-field", _bad(UPSERT, {"domain": "W", "metric": "m", "colour": 1}, 422, "colour")),
    ("upsert-form-bad-number", _bad(UPSERT, {"domain": "W", "metric": "m", "window_events": "many"}, 422,
                                    "window_events", form=True)),
    ("evaluate-domain-only", _bad(EVALUATE, {"domain": "WHOLESALE"}, 422, "metric")),
    ("evaluate-unknown-policy", _bad(EVALUATE, {"domain": "NOPE", "metric": "x"}, 404, "domain,metric")),
    ("reserve-negative", _bad(RESERVE, {"engine": "WHOLESALE", "amount": -5}, 422, "amount")),
    ("reserve-missing-amount", _bad(RESERVE, {"engine": "WHOLESALE"}, 422, "amount")),
    ("reserve-bad-engine", _bad(RESERVE, {"engine": "no such", "amount": 5}, 422, "engine")),
    ("killswitch-not-bool", _bad("/api/governance/go-live/kill-switch", {"engaged": "x", "reason": "r"}, 422,
                                 "engaged")),
    ("risk-upsert-bad-limit", _bad("/api/governance/risk/policies/upsert", {"engine": "W", "daily_limit": 0}, 422,
                                   "daily_limit")),
]


@pytest.mark.parametrize(("path", "body", "form", "status", "field"), [b[1] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_governance_input_is_refused_and_changes_nothing(client, path, body, form, status, field):
    """Every governance endpoint refuses bad input with its 4xx naming the field, and stores nothing."""
    before = (await count_rows(client, RegressionPolicy), await count_rows(client, AuditEvent),
              await count_rows(client, RiskLedger))
    resp = await (client.post(path, data=body) if form else client.post(path, json=body))
    assert resp.status == status
    err = (await resp.json())["error"]
    assert err["field"] == field
    if field in ("action", "aggregation", "guard"):
        assert err["choices"]
    after = (await count_rows(client, RegressionPolicy), await count_rows(client, AuditEvent),
             await count_rows(client, RiskLedger))
    assert after == before


@pytest.mark.parametrize("path", [UPSERT, EVALUATE, RESERVE])
async def test_malformed_governance_bodies(client, path):
    """Malformed JSON is a 400 and a wrong content type a 415 on every governance POST."""
    resp = await client.post(path, data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    resp = await client.post(path, data=b"x", headers={"Content-Type": "text/csv"})
    assert resp.status == 415


async def test_admin_scope_guards_policy_changes(make_client):
    """With tokens, policy upserts and the kill switch need the admin scope; reads need any token."""
    client = await make_client(ingest_tokens=["ing"], admin_tokens=["adm"])
    body = {"domain": "WHOLESALE", "metric": "contract_rate", "enabled": True}
    assert (await client.post(UPSERT, json=body, headers={"Authorization": "Bearer ing"})).status == 403
    assert (await client.post(UPSERT, json=body, headers={"Authorization": "Bearer adm"})).status == 200
    assert (await client.get(STATE)).status == 401
    assert (await client.get(STATE, headers={"Authorization": "Bearer ing"})).status == 200
    assert await count_rows(client, KpiEvent) == 0


@pytest.mark.parametrize("parts", [3])
async def test_evaluate_all_in_parallel_reads_answers_as_one_read(make_client, parts):
    """Evaluate-all read in several statements at once answers exactly as one statement, in (domain, metric) order."""
    pairs = [("zeta", "m"), ("Alpha", "m"), ("Alpha", "b_2"), ("MID", "x"), ("beta", "n"), ("Q", "q"), ("Q", "Q")]
    one = await make_client(evaluation_read_parts=1)
    for i, (domain, metric) in enumerate(pairs):
        await one.post(UPSERT, json={"domain": domain, "metric": metric, "enabled": True, "guard": "none",
                                     "window_events": 10, "baseline_events": 20, "min_events_to_enforce": 10})
        if i != 3:  # MID has no events: INSUFFICIENT_DATA
            await send(one, domain, metric, successes(20, 0.9 - 0.1 * (i % 3)) + successes(10, 0.9 - 0.05 * i))

    def answers(body: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(b["domain"], b["metric"], b["triggered"], b["baseline"], b["current"], b["drop_fraction"], b["note"])
                for b in body]

    await one.post(EVALUATE)  # the first round creates the states (each policy alone)
    single = answers(await (await one.post(EVALUATE)).json())
    many = answers(await (await (await make_client(evaluation_read_parts=parts)).post(EVALUATE)).json())
    assert [(d, m) for d, m, *_ in single] == sorted(pairs)
    assert many == single
    assert any(t for _, _, t, *_ in single) and not all(t for _, _, t, *_ in single)
