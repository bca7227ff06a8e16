"""The model behind the generated promtool tests: event sequences, kpiguard's count windows, PromQL's arithmetic."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from kpiguard.rulegen import Phase, count_window_fires, count_windows, events_of, phase_events, series_notation
from kpiguard.rulegen._sequences import CountWindows, extrapolated
from kpiguard.tripwire import SEED_POLICIES, Aggregation, Guard, Policy

WHOLESALE, OFFERS, BUYER_MATCH, CAPITAL = SEED_POLICIES


@pytest.mark.parametrize(
    ("events", "ratio", "successes"),
    [(200, 0.95, 190), (50, 0.20, 10), (50, 0.70, 35), (200, 0.85, 170), (7, 0.5, 4), (3, 0.0, 0), (0, 0.5, 0)],
)
def test_a_phase_has_its_share_of_successes_spread_evenly(events: int, ratio: float, successes: int) -> None:
    """round(ratio × events) successes, and no stretch of the phase runs more than one failure ahead of its share."""
    outcomes = [e.success for e in phase_events(Phase(events, ratio))]
    assert len(outcomes) == events and sum(outcomes) == successes
    for end in range(1, events + 1):
        assert abs(sum(outcomes[:end]) - end * successes / max(events, 1)) < 1


@pytest.mark.parametrize(
    ("policy", "phases", "current", "baseline", "drop"),
    [
        # The seed's testing flow: 200 at 95%, 50 at 20% → drop_fraction 0.789.
        (WHOLESALE, [Phase(200, 0.95), Phase(50, 0.20)], 0.20, 0.95, 0.789),
        # Scenario 1: 95% → 60%, drop 37%.
        (OFFERS, [Phase(200, 0.95), Phase(50, 0.60)], 0.60, 0.95, 0.368),
        # Scenario 2: 85% → 70%, drop 18%.
        (BUYER_MATCH, [Phase(200, 0.85), Phase(50, 0.70)], 0.70, 0.85, 0.176),
        # Scenario 3: a mean of +500 flipping to −300 is a drop of 1.6.
        (CAPITAL, [Phase(200, value=500.0), Phase(50, value=-300.0)], -300.0, 500.0, 1.6),
    ],
)
def test_count_windows_give_the_seeds_numbers(
    policy: Policy, phases: list[Phase], current: float, baseline: float, drop: float,
) -> None:
    """Recent = the newest 50 events, baseline = the 200 before; drop = (baseline − current) / |baseline|."""
    windows = count_windows(events_of(phases), policy)
    assert (windows.recent_events, windows.baseline_events) == (50, 200)
    assert windows.current == pytest.approx(current)
    assert windows.baseline == pytest.approx(baseline)
    assert windows.drop is not None and round(windows.drop, 3) == drop


def test_older_events_fall_out_of_the_baseline() -> None:
    """Events older than window_events + baseline_events count in neither window."""
    events = events_of([Phase(100, 0.0), Phase(200, 1.0), Phase(50, 1.0)])
    windows = count_windows(events, WHOLESALE)
    assert (windows.baseline, windows.current, windows.drop) == (1.0, 1.0, 0.0)


@pytest.mark.parametrize(
    ("count", "recent", "baseline"),
    [(1, 1, 0), (50, 50, 0), (60, 50, 10), (250, 50, 200), (400, 50, 200)],
)
def test_partial_windows(count: int, recent: int, baseline: int) -> None:
    """Short histories fill the recent window first; an empty baseline leaves the drop undefined."""
    windows = count_windows(events_of([Phase(count, 0.5)]), WHOLESALE)
    assert (windows.recent_events, windows.baseline_events) == (recent, baseline)
    assert (windows.drop is None) == (baseline == 0)


def test_a_zero_baseline_has_no_drop() -> None:
    """A baseline of 0 is never divided by: the drop stays undefined and nothing fires."""
    windows = count_windows(events_of([Phase(200, 0.0), Phase(50, 0.0)]), WHOLESALE)
    assert windows.baseline == 0 and windows.drop is None
    assert not count_window_fires(windows, WHOLESALE)


@pytest.mark.parametrize(
    ("windows", "fires"),
    [
        (CountWindows(50, 200, 0.76, 0.95, 0.2), True),  # exactly the threshold
        (CountWindows(50, 200, 0.77, 0.95, 0.19), False),
        (CountWindows(49, 200, 0.2, 0.95, 0.789), False),  # recent window one event short
        (CountWindows(50, 49, 0.2, 0.95, 0.789), False),  # baseline window one event short
        (CountWindows(50, 50, 0.2, 0.95, 0.789), True),
        (CountWindows(50, 0, 0.2, None, None), False),
    ],
)
def test_count_window_condition(windows: CountWindows, fires: bool) -> None:
    """guard: none fires when drop ≥ max_drop_fraction and both windows hold min_events_to_enforce events."""
    assert count_window_fires(windows, dataclasses.replace(WHOLESALE, guard=Guard.NONE)) is fires


@pytest.mark.parametrize(
    ("phases", "fires"),
    [
        ([Phase(200, 0.95), Phase(50, 0.20)], True),  # the testing flow: sure and far past 20%
        ([Phase(200, 0.95), Phase(50, 0.76)], False),  # exactly 20%: the plain rule fires, the guard is not sure
        ([Phase(49, 0.95), Phase(50, 0.20)], False),  # the baseline one event short
    ],
)
def test_a_guarded_count_window_is_the_evaluators_verdict(phases: list[Phase], fires: bool) -> None:
    """A guarded policy (the default, combined, and evidence) fires when kpiguard's evaluate() triggers on the
    events, not on the drop alone."""
    assert WHOLESALE.guard is Guard.COMBINED
    for policy in (WHOLESALE, dataclasses.replace(WHOLESALE, guard=Guard.EVIDENCE)):
        windows = count_windows(events_of(phases), policy)
        assert windows.firing is fires and count_window_fires(windows, policy) is fires


def _expand(notation: str) -> list[float | None]:
    """promtool's expanding notation, read back: ``_xN`` is N gaps, ``a+bxN`` is N + 1 values."""
    values: list[float | None] = []
    for part in notation.split():
        gaps = re.fullmatch(r"_x(\d+)", part)
        if gaps:
            values += [None] * int(gaps.group(1))
            continue
        number = r"\d+(?:\.\d+)?(?:e[+-]\d+)?"
        run = re.fullmatch(rf"(-?{number})([+-])({number})x(\d+)", part)
        assert run, part
        start, sign, step, times = float(run.group(1)), run.group(2), float(run.group(3)), int(run.group(4))
        step = -step if sign == "-" else step
        value = start
        values.append(value)
        for _ in range(times):
            value += step
            values.append(value)
    return values


