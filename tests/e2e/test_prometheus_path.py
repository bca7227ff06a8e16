"""Issue 5 end to end: kpiguard's count windows → Prometheus → Alertmanager → kpiguard's webhook, real binaries.

kpiguard runs with native enforcement off, so every THROTTLE and KILL_SWITCH here was executed by the
webhook after the repo's own rules fired and the repo's own Alertmanager routes delivered them.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import statistics
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pytest

from _proc import REPO
from e2e._stack import Stack, http, wait_for
from kpiguard.client._demo import outcomes as successes

pytestmark = pytest.mark.e2e

ALERT = "KpiguardCountWindowRegression"
WHOLESALE = ("WHOLESALE", "contract_rate")
CAPITAL = ("CAPITAL", "roi_event")
# Worst case of the loop is a scrape, an evaluation and a group interval (about 2.2 s); the rest is slack
# for a loaded machine.
LOOP_TIMEOUT = 20.0
TRIALS = 6
FIGURES_FILE = REPO / "benchmarks" / ".out" / "prometheus_path.json"



def ingest(stack: Stack, domain: str, metric: str, outcomes: list[bool], values: list[float] | None = None) -> float:
    """Ingest the events in one batch, in order; the monotonic time its 201 arrived."""
    events: list[dict[str, Any]] = [{"domain": domain, "metric": metric, "success": ok} for ok in outcomes]
    for event, value in zip(events, values or [], strict=False):
        event["value"] = value
    status, body = stack.api("POST", "/api/v1/kpi-events", events)
    at = time.monotonic()
    assert status == 201, body
    return at


def enable(stack: Stack, domain: str, metric: str) -> None:
    """Enable the policy through the API, which also re-enables what its tripwire stopped."""
    status, body = stack.api("POST", "/api/governance/regression/policies/upsert",
                             {"domain": domain, "metric": metric, "enabled": True, "changed_by": "e2e"})
    assert status in (200, 201), body


def engine_enabled(stack: Stack, engine: str) -> bool:
    """Whether the engine's risk policy is enabled."""
    return next(p["enabled"] for p in stack.get("/api/governance/risk/policies") if p["engine"] == engine)


def kill_switch_engaged(stack: Stack) -> bool:
    """Whether the global kill switch is engaged."""
    return bool(stack.get("/api/governance/go-live/state")["kill_switch_engaged"])


def audit(stack: Stack, kind: str, **match: str) -> list[dict[str, Any]]:
    """Audit entries of ``kind``, newest first, whose fields equal ``match``."""
    entries = stack.get(f"/api/governance/audit?kind={kind}&limit=1000")
    return [e for e in entries if all(e.get(k) == v for k, v in match.items())]


def alert_active(stack: Stack, domain: str, metric: str) -> bool:
    """Whether Prometheus or Alertmanager still holds the policy's count-window alert as active."""
    if stack.prometheus_alerts(alertname=ALERT, domain=domain, metric=metric):
        return True
    query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in
                                    (("alertname", ALERT), ("domain", domain), ("metric", metric))])
    _, alerts = http("GET", f"{stack.alertmanager}/api/v2/alerts?{query}")
    return bool(alerts)


def recover(stack: Stack, domain: str, metric: str) -> None:
    """Ingest 200 good events and wait until the alert is gone from Prometheus and Alertmanager.

    Alertmanager must have seen the resolution: a new firing that overlaps a still-active alert is merged
    into it and keeps the old startsAt, which kpiguard rightly treats as a re-send.
    """
    ingest(stack, domain, metric, successes(200, 0.95))
    wait_for(lambda: not alert_active(stack, domain, metric), timeout=LOOP_TIMEOUT,
             what=f"the {domain}.{metric} alert to resolve", interval=0.05)


@dataclass(frozen=True)
class Episode:
    """One degradation and its enforcement through the loop."""

    degraded_at: float  # the monotonic time of the last degrading event's 201
    enforced_at: float  # when kpiguard's API first showed the action
    entry: dict[str, Any]  # the enforcement audit entry

    @property
    def loop_seconds(self) -> float:
        """From the last degrading event's 201 to the action visible in kpiguard's API."""
        return self.enforced_at - self.degraded_at


def throttle_episode(stack: Stack, phase: float = 0.0) -> Episode:
    """The seed's degradation of WHOLESALE.contract_rate, 200 events at 95% then 50 at 20%, until throttled.

    ``phase``: seconds to wait between the recovery and the degradation.
    """
    enable(stack, *WHOLESALE)
    recover(stack, *WHOLESALE)
    assert engine_enabled(stack, "WHOLESALE")
    time.sleep(phase)
    before = {e["id"] for e in audit(stack, "enforcement")}
    degraded = ingest(stack, *WHOLESALE, successes(50, 0.20))
    wait_for(lambda: not engine_enabled(stack, "WHOLESALE"), timeout=LOOP_TIMEOUT, what="WHOLESALE throttled")
    enforced = time.monotonic()
    (entry,) = [e for e in audit(stack, "enforcement", action="THROTTLE", engine="WHOLESALE")
                if e["id"] not in before]
    return Episode(degraded, enforced, entry)


