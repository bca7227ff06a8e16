"""The seed's weekly governance figures, computed from plain audit records.

Definitions (the README repeats them):

- A **trigger** is an ``enforcement`` entry whose action is THROTTLE or KILL_SWITCH, written by the
  tripwire's evaluation (on its own, after ingest, or on ``POST /evaluate``: source ``evaluator`` or
  ``api``, always naming the policy's domain and metric) or by Alertmanager. A kill switch engaged by
  hand (``POST /go-live/kill-switch``: no domain) is not a tripwire trigger. A trigger of a policy whose previous trigger is still
  unresolved (neither remediated nor reviewed) is a **repeat** of the same episode (Alertmanager
  re-firing, a second replica) and is counted apart, not as a new trigger.
- A trigger is **remediated** when what it stopped runs again: for THROTTLE the first
  ``RELEASE_THROTTLE`` of its engine (a policy re-enable, or Alertmanager's auto-release), for
  KILL_SWITCH the first ``RELEASE_KILL_SWITCH``. Its time to remediate runs from the trigger to then;
  **MTTR** is the mean over the remediated triggers, in seconds.
- A trigger is **reviewed** when a person re-enables its policy (``RELEASE_THROTTLE`` or ``REARM``
  naming the same domain and metric); the re-enable says whether it was a **false positive**
  (``detail.false_positive``). The **false-positive rate** is false positives ÷ released triggers
  (remediated or reviewed).
- A week's figures are over the triggers that fired in it; their remediation may come later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kpiguard.governance._week import IsoWeek

THROTTLE = "THROTTLE"
KILL_SWITCH = "KILL_SWITCH"
TRIGGER_ACTIONS = (THROTTLE, KILL_SWITCH)
TRIGGER_SOURCES = ("evaluator", "alertmanager")
RELEASE_THROTTLE = "RELEASE_THROTTLE"
RELEASE_KILL_SWITCH = "RELEASE_KILL_SWITCH"
REARM = "REARM"

# The seed's advice: "If MTTR > 4 hours → lower thresholds to fail faster;
# if false positives > 10% → raise max_drop_fraction"; triggers "should be 0 or 1" a week.
MTTR_LIMIT_SECONDS = 4 * 3600.0
FALSE_POSITIVE_LIMIT = 0.10
TRIGGERS_PER_WEEK_LIMIT = 1


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """The parts of one audit entry the figures read."""

    id: int
    created_at: datetime
    kind: str
    action: str | None
    source: str
    domain: str | None = None
    metric: str | None = None
    engine: str | None = None
    detail: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Trigger:
    """One tripwire trigger and what became of it."""

    policy: str
    domain: str | None
    metric: str | None
    engine: str | None
    action: str
    source: str
    at: datetime
    audit_id: int
    remediated_at: datetime | None = None
    reviewed_at: datetime | None = None
    false_positive: bool = False
    repeats: int = 0

    @property
    def released(self) -> bool:
        """Remediated or reviewed by a person."""
        return self.remediated_at is not None or self.reviewed_at is not None

    @property
    def seconds_to_remediate(self) -> float | None:
        """From the trigger to its remediation, or None while it is not remediated."""
        return None if self.remediated_at is None else (self.remediated_at - self.at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        return {
            "policy": self.policy, "domain": self.domain, "metric": self.metric, "engine": self.engine,
            "action": self.action, "source": self.source, "triggered_at": self.at, "audit_id": self.audit_id,
            "remediated_at": self.remediated_at, "reviewed_at": self.reviewed_at,
            "seconds_to_remediate": self.seconds_to_remediate, "false_positive": self.false_positive,
            "repeats": self.repeats,
        }


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One piece of the seed's advice, and the figure that called for it."""

    code: str
    message: str
    policy: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        return {"code": self.code, "message": self.message, "policy": self.policy}


@dataclass(frozen=True, slots=True)
class Figures:
    """Counts, MTTR and false-positive rate over a set of triggers."""

    triggers: int
    throttle: int
    kill_switch: int
    repeats: int
    remediated: int
    open: int
    released: int
    false_positives: int
    mttr_seconds: float | None
    false_positive_ratio: float | None

    @property
    def throttle_to_kill(self) -> float | None:
        """THROTTLE : KILL_SWITCH as one number (None without kills)."""
        return None if self.kill_switch == 0 else self.throttle / self.kill_switch

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        return {
            "triggers": self.triggers, "by_action": {THROTTLE: self.throttle, KILL_SWITCH: self.kill_switch},
            "throttle_to_kill": self.throttle_to_kill, "ratio": f"{self.throttle}:{self.kill_switch}",
            "repeats": self.repeats, "remediated": self.remediated, "open": self.open, "released": self.released,
            "false_positives": self.false_positives, "mttr_seconds": self.mttr_seconds,
            "false_positive_ratio": self.false_positive_ratio,
        }


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    """One policy's figures and the advice they call for."""

    policy: str
    domain: str | None
    metric: str | None
    figures: Figures
    recommendations: tuple[Recommendation, ...]

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        return {"policy": self.policy, "domain": self.domain, "metric": self.metric, **self.figures.to_json(),
                "recommendations": [r.to_json() for r in self.recommendations]}


