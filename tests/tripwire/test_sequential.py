"""The sequential guard: Page's CUSUM, its reference and alternative, folding, and the seed's scenarios."""

from __future__ import annotations

import dataclasses
import math
import random
import re

import pytest

from kpiguard.tripwire import Action, Aggregation, Guard, Policy, WindowStats, evaluate, split_windows
from kpiguard.tripwire._sequential import (
    BOUNDARY_SLACK,
    FRESH,
    REFERENCE_MARGIN,
    Cusum,
    Reference,
    bernoulli_alternative,
    bernoulli_llr,
    boundary,
    fold,
    gaussian_llr,
    play,
    reference_of,
)

CONTRACT = Policy("WHOLESALE", "contract_rate", guard=Guard.SEQUENTIAL)
MATCH = Policy("BUYER_MATCH", "match_success", max_drop_fraction=0.25, guard=Guard.SEQUENTIAL)
ROI = Policy(
    "CAPITAL", "roi_event", max_drop_fraction=0.30, action=Action.KILL_SWITCH, aggregation=Aggregation.MEAN_VALUE,
    guard=Guard.SEQUENTIAL,
)


def successes(n: int, rate: float) -> list[float]:
    """n events with round(n * rate) successes spread evenly, oldest first."""
    k = round(n * rate)
    return [1.0 if (i * k) // n != ((i + 1) * k) // n else 0.0 for i in range(n)]


def drift(reference: Reference, rate: float) -> float:
    """Expected CUSUM increment per event of a success-rate stream at ``rate``."""
    fail, succeed = bernoulli_llr(reference.value, reference.level)
    return rate * succeed + (1 - rate) * fail


def verdict_after(policy: Policy, values: list[float]) -> tuple[Cusum, bool, str]:
    """Fold every event as the service would (each with its own baseline) and evaluate the final windows."""
    cusum = play(policy, values)
    recent, baseline = split_windows(values[::-1], policy.window_events, policy.baseline_events)
    ev = evaluate(policy, recent, baseline, cusum)
    return cusum, ev.triggered, ev.note


# --- the alternative: zero drift at the level -------------------------------------------------------


@pytest.mark.parametrize(
    ("p0", "level"),
    [(0.95, 0.76), (0.85, 0.6375), (0.70, 0.595), (0.50, 0.40), (0.30, 0.24), (0.10, 0.05), (0.999, 0.5)],
)
def test_alternative_has_zero_drift_at_the_level(p0: float, level: float) -> None:
    """p1 lies below the level, and the mean log-likelihood ratio of events at the level is 0."""
    p1 = bernoulli_alternative(p0, level)
    assert 0.0 < p1 < level
    fail, succeed = bernoulli_llr(p0, level)
    assert succeed == pytest.approx(math.log(p1 / p0))
    assert fail == pytest.approx(math.log((1 - p1) / (1 - p0)))
    assert level * succeed + (1 - level) * fail == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("p0", "level"), [(0.5, 0.5), (0.5, 0.6), (0.5, 0.0), (1.0, 0.5)])
def test_alternative_needs_a_level_below_the_reference(p0: float, level: float) -> None:
    """A level at or above the reference (or a certain reference) has no alternative below it."""
    with pytest.raises(ValueError, match="level"):
        bernoulli_alternative(p0, level)


def test_a_level_at_or_below_zero_detects_nothing() -> None:
    """When no rate is left below the reference, every event's ratio is 0: the statistic stays at 0."""
    assert bernoulli_llr(0.01, -0.02) == (0.0, 0.0)


# --- the reference: shrinkage and the estimation margin ---------------------------------------------