def assert_from_alertmanager(entry: dict[str, Any], stack: Stack, domain: str, metric: str) -> None:
    """The audit entry names the webhook as source and carries the alert's fingerprint and generatorURL."""
    assert entry["source"] == "alertmanager" and entry["actor"] == "alertmanager"
    assert (entry["domain"], entry["metric"]) == (domain, metric)
    detail = entry["detail"]
    assert detail["alertname"] == ALERT and detail["receiver"] == "kpiguard"
    assert len(detail["fingerprint"]) == 16 and int(detail["fingerprint"], 16) >= 0
    # the test's Prometheus evaluated the rule: its external URL is that Prometheus's address
    assert detail["generatorURL"].startswith(stack.prometheus + "/graph?g0.expr=")
    assert "kpiguard_regression_drop_ratio" in detail["generatorURL"]


def test_seed_degradation_throttles_through_the_loop(stack: Stack) -> None:
    """200 events at 95% then 50 at 20% disable WHOLESALE via Prometheus → Alertmanager → webhook, audited as such."""
    episode = throttle_episode(stack)
    assert_from_alertmanager(episode.entry, stack, *WHOLESALE)
    assert episode.entry["reason"].startswith("Alertmanager: WHOLESALE.contract_rate success ratio dropped")
    # the native evaluator saw the same trigger but, switched off, did nothing itself
    assert audit(stack, "enforcement", source="evaluator") == []
    status, check = stack.api("POST", "/api/governance/risk/check-and-reserve", {"engine": "WHOLESALE", "amount": 10})
    assert status == 200 and check["ok"] is False and check["reason"] == "policy_disabled"
    stack.figures["first_throttle_loop_seconds"] = round(episode.loop_seconds, 3)
    print(f"\nfirst throttle: {episode.loop_seconds:.3f} s from the last degrading event's 201")


def test_scenario_3_engages_the_kill_switch_through_the_loop(stack: Stack) -> None:
    """Mean ROI +500 → −300 engages the kill switch via the webhook, audited with fingerprint and generatorURL."""
    enable(stack, *CAPITAL)
    rng = random.Random(3)
    values = [rng.gauss(500, 80) for _ in range(200)]
    ingest(stack, *CAPITAL, [v > 0 for v in values], values)
    assert not kill_switch_engaged(stack)
    before = {e["id"] for e in audit(stack, "enforcement")}
    values = [rng.gauss(-300, 80) for _ in range(50)]
    degraded = ingest(stack, *CAPITAL, [v > 0 for v in values], values)
    try:
        wait_for(lambda: kill_switch_engaged(stack), timeout=LOOP_TIMEOUT, what="the kill switch")
        loop = time.monotonic() - degraded
        state = stack.get("/api/governance/go-live/state")
        assert state["source"] == "alertmanager"
        (entry,) = [e for e in audit(stack, "enforcement", action="KILL_SWITCH") if e["id"] not in before]
        assert_from_alertmanager(entry, stack, *CAPITAL)
        assert "CAPITAL.roi_event mean value dropped" in entry["reason"]
        assert stack.api("GET", "/api/governance/gate?engine=WHOLESALE")[0] == 403
        stack.figures["kill_switch_loop_seconds"] = round(loop, 3)
        print(f"\nkill switch: {loop:.3f} s from the last degrading event's 201")
    finally:
        # a person releases it, so that the other tests start from a running system
        status, body = stack.api("POST", "/api/governance/go-live/kill-switch",
                                 {"engaged": False, "reason": "e2e: scenario 3 done", "changed_by": "e2e"})
        assert status == 200, body


def test_resolved_notification_releases_nothing(stack: Stack) -> None:
    """When the count window recovers, the resolution is recorded and the engine stays throttled."""
    episode = throttle_episode(stack)
    fired = {k: episode.entry["detail"][k] for k in ("fingerprint", "startsAt")}
    ingest(stack, *WHOLESALE, successes(200, 0.95))

    def resolved() -> list[dict[str, Any]]:
        return [e for e in audit(stack, "alert", action="RESOLVED_THROTTLE")
                if {k: e["detail"][k] for k in fired} == fired]

    (entry,) = wait_for(resolved, timeout=LOOP_TIMEOUT, what="the resolved notification", interval=0.05)
    assert entry["source"] == "alertmanager" and (entry["domain"], entry["metric"]) == WHOLESALE
    assert not engine_enabled(stack, "WHOLESALE")
    assert [e for e in audit(stack, "release") if e["engine"] == "WHOLESALE" and e["id"] > episode.entry["id"]] == []
    assert stack.metric("kpiguard_webhook_alerts_total", status="resolved", result="recorded") >= 1


