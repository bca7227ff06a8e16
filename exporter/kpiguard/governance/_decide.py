"""The seed's Monday "Decide" step, computed from the control plane's data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kpiguard.governance._weekly import FALSE_POSITIVE_LIMIT, WeeklyFigures

DEGRADED = ("degraded", "System degraded, fix required", "Manual remediation")
GOOD_WEEK = ("good_week", "Good week, baselines accurate", "Friday: promote thresholds")
TOO_AGGRESSIVE = ("too_aggressive", "Threshold too aggressive", "Loosen max_drop_fraction")
CAUGHT = ("caught_and_fixed", "Regressions caught and remediated this week", "Review the fixes and the weekly figures")


@dataclass(frozen=True, slots=True)
class Situation:
    """What the Monday checks found, as plain data."""

    kill_switch_engaged: bool
    kill_switch_reason: str | None
    throttled_engines: tuple[str, ...]
    triggered: tuple[str, ...]
    policy_disabled_denials: int
    weekly: WeeklyFigures


@dataclass(frozen=True, slots=True)
class Decision:
    """One of the seed's decisions, with what to do next and the facts that led to it."""

    code: str
    decision: str
    then: str
    because: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        return {"code": self.code, "decision": self.decision, "then": self.then, "because": list(self.because)}


def _make(spec: tuple[str, str, str], because: list[str]) -> Decision:
    return Decision(spec[0], spec[1], spec[2], tuple(because))


def decide(s: Situation) -> tuple[Decision, ...]:
    """The decisions the situation calls for; always at least one.

    Degraded whenever anything is stopped or triggered now; too aggressive when more than 10% of this
    week's released triggers were false positives; a good week when nothing triggered this week and
    nothing is degraded; otherwise the week's regressions were caught and remediated.
    """
    out: list[Decision] = []
    degraded: list[str] = []
    if s.kill_switch_engaged:
        degraded.append(f"kill switch engaged: {s.kill_switch_reason or 'no reason given'}")
    if s.throttled_engines:
        denials = f" ({s.policy_disabled_denials} policy_disabled denials today)" if s.policy_disabled_denials else ""
        degraded.append(f"throttled engines: {', '.join(s.throttled_engines)}{denials}")
    if s.triggered:
        degraded.append(f"triggered regressions: {', '.join(s.triggered)}")
    if degraded:
        out.append(_make(DEGRADED, degraded))
    w = s.weekly.overall
    if w.false_positive_ratio is not None and w.false_positive_ratio > FALSE_POSITIVE_LIMIT:
        noisy = [f"{p.policy} {p.figures.false_positives}/{p.figures.released}" for p in s.weekly.policies
                 if p.figures.false_positive_ratio is not None and p.figures.false_positive_ratio > FALSE_POSITIVE_LIMIT]
        out.append(_make(TOO_AGGRESSIVE, [
            f"false positives this week: {w.false_positives} of {w.released} released triggers"
            f" ({w.false_positive_ratio:.0%} > 10%)", *(f"false positives: {n}" for n in noisy)]))
    if w.triggers == 0 and not degraded:
        out.append(_make(GOOD_WEEK, [f"no tripwire triggered in {s.weekly.week}"]))
    if not out:
        out.append(_make(CAUGHT, [f"{w.triggers} trigger(s) in {s.weekly.week}, none active now"]))
    return tuple(out)
