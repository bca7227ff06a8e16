"""``kpiguard demo``: the seed's testing flow and its three scenarios, played against a running service.

Every run uses its own metric names (``contract_rate_r1a2b3c``) on three demo engines
(``DEMO_WHOLESALE``, ``DEMO_BUYER_MATCH``, ``DEMO_CAPITAL``), so that a second run against the same
database starts from clean windows and never touches a real engine. It engages the global kill switch
for scenario 3 and always releases it, re-enables the demo engines and disables its policies at the end,
also when a step fails.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from kpiguard.client._http import Api, ApiError
from kpiguard.client._progress import Progress

ACTOR = "kpiguard-demo"
WHOLESALE, BUYER_MATCH, CAPITAL = "DEMO_WHOLESALE", "DEMO_BUYER_MATCH", "DEMO_CAPITAL"
ENGINES = (WHOLESALE, BUYER_MATCH, CAPITAL)
BATCH = 50
AMOUNT = 10000

KPI = "/api/v1/kpi-events"
UPSERT = "/api/governance/regression/policies/upsert"
EVALUATE = "/api/governance/regression/evaluate"
RESERVE = "/api/governance/risk/check-and-reserve"
KILL = "/api/governance/go-live/kill-switch"


class DemoFailed(Exception):
    """The service did not do what the seed says it should."""


def outcomes(n: int, rate: float) -> list[bool]:
    """``n`` outcomes with exactly ``round(n * rate)`` successes, the failures spread evenly."""
    failures = n - round(n * rate)
    out = [True] * n
    if failures:
        step = n / failures
        for k in range(failures):
            out[int(k * step + step / 2)] = False
    return out


def roi_values(n: int, mean: float, rng: random.Random) -> list[float]:
    """``n`` profits per deal around ``mean`` dollars."""
    return [rng.gauss(mean, 80) for _ in range(n)]


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def state_text(s: dict[str, Any]) -> str:
    """``state: triggered=true drop=0.789 (0.950 -> 0.200)``."""
    return (f"state: triggered={str(s['triggered']).lower()} drop={_num(s['drop_fraction'])}"
            f" ({_num(s['baseline'])} -> {_num(s['current'])})")


@dataclass(frozen=True)
class Step:
    """One printed step: its label, its share of the progress bar, and what it does (returns its line)."""

    label: str
    units: int
    run: Callable[[Callable[[], None]], str]


class Demo:
    """One run of the demo against ``api``."""

    def __init__(self, api: Api, out: TextIO, err: TextIO, run_id: str | None = None) -> None:
        self.api = api
        self.out = out
        self.err = err
        self.run_id = run_id or f"r{uuid.uuid4().hex[:6]}"
        self.policies: list[tuple[str, str]] = []

    def metric(self, name: str) -> str:
        """This run's name for a seed metric."""
        return f"{name}_{self.run_id}"

    # --- what each step does ---

    def send(self, domain: str, metric: str, ok: list[bool], tick: Callable[[], None],
             values: list[float] | None = None) -> None:
        """Ingest the events in batches of 50, ticking the progress bar after each."""
        events = [{"domain": domain, "metric": metric, "success": s, "actor": ACTOR} for s in ok]
        if values is not None:
            for e, v in zip(events, values, strict=True):
                e["value"] = round(v, 2)
        for i in range(0, len(events), BATCH):
            self.api.post(KPI, events[i:i + BATCH])
            tick()

    def policy(self, domain: str, metric: str, **fields: Any) -> dict[str, Any]:
        """Create or change one of this run's policies."""
        if (domain, metric) not in self.policies:
            self.policies.append((domain, metric))
        return self.api.post(UPSERT, {"domain": domain, "metric": metric, "changed_by": ACTOR, **fields})

    def evaluate(self, domain: str, metric: str) -> dict[str, Any]:
        """Evaluate one policy now."""
        return self.api.post(EVALUATE, {"domain": domain, "metric": metric, "actor": ACTOR})

    def risk(self, engine: str, expect: str) -> str:
        """A risk check-and-reserve, as a deal booking would make it; DemoFailed unless its reason is ``expect``."""
        r = self.api.post(RESERVE, {"engine": engine, "amount": AMOUNT, "actor": ACTOR})
        if r["reason"] != expect:
            raise DemoFailed(f"risk check of {engine} answered {r['reason']}, expected {expect}")
        return f"risk {engine} {AMOUNT}: {'ok' if r['ok'] else 'DENIED ' + r['reason']}"

    def gate(self, engine: str, expect: int) -> str:
        """The PROD_EXEC gate for ``engine``; DemoFailed unless it answers ``expect``."""
        status, body = self.api.request("GET", "/api/governance/gate", params={"engine": engine, "class": "PROD_EXEC"})
        if status != expect:
            raise DemoFailed(f"gate of {engine} answered {status}, expected {expect}")
        if status == 204:
            return "gate PROD_EXEC: 204 allowed"
        return f"gate PROD_EXEC: {status} {(body or {}).get('error', {}).get('code', '')}"

    def expect_state(self, s: dict[str, Any], triggered: bool) -> None:
        """DemoFailed unless the tripwire's verdict is ``triggered``."""
        if s["triggered"] is not triggered:
            raise DemoFailed(f"{s['domain']}.{s['metric']} triggered={s['triggered']}, expected {triggered}: {s['note']}")

    # --- the plan ---

    def steps(self) -> list[Step]:
        """The seed's testing flow, then its three scenarios."""
        cr, oa = self.metric("contract_rate"), self.metric("offer_accept_rate")
        ms, roi = self.metric("match_success"), self.metric("roi_event")
        rng = random.Random(3)

        def preflight(tick: Callable[[], None]) -> str:
            golive = self.api.get("/api/governance/go-live/state")
            if golive["kill_switch_engaged"]:
                raise DemoFailed(f"the kill switch is engaged ({golive['reason']}): release it first")
            for p in self.api.get("/api/governance/regression/policies"):
                if p["domain"] in ENGINES and p["enabled"]:  # left by an interrupted run
                    self.api.post(UPSERT, {"domain": p["domain"], "metric": p["metric"], "enabled": False,
                                           "changed_by": ACTOR})
            for engine in ENGINES:
                self.api.post("/api/governance/risk/policies/upsert",
                              {"engine": engine, "enabled": True, "changed_by": ACTOR, "reason": "kpiguard demo"})
            return f"{self.api.url} answers, kill switch released; engines {', '.join(ENGINES)} enabled; run {self.run_id}"

        def flow1(tick: Callable[[], None]) -> str:
            self.send(WHOLESALE, cr, outcomes(200, 0.95), tick)
            return f"stored 200 events of {WHOLESALE}.{cr}, 95% success (the baseline)"

        def flow2(tick: Callable[[], None]) -> str:
            self.policy(WHOLESALE, cr, window_events=50, baseline_events=200, min_events_to_enforce=50,
                        max_drop_fraction=0.20, action="THROTTLE", enabled=True, reason="kpiguard demo")
            return "THROTTLE when the newest 50 drop 20% below the 200 before them"

        def flow3(tick: Callable[[], None]) -> str:
            s = self.evaluate(WHOLESALE, cr)
            self.expect_state(s, False)
            return f"{state_text(s)} | {self.risk(WHOLESALE, 'ok')} | {self.gate(WHOLESALE, 204)}"

        def flow4(tick: Callable[[], None]) -> str:
            self.send(WHOLESALE, cr, outcomes(50, 0.20), tick)
            return "stored 50 events at 20% success (the regression)"

        def flow5(tick: Callable[[], None]) -> str:
            s = self.evaluate(WHOLESALE, cr)
            self.expect_state(s, True)
            engines = {p["engine"]: p for p in self.api.get("/api/governance/risk/policies")}
            if engines[WHOLESALE]["enabled"]:
                raise DemoFailed(f"{WHOLESALE} is still enabled after the trigger")
            return f"{state_text(s)} | engine {WHOLESALE} disabled: {engines[WHOLESALE]['reason']}"

        def flow6(tick: Callable[[], None]) -> str:
            return f"{self.risk(WHOLESALE, 'policy_disabled')} | {self.gate(WHOLESALE, 403)}"

        def flow7(tick: Callable[[], None]) -> str:
            r = self.policy(WHOLESALE, cr, enabled=True, reason="Fixed the contract-rate regression")
            released = ", ".join(f"{x['action']} {x['engine']}" for x in r["released"]) or "nothing"
            return f"released {released} | {self.risk(WHOLESALE, 'ok')} | {self.gate(WHOLESALE, 204)}"

        def s1(tick: Callable[[], None]) -> str:
            self.policy(WHOLESALE, oa, max_drop_fraction=0.15, action="THROTTLE", enabled=True,
                        reason="kpiguard demo")
            self.send(WHOLESALE, oa, outcomes(200, 0.95) + outcomes(50, 0.60), tick)
            s = self.evaluate(WHOLESALE, oa)
            self.expect_state(s, True)
            return f"{state_text(s)} | {self.risk(WHOLESALE, 'policy_disabled')} | {self.gate(WHOLESALE, 403)}"

        def s1_fix(tick: Callable[[], None]) -> str:
            self.policy(WHOLESALE, oa, enabled=True, reason="Retrained offer-accept model v2.1")
            return f"re-enabled | {self.risk(WHOLESALE, 'ok')} | {self.gate(WHOLESALE, 204)}"

        def s2(tick: Callable[[], None]) -> str:
            self.policy(BUYER_MATCH, ms, max_drop_fraction=0.25, action="THROTTLE", enabled=True,
                        reason="kpiguard demo")
            self.send(BUYER_MATCH, ms, outcomes(200, 0.85) + outcomes(50, 0.70), tick)
            s = self.evaluate(BUYER_MATCH, ms)
            self.expect_state(s, False)
            return (f"{state_text(s)} < 0.25: watched, not triggered | {self.risk(BUYER_MATCH, 'ok')}"
                    f" | {self.gate(BUYER_MATCH, 204)}")

        def s3(tick: Callable[[], None]) -> str:
            self.policy(CAPITAL, roi, aggregation="mean_value", max_drop_fraction=0.30, action="KILL_SWITCH",
                        enabled=True, reason="kpiguard demo")
            values = roi_values(200, 500, rng) + roi_values(50, -300, rng)
            self.send(CAPITAL, roi, [v > 0 for v in values], tick, values)
            s = self.evaluate(CAPITAL, roi)
            self.expect_state(s, True)
            golive = self.api.get("/api/governance/go-live/state")
            if not golive["kill_switch_engaged"]:
                raise DemoFailed("the kill switch is not engaged after the ROI flip")
            return (f"{state_text(s)} | kill switch ENGAGED | {self.risk(WHOLESALE, 'kill_switch_engaged')}"
                    f" | {self.gate(WHOLESALE, 403)}")

        def s3_fix(tick: Callable[[], None]) -> str:
            self.api.post(KILL, {"engaged": False, "reason": "kpiguard demo: ROI model rolled back",
                                 "changed_by": ACTOR})
            self.policy(CAPITAL, roi, enabled=True, reason="ROI model rolled back")
            return f"kill switch released by {ACTOR} | {self.risk(CAPITAL, 'ok')} | {self.gate(WHOLESALE, 204)}"

        return [
            Step("check the service", 1, preflight),
            Step("flow 1: record the baseline", 4, flow1),
            Step("flow 2: enable the policy", 1, flow2),
            Step("flow 3: evaluate (baseline good)", 1, flow3),
            Step("flow 4: inject the degradation", 1, flow4),
            Step("flow 5: evaluate again", 1, flow5),
            Step("flow 6: risk guard blocks", 1, flow6),
            Step("flow 7: fix and re-enable", 1, flow7),
            Step("scenario 1: offer-accept 95% -> 60%", 6, s1),
            Step("scenario 1: retrain and re-enable", 1, s1_fix),
            Step("scenario 2: buyer match 85% -> 70%", 6, s2),
            Step("scenario 3: capital ROI +500 -> -300", 6, s3),
            Step("scenario 3: emergency response", 1, s3_fix),
        ]

    def clean_up(self) -> str:
        """Release the kill switch if this run engaged it, re-enable the engines, disable this run's policies."""
        done = []
        golive = self.api.get("/api/governance/go-live/state")
        if golive["kill_switch_engaged"] and (golive["reason"] or "").startswith(f"Regression: {CAPITAL}."):
            self.api.post(KILL, {"engaged": False, "reason": "kpiguard demo: clean up", "changed_by": ACTOR})
            done.append("kill switch released")
        for domain, metric in self.policies:
            self.api.post(UPSERT, {"domain": domain, "metric": metric, "enabled": False, "changed_by": ACTOR,
                                   "reason": "kpiguard demo finished"})
        for engine in ENGINES:
            self.api.post("/api/governance/risk/policies/upsert",
                          {"engine": engine, "enabled": True, "changed_by": ACTOR, "reason": "kpiguard demo finished"})
        done.append(f"{len(self.policies)} demo policies disabled, engines enabled")
        return "; ".join(done)

    def run(self) -> int:
        """Play every step, printing a line each; 0 if the service did all the seed says, 1 otherwise."""
        steps = self.steps()
        total = len(steps) + 1
        progress = Progress(sum(s.units for s in steps) + 1, self.err)
        started = time.monotonic()
        failed: Exception | None = None
        for i, step in enumerate(steps, 1):
            ticks = [0]

            def tick(step: Step = step, ticks: list[int] = ticks) -> None:
                if ticks[0] < step.units - 1:
                    ticks[0] += 1
                    progress.advance(1, step.label)

            try:
                line = step.run(tick)
            except (DemoFailed, ApiError) as exc:
                failed = exc
                progress.clear()
                self.out.write(f"[{i:2d}/{total}] {step.label:<38} FAILED: {exc}\n")
                break
            progress.advance(step.units - ticks[0], step.label, line=True)
            progress.clear()
            self.out.write(f"[{i:2d}/{total}] {step.label:<38} {line}\n")
            self.out.flush()
        try:
            line = self.clean_up()
        except ApiError as exc:
            failed = failed or exc
            line = f"FAILED: {exc}"
        progress.advance(1, "clean up", line=True)
        progress.finish()
        self.out.write(f"[{total:2d}/{total}] {'clean up':<38} {line}\n")
        elapsed = time.monotonic() - started
        if failed is not None:
            self.out.write(f"demo stopped after {elapsed:.1f} s: {failed}\n")
            return 1
        self.out.write(f"demo finished in {elapsed:.1f} s: the tripwire throttled, blocked and released as the seed says.\n"
                       f"Now: kpiguard report --url {self.api.url}\n")
        return 0


def run_demo(args: argparse.Namespace) -> int:
    """The ``kpiguard demo`` command."""
    return Demo(Api(args.url, args.token), sys.stdout, sys.stderr).run()