@pytest.mark.parametrize(
    ("successes_", "n", "max_drop", "p0", "level"),
    [
        # rate 0.95, X = 0.20: the threshold (0.2 * p0 = 0.19) is wider than 4 standard errors (0.06)
        (190, 200, 0.20, 190.5 / 201, 190.5 / 201 * 0.8),
        # rate 0.10, X = 0.15: 4 standard errors (0.084) are wider than the threshold (0.015)
        (20, 200, 0.15, 20.5 / 201, 20.5 / 201 - 4 * math.sqrt(20.5 / 201 * (1 - 20.5 / 201) / 200)),
        # only successes: shrunk below 1, so one failure is not a certain drop
        (200, 200, 0.20, 200.5 / 201, 200.5 / 201 * 0.8),
    ],
)
def test_rate_reference(successes_: int, n: int, max_drop: float, p0: float, level: float) -> None:
    """The reference is the shrunk rate; the level is the lower of (1 - X) * p0 and p0 - margin * se."""
    ref = reference_of(WindowStats(n, float(successes_), float(successes_)), Aggregation.SUCCESS_RATE, max_drop)
    assert ref is not None
    assert REFERENCE_MARGIN == 4.0  # the cases above are written for it
    assert ref.value == pytest.approx(p0)
    assert ref.level == pytest.approx(level)
    assert ref.scale is None
    fail, succeed = bernoulli_llr(ref.value, ref.level)
    assert math.isfinite(fail) and succeed < 0.0 < fail


def test_mean_reference_and_empty_window() -> None:
    """A mean's reference carries its sd and a level X * |mean| below it; an empty window has none."""
    values = [400.0, 600.0] * 100
    ref = reference_of(WindowStats.from_values(values), Aggregation.MEAN_VALUE, 0.30)
    assert ref is not None
    assert ref.value == pytest.approx(500.0)
    assert ref.scale == pytest.approx(math.sqrt(100.0 * 100.0 * 200 / 199))
    assert ref.level == pytest.approx(350.0)  # 4 se = 28 is less than 0.3 * 500
    negative = reference_of(WindowStats.from_values([-v for v in values]), Aggregation.MEAN_VALUE, 0.30)
    assert negative is not None and negative.level == pytest.approx(-650.0)  # a drop goes down from -500 too
    assert reference_of(WindowStats(), Aggregation.SUCCESS_RATE, 0.2) is None


# --- drift: which streams the CUSUM climbs on -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "p0", "max_drop", "rate", "climbs"),
    [
        ("stable 0.85", 0.85, 0.25, 0.85, False),
        ("scenario 2: 0.71x the threshold", 0.85, 0.25, 0.70, False),
        ("match_success 1.5x", 0.85, 0.25, 0.85 * (1 - 1.5 * 0.25), True),
        ("stable 0.95", 0.95, 0.20, 0.95, False),
        ("contract_rate 1.5x", 0.95, 0.20, 0.95 * 0.7, True),
        ("testing flow", 0.95, 0.20, 0.20, True),
        ("stable 0.10 (margin)", 0.10, 0.15, 0.10, False),
    ],
)
def test_drift_sign(name: str, p0: float, max_drop: float, rate: float, climbs: bool) -> None:
    """The expected increment is negative on stable and sub-threshold streams, positive on real drops."""
    n = 200
    s = round(p0 * n)
    ref = reference_of(WindowStats(n, float(s), float(s)), Aggregation.SUCCESS_RATE, max_drop)
    assert ref is not None
    assert (drift(ref, rate) > 0.0) is climbs, name


@pytest.mark.parametrize(
    ("x", "expected"),
    [(350.0, 0.0), (300.0, 2 * 150 * 50 / 100**2), (400.0, -2 * 150 * 50 / 100**2)],
)
def test_gaussian_llr(x: float, expected: float) -> None:
    """N(mu1, sd) against N(mu0, sd) with mu1 = 2 * level - mu0: zero at the level, linear around it."""
    assert gaussian_llr(500.0, 350.0, 100.0, x) == pytest.approx(expected)
    mu1 = 2 * 350.0 - 500.0
    direct = (-((x - mu1) ** 2) + (x - 500.0) ** 2) / (2 * 100.0**2)
    assert gaussian_llr(500.0, 350.0, 100.0, x) == pytest.approx(direct)


