"""The count-window evaluator: windows, drop_fraction, the seed's flow and scenarios, the notes."""

from __future__ import annotations

import dataclasses
import math
import random
import re
import statistics

import pytest

from kpiguard.tripwire import (
    Action,
    Aggregation,
    Guard,
    Policy,
    WindowStats,
    drop_fraction,
    evaluate,
    event_value,
    split_windows,
)

GUARDS = (Guard.NONE, Guard.EVIDENCE)


def successes(n: int, rate: float) -> list[float]:
    """n events with round(n * rate) successes spread evenly, oldest first."""
    k = round(n * rate)
    return [1.0 if (i * k) // n != ((i + 1) * k) // n else 0.0 for i in range(n)]


def windows_after(events_oldest_first: list[float], policy: Policy) -> tuple[WindowStats, WindowStats]:
    """The policy's (recent, baseline) windows after the given events."""
    return split_windows(events_oldest_first[::-1], policy.window_events, policy.baseline_events)


CONTRACT = Policy("WHOLESALE", "contract_rate")
MATCH = Policy("BUYER_MATCH", "match_success", max_drop_fraction=0.25)
ROI = Policy(
    "CAPITAL", "roi_event", max_drop_fraction=0.30, action=Action.KILL_SWITCH, aggregation=Aggregation.MEAN_VALUE
)


# --- WindowStats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [[1.0], [0.0, 1.0, 1.0], [500.0, -300.0, 12.5, 7.0], [3.0] * 10, [random.Random(1).gauss(0, 5) for _ in range(99)]],
)
def test_window_stats_matches_the_statistics_module(values: list[float]) -> None:
    """Mean and sample variance equal statistics.fmean / statistics.variance (0.0 below two values)."""
    stats = WindowStats.from_values(values)
    assert stats.n == len(values)
    assert stats.mean == pytest.approx(statistics.fmean(values))
    expected = statistics.variance(values) if len(values) > 1 else 0.0
    assert stats.variance == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("cut", [0, 1, 7, 20])
def test_window_stats_add_and_subtract_like_concatenation(cut: int) -> None:
    """Windows of two slices add up to the whole; subtracting a slice gives the rest back."""
    values = [random.Random(cut).uniform(-10, 10) for _ in range(20)]
    left, right = WindowStats.from_values(values[:cut]), WindowStats.from_values(values[cut:])
    whole = WindowStats.from_values(values)
    combined = left + right
    assert combined.n == whole.n
    assert combined.total == pytest.approx(whole.total)
    assert combined.total_sq == pytest.approx(whole.total_sq)
    rest = whole - left
    assert rest.n == right.n
    assert rest.total == pytest.approx(right.total, abs=1e-9)


def test_window_stats_slides_incrementally() -> None:
    """Adding the new event and removing the oldest keeps a sliding window equal to a fresh one."""
    rng = random.Random(3)
    values = [rng.gauss(100, 30) for _ in range(300)]
    window = WindowStats.from_values(values[:50])
    for i in range(50, 300):
        window = window + WindowStats.of(values[i]) - WindowStats.of(values[i - 50])
    fresh = WindowStats.from_values(values[250:])
    assert window.n == 50
    assert window.mean == pytest.approx(fresh.mean)
    assert window.variance == pytest.approx(fresh.variance, rel=1e-9)


def test_empty_window_has_no_mean_and_removing_too_much_fails() -> None:
    """An empty window's mean is None; taking more events out than a window holds is an error."""
    assert WindowStats().mean is None
    assert WindowStats().variance == 0.0
    with pytest.raises(ValueError):
        WindowStats.from_values([1.0]) - WindowStats.from_values([1.0, 2.0])


def test_constant_values_have_zero_variance_not_a_rounding_negative() -> None:
    """Rounding in the sum of squares never yields a negative variance."""
    assert WindowStats.from_values([0.1] * 7).variance == 0.0
    assert WindowStats.from_values([1e8 + 0.1] * 50).variance >= 0.0


