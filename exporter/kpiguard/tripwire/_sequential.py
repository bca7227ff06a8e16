"""The sequential guard: Page's CUSUM on the per-event log-likelihood ratio of "dropped" against "reference".

The window rules look at 50 events at a time and re-baseline after 250, so a drop of 1.5x the threshold
is often not significant in any one look (DETECTION.md).  A CUSUM accumulates the evidence event by
event instead, and is the optimal detector for a known change (Lorden, Moustakides): its statistic
``S = max(0, S + llr(event))`` crosses the boundary ``h`` soon after a real drop and rarely otherwise.

Reference.  While the statistic is at zero the reference follows the policy's baseline window as of
just before the event (for a success rate its rate, shrunk as (s + 1/2) / (n + 1) so that a window of
only successes is not a certainty; for a mean its mean and standard deviation).  While the statistic
is positive the reference is frozen, so a sustained drop is not re-baselined away as the windows do.

Alternative.  The CUSUM tests the reference against the alternative whose zero-drift point is the
policy's threshold: the expected increment is 0 for events at ``level = (1 - X) * reference`` (X =
max_drop_fraction), negative above it (stable streams, sub-threshold drops such as the seed's scenario
2) and positive below it (drops beyond the threshold).  For a success rate that is the rate p1 with
``E_level[llr] = 0``; for a normal mean it is ``mu1 = 2 * level - mu0``.

Estimation noise.  The reference is estimated from a baseline window of ~200 events.  At low rates its
standard error is a sizeable part of X (rate 0.10: 21% of the rate), and a reference estimated too
high makes a stable stream look like a threshold drop (positive drift, a false trigger some hundred
events later, whatever ``h``).  So the level is also kept at least ``REFERENCE_MARGIN`` standard
errors of the reference below it: ``level = min((1 - X) * ref, ref - REFERENCE_MARGIN * se)``.  Where
the threshold is wide compared with the noise (rate 0.95, X = 0.20) the margin does nothing; where it
is not, the guard asks for a larger drop than X rather than fire on its own estimation error.

Boundary.  ``h = ln(1 / guard_alpha) + BOUNDARY_SLACK``.  For a CUSUM on the true likelihood ratio
the mean run length between false alarms is at least ``e^h`` (Lorden 1971); ln(1 / guard_alpha) alone
would give 333,000 events at the default 3e-6.  With a reference estimated from 200 events the bound
does not hold (the estimate is sometimes too high for a while), and the slack buys back the factor the
harness measured (DETECTION.md).

The combined guard's backstop (``guard: combined``).  The same CUSUM with three changes, so that it can
sit behind the evidence guard's window test without adding false triggers: its boundary is
``BACKSTOP_BOUNDARY`` nats whatever guard_alpha (a stable stream practically never reaches it; it
exists to catch sustained drops that no single pair of windows resolves); its reference is re-taken not
whenever the statistic returns to 0 but only when the log-likelihood ratio summed over the events since
it was taken has fallen to ``-BACKSTOP_BOUNDARY`` (the events favour "no drop past the threshold" as
strongly as a trigger needs them to favour a drop: Wald's symmetric boundaries), so that a real drop,
during which the statistic may touch 0 early, is not re-baselined away by a reference that has taken in
the dropped events; and its level stays ``BACKSTOP_MARGIN`` standard errors below the reference at
least, because a reference held for long must not hold its estimation error for long either.

Everything here is pure: plain numbers in, plain numbers out.  The runner stores a :class:`Cusum`
(statistic, the ratio summed since the reference was taken, and the frozen reference) and the id of the
last event it folded in.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable

from kpiguard.tripwire._policy import Aggregation, Guard, Policy
from kpiguard.tripwire._window import WindowStats

# Standard errors of the reference estimate by which the zero-drift level stays below the reference at
# least, and nats added to ln(1 / guard_alpha) for the boundary.  Tuned by simulating stable rates 0.10-
# 0.60 (1.5 million events each, thresholds 0.15 and 0.25): margin 3 with no slack gave up to 2.5 false
# triggers per 100,000 events (rate 0.5, X = 0.15), margin 4 with slack 1.5 at most 0.5; DETECTION.md
# has the harness's figures for every stable stream.
REFERENCE_MARGIN = 4.0
BOUNDARY_SLACK = 1.5
# The combined guard's backstop: its boundary (also the evidence that renews its reference) and its margin.
# Measured with benchmarks/detection.py and a vectorised replica of it (1,000-3,000 runs a row): at 40 nats
# the backstop alone triggers in about 0.5% of scenario-2 runs and never on 40 million stable events, yet
# catches every 1.5x drop of contract_rate and match_success within a few hundred events; at 60 it would be
# too slow for the seed's scenario 3 (20 events at most; the window test takes 22).  With a margin of 4
# standard errors a reference estimated high and held for thousands of events fired on 1.6% of the 0.5x
# steps of a 0.70 rate (X = 0.15), with 5 on 0.2%; 6 would also give up most 3x drops of a 0.30 rate.
BACKSTOP_BOUNDARY = 40.0
BACKSTOP_MARGIN = 5.0
# The most one event moves the backstop, either way: it is for sustained drops, which take at least ten
# events to fire it. Without the cap a baseline with no noise (every value equal) makes any one value
# below the level a certain drop (+inf): five bad events in a quiet hour fired KILL_SWITCH. A success-rate
# event moves the backstop by at most 3.2 nats up to a baseline rate of 0.97 (200 events; a failure at
# 0.99-1.0 by 3.7-5.9, capped), a mean event at sd 250 by about 3; a sudden large drop is the window
# test's to catch.
BACKSTOP_STEP = BACKSTOP_BOUNDARY / 10
_SOLVE_STEPS = 60  # bisection steps for p1; 2^-60 of the interval is far below float noise
# A certain drop (a noiseless baseline) is stored as this large finite number: JSON and SQL floats have no inf.
_CAP = 1e300


def boundary(guard_alpha: float) -> float:
    """The decision boundary h = ln(1 / guard_alpha) + BOUNDARY_SLACK (Lorden: run length to a false alarm >= e^h)."""
    return BOUNDARY_SLACK - math.log(guard_alpha)


@dataclasses.dataclass(frozen=True, slots=True)
class Scheme:
    """How a guard runs its CUSUM: the boundary, when the reference is re-taken, the level's margin."""

    boundary: float
    renewal: float  # re-take the reference when the ratio summed since it was taken is <= -renewal
    margin: float  # standard errors of the reference that the zero-drift level stays below it at least
    step: float = math.inf  # the most one event's log-likelihood ratio counts, either way