@pytest.mark.parametrize(("x", "expected"), [(349.0, math.inf), (351.0, -math.inf), (350.0, 0.0)])
def test_gaussian_llr_zero_variance(x: float, expected: float) -> None:
    """A noiseless baseline is exact: below the level a certain drop, above it certainly none, at it nothing."""
    assert gaussian_llr(500.0, 350.0, 0.0, x) == expected


# --- folding ------------------------------------------------------------------------------------------


def test_reference_freezes_while_the_statistic_is_positive() -> None:
    """A failure lifts the statistic and freezes the reference; later baselines are ignored until it is 0 again."""
    policy = CONTRACT
    first = WindowStats(200, 190.0, 190.0)
    other = WindowStats(200, 100.0, 100.0)
    climbed = fold(FRESH, [(0.0, first)], policy)
    assert climbed.statistic > 0.0
    frozen = climbed.reference
    assert frozen == reference_of(first, Aggregation.SUCCESS_RATE, 0.20)
    still = fold(climbed, [(0.0, other)], policy)
    assert still.reference == frozen
    assert still.statistic == pytest.approx(2 * climbed.statistic)
    # Successes bring it back to 0; the next event takes the reference of its own baseline.
    back = fold(still, [(1.0, other)] * 20, policy)
    assert back.statistic == 0.0
    fresh = fold(back, [(1.0, other)], policy)
    assert fresh.reference == reference_of(other, Aggregation.SUCCESS_RATE, 0.20)


@pytest.mark.parametrize(("baseline_n", "folded"), [(49, False), (50, True)])
def test_events_without_a_full_enough_baseline_are_not_folded(baseline_n: int, folded: bool) -> None:
    """An event whose baseline holds fewer than min_events_to_enforce events has no reference: skipped."""
    state = fold(FRESH, [(0.0, WindowStats(baseline_n, float(baseline_n), float(baseline_n)))], CONTRACT)
    assert (state.statistic > 0.0) is folded
    assert (state.reference is not None) is folded


def test_a_certain_drop_is_stored_as_a_finite_number() -> None:
    """A value below a noiseless baseline's level gives +inf, capped so JSON and SQL can store it; above resets."""
    noiseless = WindowStats.from_values([500.0] * 200)
    hit = fold(FRESH, [(100.0, noiseless)], ROI)
    assert math.isfinite(hit.statistic) and hit.statistic >= boundary(ROI.guard_alpha)
    assert fold(hit, [(600.0, noiseless)], ROI).statistic == 0.0


def test_play_equals_folding_in_batches() -> None:
    """Folding a stream in one batch or in several gives the same state (each event has its own baseline)."""
    rng = random.Random(5)
    values = [1.0 if rng.random() < 0.9 else 0.0 for _ in range(300)] + [
        1.0 if rng.random() < 0.5 else 0.0 for _ in range(100)
    ]
    whole = play(CONTRACT, values)
    parts = FRESH
    for start, end in ((0, 120), (120, 121), (121, 333), (333, 400)):
        parts = play(CONTRACT, values[:end], parts, start)
    assert parts == whole


def test_boundary() -> None:
    """h = ln(1 / guard_alpha) + slack: about 14.2 at the default 3e-6."""
    assert boundary(3e-6) == pytest.approx(math.log(1 / 3e-6) + BOUNDARY_SLACK)
    assert boundary(1e-3) < boundary(3e-6)


# --- evaluate with the sequential guard: the seed's flow and scenarios ------------------------------


def test_seed_testing_flow() -> None:
    """200 events at 95%: not triggered; 50 more at 20%: triggered with drop_fraction 0.789."""
    events = successes(200, 0.95)
    _, triggered, note = verdict_after(CONTRACT, events)
    assert not triggered
    assert note.startswith("OK drop=")
    events += successes(50, 0.20)
    cusum, triggered, note = verdict_after(CONTRACT, events)
    assert triggered
    assert note == "TRIGGERED drop=0.789 action=THROTTLE"
    assert cusum.statistic >= boundary(CONTRACT.guard_alpha)