def test_replayed_webhook_acts_once(stack: Stack) -> None:
    """Alertmanager's repeat_interval re-sends and a manual re-POST of the same alert add no second action."""
    episode = throttle_episode(stack)
    fingerprint = episode.entry["detail"]["fingerprint"]
    dupes = stack.metric("kpiguard_webhook_alerts_total", status="firing", result="duplicate")
    # repeat_interval is 1 s in the test config: Alertmanager itself re-sends the still-firing group
    wait_for(lambda: stack.metric("kpiguard_webhook_alerts_total", status="firing", result="duplicate") > dupes,
             timeout=LOOP_TIMEOUT, what="Alertmanager's re-send", interval=0.05)
    # the notification exactly as Alertmanager sent it (the trivial peer got the same alert), posted again
    payload = next(a.payload for a in stack.trivial.notifications() if a.at > episode.degraded_at
                   and any(x["fingerprint"] == fingerprint and x["status"] == "firing" for x in a.payload["alerts"]))
    before = stack.metric("kpiguard_webhook_alerts_total", status="firing", result="duplicate")
    status, body = stack.api("POST", "/api/v1/alertmanager/webhook", payload, token=stack.webhook_token)
    assert status == 200, body
    assert body["duplicates"] == 1 and body["executed"] == []
    assert stack.metric("kpiguard_webhook_alerts_total", status="firing", result="duplicate") >= before + 1
    same = [e for e in audit(stack, "enforcement", action="THROTTLE") if e["detail"]["fingerprint"] == fingerprint
            and e["detail"]["startsAt"] == episode.entry["detail"]["startsAt"]]
    assert [e["id"] for e in same] == [episode.entry["id"]]


def _stats(xs: list[float]) -> dict[str, float]:
    return {"min": round(min(xs), 3), "median": round(statistics.median(xs), 3), "max": round(max(xs), 3)}


def test_loop_time_against_a_trivial_webhook(stack: Stack) -> None:
    """Each degradation reaches kpiguard's action and a trivial aiohttp webhook; both times are recorded.

    The trivial peer is the ``people`` receiver of the same Alertmanager (the enforcement routes continue to
    it), so both see the very same alert from the same scrape and evaluation: their difference is kpiguard's
    webhook, its database transaction and the poll that sees the throttle.
    """
    kpiguard, trivial = [], []
    rng = random.Random(8)
    for _ in range(TRIALS):
        # recover() returns just after an evaluation; a random phase makes the trials sample the whole cycle
        episode = throttle_episode(stack, phase=rng.uniform(0, 1))
        fingerprint = episode.entry["detail"]["fingerprint"]
        (first, *_) = wait_for(
            lambda ep=episode: stack.trivial.arrivals(since=ep.degraded_at, status="firing", alertname=ALERT,
                                                      domain="WHOLESALE", metric="contract_rate"),
            timeout=LOOP_TIMEOUT, what="the trivial webhook's notification")
        at, alert = first
        # the same alert, the same firing episode, as kpiguard acted on
        assert alert["fingerprint"] == fingerprint
        assert alert["startsAt"][:19] == episode.entry["detail"]["startsAt"][:19]
        kpiguard.append(episode.loop_seconds)
        trivial.append(at - episode.degraded_at)
    assert all(0 < t < LOOP_TIMEOUT for t in kpiguard + trivial)
    figures = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "trials": TRIALS,
        "fixture_startup_seconds": stack.figures.get("fixture_startup_seconds", round(stack.startup_seconds, 3)),
        "kpiguard_loop_seconds": _stats(kpiguard),
        "trivial_loop_seconds": _stats(trivial),
        # the phase spreads each loop over a scrape and an evaluation: compare the sums (same alerts, same
        # phases) rather than medians that may come from different trials
        "ratio_of_means": round(sum(kpiguard) / sum(trivial), 3),
        "ratio_of_medians": round(statistics.median(kpiguard) / statistics.median(trivial), 3),
        "kpiguard_minus_trivial_seconds": _stats([k - t for k, t in zip(kpiguard, trivial, strict=True)]),
        "intervals": {"scrape": "1s", "evaluation": "1s", "group_wait": "0s", "group_interval": "200ms",
                      "repeat_interval": "1s"},
    }
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(figures, indent=2) + "\n")
    stack.figures.update(kpiguard_loop_seconds=figures["kpiguard_loop_seconds"],
                         trivial_loop_seconds=figures["trivial_loop_seconds"],
                         kpiguard_minus_trivial_seconds=figures["kpiguard_minus_trivial_seconds"],
                         ratio_of_means=figures["ratio_of_means"], trials=TRIALS)
    print("\n" + json.dumps(figures, indent=2))
