"""The combined guard: the evidence guard's window test, or a CUSUM backstop whose reference renews on evidence."""

from __future__ import annotations

import dataclasses
import math
import random
import re

import pytest

from kpiguard.tripwire import Action, Aggregation, Guard, Policy, WindowStats, evaluate, split_windows
from kpiguard.tripwire._sequential import (
    BACKSTOP_BOUNDARY,
    BACKSTOP_MARGIN,
    BACKSTOP_STEP,
    FRESH,
    REFERENCE_MARGIN,
    Cusum,
    Reference,
    bernoulli_llr,
    boundary,
    fold,
    play,
    reference_of,
    scheme,
)

CONTRACT = Policy("WHOLESALE", "contract_rate", guard=Guard.COMBINED)
MATCH = Policy("BUYER_MATCH", "match_success", max_drop_fraction=0.25, guard=Guard.COMBINED)
ROI = Policy(
    "CAPITAL", "roi_event", max_drop_fraction=0.30, action=Action.KILL_SWITCH, aggregation=Aggregation.MEAN_VALUE,
    guard=Guard.COMBINED,
)


def successes(n: int, rate: float) -> list[float]:
    """n events with round(n * rate) successes spread evenly, oldest first."""
    k = round(n * rate)
    return [1.0 if (i * k) // n != ((i + 1) * k) // n else 0.0 for i in range(n)]


def slide(start: float, end: float, steady: int, length: int, tail: int) -> list[float]:
    """``steady`` events at ``start``, a linear slide to ``end`` over ``length`` events, ``tail`` events at ``end``."""
    rates = [start] * steady + [start + (end - start) * i / length for i in range(length)] + [end] * tail
    out, carried = [], 0.0
    for rate in rates:  # successes spread as evenly as the changing rate allows
        carried += rate
        out.append(1.0 if carried >= 1.0 else 0.0)
        carried -= out[-1]
    return out


def first_trigger(policy: Policy, values: list[float], start: int) -> int | None:
    """Evaluate after every event from ``start`` on, folding as the service does; the first triggering index."""
    state = FRESH
    for i in range(start, len(values)):
        state = play(policy, values[: i + 1], state, i)
        recent, baseline = split_windows(values[: i + 1][::-1], policy.window_events, policy.baseline_events)
        if evaluate(policy, recent, baseline, state).triggered:
            return i
    return None


# --- the scheme of each guard -------------------------------------------------------------------------------


def test_schemes() -> None:
    """sequential: h from guard_alpha, renewal at 0, margin 4; combined: the backstop's fixed boundary and margin."""
    sequential = scheme(dataclasses.replace(CONTRACT, guard=Guard.SEQUENTIAL))
    assert (sequential.boundary, sequential.renewal, sequential.margin) == (boundary(3e-6), 0.0, REFERENCE_MARGIN)
    backstop = scheme(CONTRACT)
    assert (backstop.boundary, backstop.renewal, backstop.margin) == (
        BACKSTOP_BOUNDARY, BACKSTOP_BOUNDARY, BACKSTOP_MARGIN)
    # guard_alpha belongs to the window test: the backstop's boundary does not move with it.
    assert scheme(dataclasses.replace(CONTRACT, guard_alpha=1e-9)).boundary == BACKSTOP_BOUNDARY


def test_backstop_level_keeps_its_wider_margin() -> None:
    """At rate 0.70 with X = 0.15 the margin binds: 5 standard errors below the shrunk rate, not 4."""
    ref = fold(FRESH, [(1.0, WindowStats(200, 140.0, 140.0))], dataclasses.replace(CONTRACT, max_drop_fraction=0.15))
    assert ref.reference is not None
    p0 = 140.5 / 201
    assert ref.reference.level == pytest.approx(p0 - BACKSTOP_MARGIN * math.sqrt(p0 * (1 - p0) / 200))
    assert ref.reference == reference_of(WindowStats(200, 140.0, 140.0), Aggregation.SUCCESS_RATE, 0.15,
                                         BACKSTOP_MARGIN)


# --- the backstop's reference renews on evidence, not whenever the statistic is back at 0 ---------------------


def test_reference_stays_when_the_statistic_returns_to_zero() -> None:
    """A failure freezes the reference; successes bring the statistic back to 0, yet later baselines are ignored."""
    first, other = WindowStats(200, 190.0, 190.0), WindowStats(200, 120.0, 120.0)
    climbed = fold(FRESH, [(0.0, first)], CONTRACT)
    frozen = climbed.reference
    assert frozen is not None and climbed.statistic > 0.0 and climbed.total == climbed.statistic
    back = fold(climbed, [(1.0, other)] * 5, CONTRACT)
    assert back.statistic == 0.0 and back.total < 0.0
    assert back.reference == frozen
    # Page's CUSUM (guard: sequential) takes the other baseline's reference as soon as it is back at 0.
    sequential = dataclasses.replace(CONTRACT, guard=Guard.SEQUENTIAL)
    assert fold(fold(FRESH, [(0.0, first)], sequential), [(1.0, other)] * 5, sequential).reference != frozen


def test_reference_renews_once_the_events_favour_no_drop_by_the_boundary() -> None:
    """Successes take the total since the reference down; at -BACKSTOP_BOUNDARY the next event takes a fresh one."""
    first, other = WindowStats(200, 190.0, 190.0), WindowStats(200, 120.0, 120.0)
    state = fold(FRESH, [(1.0, first)], CONTRACT)
    assert state.reference is not None
    per_success = state.total  # each success adds the same (negative) log-likelihood ratio
    assert per_success < 0.0
    needed = math.ceil(BACKSTOP_BOUNDARY / -per_success)  # successes, the first included, to reach -h
    state = fold(state, [(1.0, other)] * (needed - 2), CONTRACT)
    assert state.total > -BACKSTOP_BOUNDARY and state.reference == reference_of(
        first, Aggregation.SUCCESS_RATE, 0.20, BACKSTOP_MARGIN)
    state = fold(state, [(1.0, other)], CONTRACT)
    assert state.total <= -BACKSTOP_BOUNDARY
    renewed = fold(state, [(1.0, other)], CONTRACT)
    fresh = reference_of(other, Aggregation.SUCCESS_RATE, 0.20, BACKSTOP_MARGIN)
    assert fresh is not None and renewed.reference == fresh
    # Both restart with the new reference: the sum holds this one success's ratio only.
    assert renewed.statistic == 0.0 and renewed.total == pytest.approx(bernoulli_llr(fresh.value, fresh.level)[1])


def test_an_inert_reference_is_renewed_at_every_event() -> None:
    """At a rate the margin leaves nothing to detect below (level <= 0), the next event takes its own baseline."""
    low, higher = WindowStats(200, 10.0, 10.0), WindowStats(200, 120.0, 120.0)
    inert = fold(FRESH, [(0.0, low)], CONTRACT)
    assert inert.reference is not None and inert.reference.inert and inert.statistic == 0.0 and inert.total == 0.0
    moved = fold(inert, [(0.0, higher)], CONTRACT)
    assert moved.reference is not None and not moved.reference.inert and moved.statistic > 0.0


def test_one_event_moves_the_backstop_by_at_most_its_step() -> None:
    """On a noiseless baseline a value below the level counts BACKSTOP_STEP, not a certain drop (ten fire it), and
    a value above it -BACKSTOP_STEP (ten renew the reference)."""
    noiseless, other = WindowStats.from_values([500.0] * 200), WindowStats.from_values([400.0, 600.0] * 100)
    h = scheme(ROI).boundary
    assert h == BACKSTOP_BOUNDARY and BACKSTOP_STEP * 10 == pytest.approx(h)
    low = fold(FRESH, [(-300.0, noiseless)] * 5, ROI)
    assert low.statistic == pytest.approx(5 * BACKSTOP_STEP) and low.statistic < h  # the seed's quiet hour
    assert fold(low, [(-300.0, noiseless)] * 5, ROI).statistic >= h
    high = fold(FRESH, [(600.0, noiseless)] * 9, ROI)
    assert high.statistic == 0.0 and high.total == pytest.approx(-9 * BACKSTOP_STEP)
    assert high.reference == reference_of(noiseless, Aggregation.MEAN_VALUE, 0.30, BACKSTOP_MARGIN)
    renewed = fold(high, [(600.0, noiseless), (600.0, other)], ROI)
    assert renewed.reference == reference_of(other, Aggregation.MEAN_VALUE, 0.30, BACKSTOP_MARGIN)


def test_sequential_keeps_the_ratio_sum_equal_to_its_statistic() -> None:
    """Page's CUSUM: the sum since the reference was taken is the statistic until both restart at 0."""
    rng = random.Random(11)
    values = [1.0 if rng.random() < 0.9 else 0.0 for _ in range(300)] + [
        1.0 if rng.random() < 0.6 else 0.0 for _ in range(200)]
    policy = dataclasses.replace(CONTRACT, guard=Guard.SEQUENTIAL)
    state = FRESH
    for i in range(250, len(values)):
        state = play(policy, values[: i + 1], state, i)
        assert state.total == state.statistic or (state.statistic == 0.0 and state.total <= 0.0)


def test_play_equals_folding_in_batches() -> None:
    """The backstop folded in one batch or in several gives the same state (each event has its own baseline)."""
    rng = random.Random(5)
    values = [1.0 if rng.random() < 0.9 else 0.0 for _ in range(300)] + [
        1.0 if rng.random() < 0.6 else 0.0 for _ in range(300)]
    whole = play(CONTRACT, values)
    parts = FRESH
    for start, end in ((0, 120), (120, 121), (121, 333), (333, 600)):
        parts = play(CONTRACT, values[:end], parts, start)
    assert parts == whole


# --- evaluate -------------------------------------------------------------------------------------------------


def test_window_test_triggers_without_the_backstop() -> None:
    """The evidence guard's verdict on the windows is enough: a fresh backstop does not hold it back."""
    recent, baseline = split_windows((successes(200, 0.95) + successes(50, 0.20))[::-1], 50, 200)
    result = evaluate(CONTRACT, recent, baseline, FRESH)
    assert result.triggered and result.note == "TRIGGERED drop=0.789 action=THROTTLE"
    assert result.evidence is not None
    assert set(result.evidence) == {"p_value", "confidence", "drop_low", "drop_high", "statistic", "boundary",
                                    "reference", "level"}
    assert result.evidence["statistic"] == 0.0 and result.evidence["boundary"] == BACKSTOP_BOUNDARY


def test_backstop_triggers_whatever_the_windows_show() -> None:
    """A statistic at the backstop's boundary triggers even where the windows show no drop past the threshold."""
    recent, baseline = WindowStats(50, 40.0, 40.0), WindowStats(200, 170.0, 170.0)
    ref = Reference(0.9, 0.72)
    assert evaluate(CONTRACT, recent, baseline, Cusum(BACKSTOP_BOUNDARY, ref, 45.0)).note == (
        "TRIGGERED drop=0.059 action=THROTTLE")
    below = evaluate(CONTRACT, recent, baseline, Cusum(BACKSTOP_BOUNDARY - 0.01, ref, 39.99))
    assert not below.triggered and below.note == "OK drop=0.059"


def test_held_note_names_both_parts() -> None:
    """A point drop past the threshold that neither part confirms is HELD, with both parts' figures."""
    recent, baseline = WindowStats(50, 19.0, 19.0), WindowStats(200, 100.0, 100.0)
    result = evaluate(CONTRACT, recent, baseline, Cusum(3.25, Reference(0.5, 0.4), 3.25))
    assert not result.triggered
    assert re.fullmatch(
        r"HELD drop=0\.240 guard=combined confidence=0\.\d{3} \(needs 0\.950\) p_value=\S+ \(needs <= 3\.0e-06\) "
        r"statistic=3\.25 \(needs >= 40\.00\)",
        result.note,
    )


def test_insufficient_data_and_zero_baseline() -> None:
    """Below min_events_to_enforce nothing triggers, even the backstop at its boundary; a zero baseline is undefined."""
    high = Cusum(1e6, Reference(0.9, 0.7), 1e6)
    short = evaluate(CONTRACT, WindowStats(10, 0.0, 0.0), WindowStats(200, 190.0, 190.0), high)
    assert not short.triggered and short.note.startswith("INSUFFICIENT_DATA")
    undefined = evaluate(CONTRACT, WindowStats(50, 10.0, 10.0), WindowStats(200, 0.0, 0.0), high)
    assert not undefined.triggered and undefined.note == "UNDEFINED_DROP baseline=0 current=0.200"


# --- the seed's flow and scenarios, evaluated after every event ------------------------------------------------


def test_seed_testing_flow_and_scenario_1() -> None:
    """200 events at 95% then 20% (or 60%, scenario 1) trigger within the 50 new events, as the seed's flow says."""
    for policy, rate in ((CONTRACT, 0.20), (dataclasses.replace(CONTRACT, metric="offer_accept_rate"), 0.60)):
        found = first_trigger(policy, successes(200, 0.95) + successes(50, rate), 200)
        assert found is not None and found < 250, rate


@pytest.mark.parametrize("noise", [0.0, 50.0, 250.0])
def test_seed_scenario_3_triggers_kill_switch(noise: float) -> None:
    """A mean of +500 flipping to -300 (with normal noise) triggers within the 50 new events."""
    rng = random.Random(int(noise))
    values = [rng.gauss(500, noise) for _ in range(200)] + [rng.gauss(-300, noise) for _ in range(50)]
    found = first_trigger(ROI, values, 200)
    assert found is not None and found < 250


def test_seed_scenario_2_does_not_trigger_over_5000_events() -> None:
    """85% -> 70% (drop 0.176 < 0.25), evaluated after every one of 5,000 events: never triggered."""
    values = successes(200, 0.85) + successes(5000, 0.70)
    assert first_trigger(MATCH, values, 200) is None


def test_stable_streams_do_not_trigger_over_5000_events() -> None:
    """Stable rates of 0.10, 0.50 and 0.95 (seeded), evaluated after every one of 5,000 events: no trigger."""
    for rate, x in ((0.10, 0.15), (0.50, 0.15), (0.95, 0.20)):
        rng = random.Random(20260113)
        values = [1.0 if rng.random() < rate else 0.0 for _ in range(5250)]
        assert first_trigger(dataclasses.replace(CONTRACT, max_drop_fraction=x), values, 250) is None, rate


def test_a_slide_the_windows_follow_down_is_caught() -> None:
    """0.85 sliding to 0.55 over 600 events: the windows and Page's CUSUM follow it down, the backstop does not."""
    values = slide(0.85, 0.55, 250, 600, 1500)
    for guard in (Guard.NONE, Guard.EVIDENCE, Guard.SEQUENTIAL):
        assert first_trigger(dataclasses.replace(MATCH, guard=guard), values, 250) is None, guard
    found = first_trigger(MATCH, values, 250)
    assert found is not None and found > 250 + 600  # once the slide has gone past the threshold