@pytest.mark.parametrize(
    ("history", "window", "baseline", "expected_recent", "expected_baseline"),
    [
        ([5, 4, 3, 2, 1], 2, 2, [5, 4], [3, 2]),
        ([5, 4, 3], 2, 5, [5, 4], [3]),  # baseline shorter than asked
        ([5], 2, 5, [5], []),
        ([], 2, 5, [], []),
    ],
)
def test_split_windows_takes_newest_first(
    history: list[float], window: int, baseline: int, expected_recent: list[float], expected_baseline: list[float]
) -> None:
    """Recent = the newest window_events values, baseline = the baseline_events just before them."""
    recent, base = split_windows(history, window, baseline)
    assert recent == WindowStats.from_values(expected_recent)
    assert base == WindowStats.from_values(expected_baseline)


@pytest.mark.parametrize(("window", "baseline"), [(0, 200), (50, 0), (-1, 5)])
def test_split_windows_rejects_non_positive_sizes(window: int, baseline: int) -> None:
    """Window sizes must be positive."""
    with pytest.raises(ValueError):
        split_windows([1.0], window, baseline)


@pytest.mark.parametrize(
    ("aggregation", "success", "value", "expected"),
    [
        (Aggregation.SUCCESS_RATE, True, None, 1.0),
        (Aggregation.SUCCESS_RATE, False, 42.0, 0.0),
        (Aggregation.MEAN_VALUE, False, -300.0, -300.0),
        (Aggregation.MEAN_VALUE, True, 500, 500.0),
    ],
)
def test_event_value(aggregation: Aggregation, success: bool, value: float | None, expected: float) -> None:
    """A success rate counts 1.0/0.0; a mean uses the event's value."""
    assert event_value(aggregation, success, value) == expected


def test_event_value_needs_a_value_for_a_mean() -> None:
    """A mean_value policy cannot use an event without a value; the error names the field."""
    with pytest.raises(ValueError, match="value"):
        event_value(Aggregation.MEAN_VALUE, True, None)


# --- drop_fraction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "current", "expected"),
    [
        (0.95, 0.75, 0.2 / 0.95),  # the seed's state example, 0.211
        (0.95, 0.20, 0.75 / 0.95),  # the seed's testing flow, 0.789
        (500.0, -300.0, 1.6),  # a mean flipping sign drops by more than 1
        (-500.0, -650.0, 0.3),  # a negative baseline: the drop is measured against |baseline|
        (-500.0, -350.0, -0.3),
        (0.5, 0.6, -0.2),  # an improvement is a negative drop
        (0.0, 0.0, 0.0),  # zero stays zero: no change
        (0.0, 0.2, None),  # a zero baseline has no scale: undefined, never a division by zero
        (0.0, -5.0, None),
        (None, 0.5, None),
        (0.5, None, None),
    ],
)
def test_drop_fraction(baseline: float | None, current: float | None, expected: float | None) -> None:
    """(baseline - current) / |baseline|, with the zero-baseline rule."""
    result = drop_fraction(baseline, current)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


# --- the seed's testing flow and scenarios, plain rule and guard -------------------------------


@pytest.mark.parametrize("guard", GUARDS)
def test_seed_testing_flow(guard: Guard) -> None:
    """200 events at 95%: not triggered; 50 more at 20%: triggered with drop_fraction 0.789."""
    policy = dataclasses.replace(CONTRACT, guard=guard)
    events = successes(200, 0.95)
    first = evaluate(policy, *windows_after(events, policy))
    assert not first.triggered
    assert first.note.startswith("OK drop=")
    events += successes(50, 0.20)
    second = evaluate(policy, *windows_after(events, policy))
    assert second.triggered
    assert second.enforceable
    assert round(second.drop_fraction or 0.0, 3) == 0.789
    assert second.baseline == pytest.approx(0.95)
    assert second.current == pytest.approx(0.20)
    assert (second.recent_events, second.baseline_events) == (50, 200)
    assert second.note == "TRIGGERED drop=0.789 action=THROTTLE"
    assert (second.domain, second.metric) == ("WHOLESALE", "contract_rate")


@pytest.mark.parametrize("guard", GUARDS)
def test_seed_scenario_1_triggers(guard: Guard) -> None:
    """95% -> 60% with a 20% threshold (drop 0.368) triggers THROTTLE."""
    policy = dataclasses.replace(Policy("WHOLESALE", "offer_accept_rate", max_drop_fraction=0.20), guard=guard)
    result = evaluate(policy, *windows_after(successes(200, 0.95) + successes(50, 0.60), policy))
    assert result.triggered
    assert result.note == "TRIGGERED drop=0.368 action=THROTTLE"