@pytest.mark.parametrize(
    "values",
    [
        [0, 0, 0, 1, 2, 3, 3, 3, 4],
        [None, None, 0.5, 0.5, 0.7894736842105263, -300.0, -300.0],
        [100000.0, 99700.0, 99400.0, 99400.0, None],
        [0.1, 0.2, 0.30000000000000004],
        [1e-05],
        [],
    ],
)
def test_series_notation_round_trips(values: list[float | None]) -> None:
    """The compressed notation expands back to exactly the values, gaps included."""
    assert _expand(series_notation(values)) == values


@pytest.mark.parametrize(
    ("values", "at", "seconds", "counter", "rate", "expected"),
    [
        ([0, 10, 20], 120, 120, True, False, 20.0),  # aligned: no extrapolation
        ([0, 10, 20], 120, 120, True, True, 20 * (1 / 120)),  # rate is increase × (1 / seconds)
        ([0, 10, 20], 120, 150, True, False, 20.0),  # a counter from 0 is not extrapolated below zero
        ([10, 20, 30], 120, 150, True, False, 25.0),  # 30 s before the first sample: extrapolated
        ([10, 20, 30], 120, 300, True, False, 30.0),  # far before: only as far as the counter's zero
        ([10, 20, 30], 120, 300, False, False, 25.0),  # delta: half a sample interval
        ([30, 20, 10], 120, 120, False, False, -20.0),  # delta goes down
        ([30, 5, 10], 120, 120, True, False, 10.0),  # a reset adds back the value before it: -20 + 30
        ([5], 0, 60, True, False, None),  # one sample: no value
    ],
)
def test_extrapolated_follows_promql(
    values: list[float], at: int, seconds: int, counter: bool, rate: bool, expected: float | None,
) -> None:
    """rate, increase and delta as Prometheus 2.42 computes them on a 60 s grid."""
    result = extrapolated(values, 60, at, seconds, 0, counter=counter, rate=rate)
    if expected is None:
        assert result is None
    else:
        assert result is not None and math.isclose(result, expected, rel_tol=1e-12)


def test_the_mean_scenario_uses_values_only() -> None:
    """Mean-value windows average the events' values, whatever their success flag."""
    windows = count_windows(events_of([Phase(200, 0.0, value=2.0), Phase(50, 1.0, value=1.0)]), CAPITAL)
    assert CAPITAL.aggregation is Aggregation.MEAN_VALUE
    assert (windows.baseline, windows.current, windows.drop) == (2.0, 1.0, 0.5)