def scheme(policy: Policy) -> Scheme:
    """The CUSUM of the policy's guard: Page's for ``sequential``, the backstop for ``combined``."""
    if policy.guard is Guard.COMBINED:
        return Scheme(BACKSTOP_BOUNDARY, BACKSTOP_BOUNDARY, BACKSTOP_MARGIN, BACKSTOP_STEP)
    # Renewal 0: the reference is re-taken whenever the statistic is back at 0, as in Page's CUSUM.
    return Scheme(boundary(policy.guard_alpha), 0.0, REFERENCE_MARGIN)


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    """A frozen reference: its value (rate or mean), the zero-drift level, and for a mean the noise's sd."""

    value: float
    level: float
    scale: float | None = None  # a mean's standard deviation; None for a success rate

    @property
    def inert(self) -> bool:
        """Whether no event can move the CUSUM: a success rate's level at or below 0 leaves nothing to detect."""
        return self.scale is None and self.level <= 0.0

    def llr(self, x: float) -> float:
        """The log-likelihood ratio of one event value: log f_alternative(x) - log f_reference(x)."""
        if self.scale is None:
            fail, succeed = bernoulli_llr(self.value, self.level)
            return succeed if x >= 0.5 else fail
        return gaussian_llr(self.value, self.level, self.scale, x)


@dataclasses.dataclass(frozen=True, slots=True)
class Cusum:
    """The CUSUM's state between evaluations: statistic, frozen reference, and the ratio summed since it was taken."""

    statistic: float = 0.0
    reference: Reference | None = None
    # The log-likelihood ratio summed over the events since the reference was taken (Page's CUSUM: equal to
    # the statistic until it is back at 0, when the reference is re-taken; the backstop: see Scheme.renewal).
    total: float = 0.0


FRESH = Cusum()


@functools.lru_cache(maxsize=4096)
def bernoulli_alternative(p0: float, level: float) -> float:
    """The rate p1 < level whose per-event log-likelihood ratio against p0 has zero mean at rate ``level``.

    With a = ln(p0 / p1) (what a success takes off) and b = ln((1 - p1) / (1 - p0)) (what a failure
    adds), the mean increment at rate p is (1 - p) * b - p * a, zero at p = b / (a + b).  That ratio
    rises from 0 (p1 -> 0) to p0 (p1 -> p0), so each level in (0, p0) has one p1, found by bisection.
    """
    if not 0.0 < level < p0 < 1.0:
        raise ValueError(f"need 0 < level < p0 < 1, got level={level} p0={p0}")
    lo, hi = 0.0, p0  # p1 in (lo, hi); the zero-drift rate of p1 rises with p1
    for _ in range(_SOLVE_STEPS):
        p1 = 0.5 * (lo + hi)
        a = math.log(p0 / p1)
        b = math.log1p(-p1) - math.log1p(-p0)
        if b / (a + b) < level:
            lo = p1
        else:
            hi = p1
    return 0.5 * (lo + hi)