def test_seed_scenario_1_triggers() -> None:
    """95% -> 60% with a 20% threshold (drop 0.368) triggers THROTTLE."""
    policy = dataclasses.replace(CONTRACT, metric="offer_accept_rate")
    _, triggered, note = verdict_after(policy, successes(200, 0.95) + successes(50, 0.60))
    assert triggered
    assert note == "TRIGGERED drop=0.368 action=THROTTLE"


def test_seed_scenario_2_does_not_trigger() -> None:
    """85% -> 70% with a 25% threshold (drop 0.176), evenly spread: no trigger, the statistic far from h."""
    cusum, triggered, note = verdict_after(MATCH, successes(200, 0.85) + successes(50, 0.70))
    assert not triggered
    assert note == "OK drop=0.176"
    assert cusum.statistic < boundary(MATCH.guard_alpha) / 2


@pytest.mark.parametrize("noise", [0.0, 50.0, 250.0])
def test_seed_scenario_3_triggers_kill_switch(noise: float) -> None:
    """A mean of +500 flipping to -300 (with normal noise) is a drop of about 1.6: KILL_SWITCH."""
    rng = random.Random(int(noise))
    values = [rng.gauss(500, noise) for _ in range(200)] + [rng.gauss(-300, noise) for _ in range(50)]
    _, triggered, note = verdict_after(ROI, values)
    assert triggered
    assert re.fullmatch(r"TRIGGERED drop=1\.\d{3} action=KILL_SWITCH", note)


def test_stable_streams_do_not_trigger_over_5000_events() -> None:
    """Stable rates of 0.10, 0.50 and 0.95 (seeded), folded event by event for 5,000 events: no trigger."""
    for rate, x in ((0.10, 0.15), (0.50, 0.15), (0.95, 0.20)):
        rng = random.Random(20260113)
        values = [1.0 if rng.random() < rate else 0.0 for _ in range(5250)]
        policy = dataclasses.replace(CONTRACT, max_drop_fraction=x)
        state, peak = FRESH, 0.0
        for i in range(250, len(values)):
            state = play(policy, values[: i + 1], state, i)
            peak = max(peak, state.statistic)
        assert peak < boundary(policy.guard_alpha), rate


def test_held_note_and_evidence() -> None:
    """A point drop past the threshold with the statistic below h is HELD, and the state reports the evidence."""
    recent, baseline = WindowStats(50, 19.0, 19.0), WindowStats(200, 100.0, 100.0)
    ref = reference_of(baseline, Aggregation.SUCCESS_RATE, 0.20)
    result = evaluate(CONTRACT, recent, baseline, Cusum(3.25, ref))
    assert not result.triggered
    assert result.note == "HELD drop=0.240 guard=sequential statistic=3.25 (needs >= 14.22)"
    assert result.evidence == {
        "statistic": 3.25, "boundary": boundary(3e-6), "reference": ref.value if ref else None,
        "level": ref.level if ref else None,
    }


def test_without_state_the_sequential_guard_never_triggers() -> None:
    """evaluate without a CUSUM uses a fresh one (statistic 0): even a collapse is held until events are folded."""
    result = evaluate(CONTRACT, WindowStats(50, 0.0, 0.0), WindowStats(200, 200.0, 200.0))
    assert not result.triggered
    assert result.note.startswith("HELD drop=1.000 guard=sequential statistic=0.00")
    assert result.evidence is not None and result.evidence["reference"] is None


def test_insufficient_data_and_zero_baseline() -> None:
    """Below min_events_to_enforce nothing triggers, however high the statistic; a zero baseline is undefined."""
    high = Cusum(1e6, Reference(0.9, 0.7))
    short = evaluate(CONTRACT, WindowStats(10, 0.0, 0.0), WindowStats(200, 190.0, 190.0), high)
    assert not short.triggered and short.note.startswith("INSUFFICIENT_DATA")
    undefined = evaluate(CONTRACT, WindowStats(50, 10.0, 10.0), WindowStats(200, 0.0, 0.0), high)
    assert not undefined.triggered and undefined.note == "UNDEFINED_DROP baseline=0 current=0.200"
