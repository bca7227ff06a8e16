"""The count-window decision: compare the recent window with the baseline and say whether to trigger."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from kpiguard.tripwire._guard import mean_value_evidence, success_rate_evidence
from kpiguard.tripwire._policy import Aggregation, Guard, Policy
from kpiguard.tripwire._sequential import FRESH, Cusum, scheme
from kpiguard.tripwire._sequential import evidence as sequential_evidence
from kpiguard.tripwire._window import WindowStats

# A drop equal to the threshold triggers ("drop >= X"); float rounding of e.g. (0.5 - 0.4) / 0.5
# must not turn that into 0.19999999999999996 < 0.2.
_TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of evaluating one policy's windows; what the regression state stores and reports."""

    domain: str
    metric: str
    triggered: bool
    enforceable: bool
    baseline: float | None
    current: float | None
    drop_fraction: float | None
    recent_events: int
    baseline_events: int
    evidence: dict[str, float | None] | None
    note: str


def drop_fraction(baseline: float | None, current: float | None) -> float | None:
    """(baseline - current) / |baseline|; 0.0 when both are 0; None when either is missing or only baseline is 0.

    A baseline of exactly 0 gives the relative drop no scale: a success rate that was 0 cannot
    drop, and a mean that moves away from 0 has moved by an unmeasurable fraction.  Rather than
    invent a number (or divide by zero) the drop is undefined (None) and the policy does not
    trigger; 0 -> 0 is no change (0.0).  Policies on values that hover around 0 should measure
    a shifted value instead.
    """
    if baseline is None or current is None:
        return None
    if baseline == 0.0:
        return 0.0 if current == 0.0 else None
    return (baseline - current) / abs(baseline)


def evaluate(policy: Policy, recent: WindowStats, baseline: WindowStats, cusum: Cusum | None = None) -> Evaluation:
    """Decide whether the recent window dropped from the baseline enough, and surely enough, to trigger.

    Triggered only when both windows hold at least ``min_events_to_enforce`` events, the point
    drop reaches ``max_drop_fraction``, and the policy's guard agrees (``Guard.NONE`` always
    does: the seed's plain rule).  See :func:`drop_fraction` for a zero baseline.

    ``Guard.SEQUENTIAL`` decides on ``cusum``, the CUSUM with every event up to now folded in
    (:func:`kpiguard.tripwire._sequential.fold`; none given: a fresh one, which never triggers):
    it triggers when the statistic reaches its boundary, whatever the point drop of the two
    windows (the CUSUM's reference does not re-baseline while it climbs; the windows do).
    ``Guard.COMBINED`` triggers when the evidence guard would, or when ``cusum`` (its backstop)
    reaches the backstop's boundary.
    """
    n_r, n_b = recent.n, baseline.n
    current = recent.total / n_r if n_r else None
    base = baseline.total / n_b if n_b else None
    drop = drop_fraction(base, current)
    minimum = policy.min_events_to_enforce
    enforceable = n_r >= max(minimum, 1) and n_b >= max(minimum, 1)
    evidence: dict[str, float | None] | None = None

    def result(triggered: bool, note: str) -> Evaluation:
        return Evaluation(
            policy.domain, policy.metric, triggered, enforceable, base, current, drop, n_r, n_b, evidence, note
        )

    if not enforceable:
        return result(False, f"INSUFFICIENT_DATA recent={n_r} baseline={n_b} min={minimum}")
    threshold = policy.max_drop_fraction
    if policy.guard == Guard.SEQUENTIAL:
        return _sequential(policy, cusum or FRESH, drop, current, result)
    backstop: Cusum | None = None
    if policy.guard != Guard.NONE:
        evidence = _evidence(policy, recent, baseline)
    if policy.guard == Guard.COMBINED:
        backstop = cusum or FRESH
        evidence = {**(evidence or {}), **sequential_evidence(backstop, policy)}
    if drop is None:
        return result(False, f"UNDEFINED_DROP baseline=0 current={current:.3f}")
    backstop_note = ""
    if backstop is not None:
        h = scheme(policy).boundary
        if backstop.statistic >= h:
            return result(True, f"TRIGGERED drop={drop:.3f} action={policy.action}")
        backstop_note = f" statistic={backstop.statistic:.2f} (needs >= {h:.2f})"
    if drop + _TOLERANCE < threshold:
        return result(False, f"OK drop={drop:.3f}")
    if evidence is not None:
        p_value = evidence["p_value"]
        confidence = evidence["confidence"]
        assert p_value is not None and confidence is not None
        if p_value > policy.guard_alpha or confidence < policy.guard_confidence:
            return result(
                False,
                f"HELD drop={drop:.3f} guard={policy.guard} "
                f"confidence={confidence:.3f} (needs {policy.guard_confidence:.3f}) "
                f"p_value={p_value:.1e} (needs <= {policy.guard_alpha:.1e})" + backstop_note,
            )
    return result(True, f"TRIGGERED drop={drop:.3f} action={policy.action}")


def _evidence(policy: Policy, recent: WindowStats, baseline: WindowStats) -> dict[str, float | None]:
    """The guard's evidence for the policy's aggregation."""
    if policy.aggregation == Aggregation.SUCCESS_RATE:
        return success_rate_evidence(recent, baseline, policy.max_drop_fraction, policy.guard_confidence)
    return mean_value_evidence(recent, baseline, policy.max_drop_fraction, policy.guard_confidence)


def _sequential(
    policy: Policy, cusum: Cusum, drop: float | None, current: float | None, result: Callable[[bool, str], Evaluation]
) -> Evaluation:
    """The sequential guard's verdict on enforceable windows: the CUSUM decides, the point drop only names it."""
    evidence = sequential_evidence(cusum, policy)
    h = scheme(policy).boundary
    if drop is None:
        return dataclasses.replace(result(False, f"UNDEFINED_DROP baseline=0 current={current:.3f}"), evidence=evidence)
    if cusum.statistic >= h:
        verdict = result(True, f"TRIGGERED drop={drop:.3f} action={policy.action}")
    elif drop + _TOLERANCE < policy.max_drop_fraction:
        verdict = result(False, f"OK drop={drop:.3f}")
    else:
        verdict = result(
            False, f"HELD drop={drop:.3f} guard={policy.guard} statistic={cusum.statistic:.2f} (needs >= {h:.2f})"
        )
    return dataclasses.replace(verdict, evidence=evidence)