@pytest.mark.parametrize("guard", GUARDS)
def test_seed_scenario_2_does_not_trigger(guard: Guard) -> None:
    """85% -> 70% with a 25% threshold (drop 0.176) does not trigger."""
    policy = dataclasses.replace(MATCH, guard=guard)
    result = evaluate(policy, *windows_after(successes(200, 0.85) + successes(50, 0.70), policy))
    assert not result.triggered
    assert result.note == "OK drop=0.176"


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("noise", [0.0, 50.0, 250.0])
def test_seed_scenario_3_triggers_kill_switch(guard: Guard, noise: float) -> None:
    """A mean of +500 flipping to -300 (with normal noise) is a drop of about 1.6: KILL_SWITCH."""
    rng = random.Random(int(noise))
    policy = dataclasses.replace(ROI, guard=guard)
    values = [rng.gauss(500, noise) for _ in range(200)] + [rng.gauss(-300, noise) for _ in range(50)]
    result = evaluate(policy, *windows_after(values, policy))
    assert result.triggered
    assert result.drop_fraction == pytest.approx(1.6, abs=0.2)
    assert re.fullmatch(r"TRIGGERED drop=1\.\d{3} action=KILL_SWITCH", result.note)


# --- enforceability, zero baseline, zero variance -----------------------------------------------


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize(
    ("n_recent", "n_baseline", "note"),
    [
        (10, 0, "INSUFFICIENT_DATA recent=10 baseline=0 min=50"),
        (50, 49, "INSUFFICIENT_DATA recent=50 baseline=49 min=50"),
        (0, 0, "INSUFFICIENT_DATA recent=0 baseline=0 min=50"),
    ],
)
def test_insufficient_data_never_triggers(guard: Guard, n_recent: int, n_baseline: int, note: str) -> None:
    """Below min_events_to_enforce in either window: not enforceable, not triggered, however bad."""
    policy = dataclasses.replace(CONTRACT, guard=guard)
    result = evaluate(policy, WindowStats(n_recent, 0.0, 0.0), WindowStats(n_baseline, float(n_baseline), 0.0))
    assert not result.triggered
    assert not result.enforceable
    assert result.note == note
    assert result.evidence is None


@pytest.mark.parametrize("guard", GUARDS)
def test_zero_baseline_is_undefined_not_a_division(guard: Guard) -> None:
    """A baseline rate of 0 gives no drop_fraction and no trigger; 0 -> 0 is a drop of 0."""
    policy = dataclasses.replace(CONTRACT, guard=guard)
    moved = evaluate(policy, WindowStats(50, 10.0, 10.0), WindowStats(200, 0.0, 0.0))
    assert moved.drop_fraction is None
    assert not moved.triggered
    assert moved.note == "UNDEFINED_DROP baseline=0 current=0.200"
    still = evaluate(policy, WindowStats(50, 0.0, 0.0), WindowStats(200, 0.0, 0.0))
    assert still.drop_fraction == 0.0
    assert not still.triggered


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize(
    ("recent", "baseline", "triggered", "drop"),
    [
        (-300.0, 500.0, True, 1.6),
        (350.0, 500.0, True, 0.3),  # exactly the threshold, no noise: triggers
        (400.0, 500.0, False, 0.2),
        (500.0, 500.0, False, 0.0),
        (-650.0, -500.0, True, 0.3),
    ],
)
def test_zero_variance_windows(guard: Guard, recent: float, baseline: float, triggered: bool, drop: float) -> None:
    """Constant windows give exact answers: the drop alone decides, with or without the guard."""
    policy = dataclasses.replace(ROI, guard=guard)
    result = evaluate(policy, WindowStats.from_values([recent] * 50), WindowStats.from_values([baseline] * 200))
    assert result.triggered is triggered
    assert result.drop_fraction == pytest.approx(drop)
    if guard is Guard.EVIDENCE:
        assert result.evidence is not None
        assert result.evidence["confidence"] == (1.0 if triggered else 0.0)