@functools.lru_cache(maxsize=4096)
def bernoulli_llr(p0: float, level: float) -> tuple[float, float]:
    """(llr of a failure, llr of a success) for reference p0 and zero-drift ``level``; (0, 0) when level <= 0."""
    if level <= 0.0:
        return 0.0, 0.0  # no rate below the reference is left to detect: the statistic stays at 0
    p1 = bernoulli_alternative(p0, level)
    return math.log1p(-p1) - math.log1p(-p0), math.log(p1 / p0)


def gaussian_llr(mu0: float, level: float, sd: float, x: float) -> float:
    """llr of a value x for N(mu1, sd) against N(mu0, sd), mu1 = 2 * level - mu0 (zero mean at x = level)."""
    if sd <= 0.0:
        # A baseline without noise: the reference is exact, and any value below the level is a certain
        # drop (+inf), any value above it certainly none (-inf: back to 0); exactly at it, no evidence.
        if x == level:
            return 0.0
        return math.inf if x < level else -math.inf
    return 2.0 * (mu0 - level) * (level - x) / (sd * sd)


def reference_of(
    baseline: WindowStats, aggregation: Aggregation, max_drop: float, margin: float = REFERENCE_MARGIN
) -> Reference | None:
    """The reference a baseline window gives, with its zero-drift level; None for an empty window."""
    n = baseline.n
    if n < 1:
        return None
    if aggregation is Aggregation.SUCCESS_RATE:
        return _rate_reference(n, baseline.total, max_drop, margin)
    mean = baseline.total / n
    sd = math.sqrt(baseline.variance)
    level = mean - max(max_drop * abs(mean), margin * sd / math.sqrt(n))
    return Reference(mean, level, sd)


@functools.lru_cache(maxsize=16384)
def _rate_reference(n: int, successes: float, max_drop: float, margin: float) -> Reference:
    """A success-rate reference: shrunk rate, zero-drift level below it by X or the margin, whichever is more."""
    p0 = (successes + 0.5) / (n + 1.0)
    se = math.sqrt(p0 * (1.0 - p0) / n)
    return Reference(p0, p0 - max(max_drop * p0, margin * se))


def fold(
    state: Cusum, events: Iterable[tuple[float, WindowStats]], policy: Policy
) -> Cusum:
    """Fold events (oldest first) into the CUSUM, each given with the baseline window as of just before it.

    An event takes a fresh reference from its baseline window when there is none yet, when the ratio
    summed since the reference was taken is at or below ``-renewal`` (Page's CUSUM, renewal 0: whenever
    the statistic is back at 0; the backstop: see :class:`Scheme`), or when the reference cannot detect
    anything; otherwise the reference stays frozen.  An event whose baseline holds fewer than
    ``min_events_to_enforce`` events, when a reference is due, is not folded: no reference yet.
    """
    statistic, total, reference = state.statistic, state.total, state.reference
    plan = scheme(policy)
    cap = plan.step
    minimum = max(policy.min_events_to_enforce, 1)
    for value, baseline in events:
        if reference is None or total <= -plan.renewal or reference.inert:
            if baseline.n < minimum:
                continue
            fresh = reference_of(baseline, policy.aggregation, policy.max_drop_fraction, plan.margin)
            if fresh is None:
                continue
            reference, statistic, total = fresh, 0.0, 0.0
        step = reference.llr(value)
        if step > cap:
            step = cap
        elif step < -cap:
            step = -cap
        statistic = statistic + step
        total = total + step
        if statistic < 0.0:
            statistic = 0.0
        elif statistic == math.inf:
            statistic = _CAP
        # A certain drop or a certain non-drop: stored as large finite numbers (JSON and SQL have no inf).
        if total == math.inf:
            total = _CAP
        elif total == -math.inf:
            total = -_CAP
    return Cusum(statistic, reference, total)


def play(policy: Policy, values_oldest_first: list[float], state: Cusum = FRESH, start: int = 0) -> Cusum:
    """Fold ``values[start:]`` one by one, each with the policy's baseline window as of just before it.

    The pure equivalent of the service evaluating after every event (and of one evaluation folding a
    batch): the baseline of event i is the ``baseline_events`` events before the recent window that
    ends just before i.
    """
    w, b = policy.window_events, policy.baseline_events

    def baseline_before(i: int) -> WindowStats:
        end = max(i - w, 0)
        return WindowStats.from_values(values_oldest_first[max(end - b, 0) : end])

    return fold(state, ((values_oldest_first[i], baseline_before(i)) for i in range(start, len(values_oldest_first))),
                policy)


def evidence(state: Cusum, policy: Policy) -> dict[str, float | None]:
    """What the state reports beside drop_fraction: the statistic, its boundary and the frozen reference."""
    ref = state.reference
    return {
        "statistic": state.statistic,
        "boundary": scheme(policy).boundary,
        "reference": None if ref is None else ref.value,
        "level": None if ref is None else ref.level,
    }