@dataclass(frozen=True, slots=True)
class WeeklyFigures:
    """A week's governance figures: overall, per policy, with the triggers they are computed from."""

    week: IsoWeek
    overall: Figures
    policies: tuple[PolicyFigures, ...]
    recommendations: tuple[Recommendation, ...]
    triggers: tuple[Trigger, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """As ``GET /api/governance/weekly`` returns it."""
        return {
            "week": str(self.week), "start": self.week.start, "end": self.week.end,
            "overall": self.overall.to_json(),
            "policies": [p.to_json() for p in self.policies],
            "recommendations": [r.to_json() for r in self.recommendations],
            "triggers": [t.to_json() for t in self.triggers],
        }


def _policy_key(domain: str | None, metric: str | None, action: str) -> str:
    if domain and metric:
        return f"{domain}.{metric}"
    return domain or action


def triggers_from(records: Iterable[AuditRecord]) -> tuple[Trigger, ...]:
    """Every trigger in the records (read in time order) with its remediation, review and repeats."""
    found: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}
    # the triggers a release can still remediate: THROTTLEs by engine, and KILL_SWITCHes (one switch)
    throttled: dict[str | None, list[dict[str, Any]]] = {}
    killed: list[dict[str, Any]] = []
    for r in sorted(records, key=lambda r: (r.created_at, r.id)):
        if r.kind == "enforcement" and r.action in TRIGGER_ACTIONS and (r.source in TRIGGER_SOURCES or r.domain):
            key = _policy_key(r.domain, r.metric, r.action)
            prev = latest.get(key)
            if prev is not None and prev["remediated_at"] is None and prev["reviewed_at"] is None:
                prev["repeats"] += 1
                continue
            t = {"policy": key, "domain": r.domain or None, "metric": r.metric or None,
                 "engine": r.engine or (r.domain if r.action == THROTTLE else None), "action": r.action,
                 "source": r.source, "at": r.created_at, "audit_id": r.id, "remediated_at": None,
                 "reviewed_at": None, "false_positive": False, "repeats": 0}
            found.append(t)
            latest[key] = t
            if r.action == THROTTLE:
                throttled.setdefault(t["engine"], []).append(t)
            else:
                killed.append(t)
        elif r.kind == "release":
            remediated: list[dict[str, Any]] = []
            if r.action == RELEASE_THROTTLE:
                remediated = throttled.pop(r.engine or r.domain, [])
            elif r.action == RELEASE_KILL_SWITCH:
                remediated, killed = killed, []
            for t in remediated:
                t["remediated_at"] = r.created_at
            if r.action in (RELEASE_THROTTLE, REARM) and r.domain and r.metric:
                t = latest.get(f"{r.domain}.{r.metric}")
                if t is not None and t["reviewed_at"] is None:
                    t["reviewed_at"] = r.created_at
                    t["false_positive"] = bool((r.detail or {}).get("false_positive", False))
    return tuple(Trigger(**t) for t in found)


def figures_of(triggers: Sequence[Trigger]) -> Figures:
    """Counts, MTTR and false-positive rate over ``triggers``."""
    times = [s for t in triggers if (s := t.seconds_to_remediate) is not None]
    released = [t for t in triggers if t.released]
    fps = sum(1 for t in released if t.false_positive)
    return Figures(
        triggers=len(triggers),
        throttle=sum(1 for t in triggers if t.action == THROTTLE),
        kill_switch=sum(1 for t in triggers if t.action == KILL_SWITCH),
        repeats=sum(t.repeats for t in triggers),
        remediated=len(times),
        open=sum(1 for t in triggers if t.remediated_at is None),
        released=len(released),
        false_positives=fps,
        mttr_seconds=sum(times) / len(times) if times else None,
        false_positive_ratio=fps / len(released) if released else None,
    )


def policy_recommendations(policy: str, figures: Figures) -> tuple[Recommendation, ...]:
    """The seed's advice for one policy: MTTR over 4 h, false positives over 10%."""
    out: list[Recommendation] = []
    if figures.mttr_seconds is not None and figures.mttr_seconds > MTTR_LIMIT_SECONDS:
        out.append(Recommendation(
            "lower_thresholds",
            f"{policy}: MTTR {figures.mttr_seconds / 3600:.1f} h > 4 h: lower thresholds to fail faster", policy))
    if figures.false_positive_ratio is not None and figures.false_positive_ratio > FALSE_POSITIVE_LIMIT:
        out.append(Recommendation(
            "raise_max_drop_fraction",
            f"{policy}: false positives {figures.false_positive_ratio:.0%} > 10%: raise max_drop_fraction", policy))
    return tuple(out)


def overall_recommendations(figures: Figures) -> tuple[Recommendation, ...]:
    """The seed's advice on the week as a whole: at most one trigger, and THROTTLE favoured over KILL_SWITCH."""
    out: list[Recommendation] = []
    if figures.triggers > TRIGGERS_PER_WEEK_LIMIT:
        out.append(Recommendation(
            "too_many_triggers",
            f"{figures.triggers} tripwire triggers this week (should be 0 or 1): experiments are causing issues"))
    if figures.kill_switch > figures.throttle:
        out.append(Recommendation(
            "favour_throttle",
            f"THROTTLE : KILL_SWITCH is {figures.throttle}:{figures.kill_switch}: prefer THROTTLE (graceful degradation)"))
    return tuple(out)


def weekly_figures(records: Iterable[AuditRecord], week: IsoWeek) -> WeeklyFigures:
    """The governance figures of the triggers that fired in ``week``, overall and per policy."""
    week_triggers = tuple(t for t in triggers_from(records) if week.contains(t.at))
    by_policy: dict[str, list[Trigger]] = {}
    for t in week_triggers:
        by_policy.setdefault(t.policy, []).append(t)
    policies = []
    for key in sorted(by_policy):
        ts = by_policy[key]
        figs = figures_of(ts)
        policies.append(PolicyFigures(key, ts[0].domain, ts[0].metric, figs, policy_recommendations(key, figs)))
    overall = figures_of(week_triggers)
    recs = overall_recommendations(overall) + tuple(r for p in policies for r in p.recommendations)
    return WeeklyFigures(week, overall, tuple(policies), recs, week_triggers)