def test_a_drop_equal_to_the_threshold_triggers_despite_float_rounding() -> None:
    """0.5 -> 0.4 is a drop of exactly 0.2 (0.19999999999999996 in floats) and triggers the plain rule."""
    policy = dataclasses.replace(CONTRACT, guard=Guard.NONE)
    result = evaluate(policy, WindowStats(50, 20.0, 20.0), WindowStats(200, 100.0, 100.0))
    assert result.triggered
    assert result.note == "TRIGGERED drop=0.200 action=THROTTLE"


# --- the guard in evaluate ----------------------------------------------------------------------


def test_guard_holds_a_noisy_drop_and_says_why() -> None:
    """A 24% dip of a 50% rate in 50 events triggers the plain rule but the guard holds it, with its evidence."""
    recent, baseline = WindowStats(50, 19.0, 19.0), WindowStats(200, 100.0, 100.0)
    plain = evaluate(dataclasses.replace(CONTRACT, guard=Guard.NONE), recent, baseline)
    held = evaluate(dataclasses.replace(CONTRACT, guard=Guard.EVIDENCE), recent, baseline)
    assert plain.triggered
    assert plain.evidence is None
    assert not held.triggered
    assert held.drop_fraction == plain.drop_fraction
    assert held.evidence is not None
    assert re.fullmatch(
        r"HELD drop=0\.240 guard=evidence confidence=0\.\d{3} \(needs 0\.950\) "
        r"p_value=\d\.\de-\d\d \(needs <= 3\.0e-06\)",
        held.note,
    ), held.note
    assert held.evidence["p_value"] > CONTRACT.guard_alpha
    # The default, combined, holds it too and names its backstop's statistic beside the window test.
    default = evaluate(CONTRACT, recent, baseline)
    assert not default.triggered
    assert default.note == held.note.replace("guard=evidence", "guard=combined") + " statistic=0.00 (needs >= 40.00)"


def test_new_policies_default_to_the_guard() -> None:
    """A policy without a guard setting gets the combined guard (window test or backstop) with documented parameters."""
    policy = Policy("WHOLESALE", "contract_rate")
    assert policy.guard is Guard.COMBINED
    assert 0.5 <= policy.guard_confidence < 1.0
    assert 0.0 < policy.guard_alpha < 1e-3


def test_guard_as_stored_string_is_understood() -> None:
    """A guard read back from the database as a plain string behaves like the enum."""
    recent, baseline = WindowStats(50, 19.0, 19.0), WindowStats(200, 100.0, 100.0)
    as_text = dataclasses.replace(CONTRACT, guard="none")  # type: ignore[arg-type]
    assert evaluate(as_text, recent, baseline).triggered
    assert evaluate(as_text, recent, baseline).evidence is None


@pytest.mark.parametrize("guard", GUARDS)
def test_ok_note_and_improvement(guard: Guard) -> None:
    """No drop: OK with the (negative) drop in three decimals."""
    policy = dataclasses.replace(CONTRACT, guard=guard)
    result = evaluate(policy, WindowStats(50, 50.0, 50.0), WindowStats(200, 180.0, 180.0))
    assert not result.triggered
    assert result.note == "OK drop=-0.111"


def test_evidence_is_reported_beside_the_drop() -> None:
    """The guard's evidence carries p_value, confidence and the drop interval around drop_fraction (and, for the
    combined guard, its backstop's statistic beside them)."""
    windows = windows_after(successes(200, 0.95) + successes(50, 0.20), CONTRACT)
    combined = evaluate(CONTRACT, *windows).evidence
    result = evaluate(dataclasses.replace(CONTRACT, guard=Guard.EVIDENCE), *windows)
    evidence = result.evidence
    assert evidence is not None and combined is not None
    assert set(evidence) == {"p_value", "confidence", "drop_low", "drop_high"}
    assert set(evidence) < set(combined) and {"statistic", "boundary"} <= set(combined)
    assert all(combined[k] == v for k, v in evidence.items())
    assert evidence["p_value"] is not None and evidence["p_value"] < 1e-20
    assert evidence["drop_low"] is not None and evidence["drop_high"] is not None
    assert evidence["drop_low"] < (result.drop_fraction or 0.0) < evidence["drop_high"]
    assert all(v is None or math.isfinite(v) for v in evidence.values())
