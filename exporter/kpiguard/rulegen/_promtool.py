"""promtool unit tests generated from synthetic event sequences, their expectations computed, not written by hand.

Each enabled policy gets the scenarios of its aggregation. A scenario's first phase is spread over the hours
before the compared short window (inside the baseline window) and its second phase over the compared window,
ending early enough that the alerts' ``for:`` has elapsed at the assertion time T. The expected alerts and
values at T, and at the end of the first phase, come from :mod:`kpiguard.rulegen._sequences`; promtool then
checks that the generated rules agree with that model on every scenario.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from kpiguard.rulegen import _rules as r
from kpiguard.rulegen._options import RuleOptions, duration
from kpiguard.rulegen._sequences import (
    CountWindows,
    Grid,
    Phase,
    count_window_fires,
    count_windows,
    events_of,
    place,
    spread,
    time_window_drop,
    time_window_fires,
    window_figures,
    window_values,
)
from kpiguard.tripwire import Aggregation, Policy
from kpiguard.tripwire._policy import CUSUM_GUARDS
from kpiguard.tripwire._sequential import FRESH, play

# Samples every 5 minutes, rule evaluations every 10. promtool evaluates every rule from time 0 to T, so the
# first phase lasts three hours, not the week the baseline window could hold: that keeps a scenario near 0.1 s.
# At about 67 events an hour it also passes the traffic guard, so the time-window comparison really runs (and
# finds no drop) before the second phase.
STEP = 300
EVALUATION = 600
FIRST_PHASE = 3 * 3600
SCRAPE_LABELS = {"job": "kpiguard", "instance": "kpiguard:8000"}


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    """A named event sequence: ``before`` fills the baseline time window, ``recent`` the compared short window."""

    name: str
    before: Phase
    recent: Phase

    def describe(self) -> str:
        """The sequence in words."""
        return f"{self.before.describe()} then {self.recent.describe()}"


def scenarios_for(policy: Policy) -> tuple[Scenario, ...]:
    """The seed's scenarios for the policy's aggregation, sized by its windows, plus quiet and low traffic."""
    full, window, least = policy.baseline_events, policy.window_events, policy.min_events_to_enforce
    if policy.aggregation is Aggregation.MEAN_VALUE:
        good, bad = Phase(full, value=500.0), Phase(window, value=-300.0)
        return (
            Scenario("scenario3_mean_flips_500_to_minus_300", good, bad),
            # A tenth of the needed events, all bad, in the compared hour.
            Scenario("quiet_hour", good, Phase(max(1, least // 10), value=-300.0)),
            # One event short of min_events_to_enforce in the baseline count window and in the compared hour.
            Scenario("low_traffic", Phase(window, value=500.0), Phase(least - 1, value=-300.0)),
        )
    return (
        Scenario("testing_flow_95_to_20", Phase(full, 0.95), Phase(window, 0.20)),
        Scenario("scenario1_95_to_60", Phase(full, 0.95), Phase(window, 0.60)),
        Scenario("scenario2_85_to_70", Phase(full, 0.85), Phase(window, 0.70)),
        Scenario("quiet_hour", Phase(full, 0.95), Phase(max(1, least // 10), 0.0)),
        Scenario("low_traffic", Phase(window, 0.95), Phase(least - 1, 0.20)),
    )


def held_for(seconds: int, evaluation: int) -> int:
    """How far back the first evaluation of a ``for:`` lies: the for: rounded up to whole evaluations."""
    return -(-seconds // evaluation) * evaluation


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Where things go on the grid, in seconds: the first phase ends at ``before_time``, the second before T."""

    step: int
    evaluation: int
    before_time: int
    assert_time: int
    recent_end: int  # the second phase ends here, so that the alerts' for: has elapsed by T

    @property
    def samples(self) -> int:
        """Samples from 0 to T inclusive."""
        return self.assert_time // self.step + 1


def layout(options: RuleOptions, step: int = STEP, evaluation: int = EVALUATION) -> Layout:
    """The grid for the options: the first phase, then the compared window, at whose end lies T."""
    if evaluation % step or options.compare_window % evaluation or FIRST_PHASE % step:
        raise ValueError(f"the compared window must be a multiple of the test's {evaluation}s evaluation")
    hold = max(held_for(options.time_window_for, evaluation), held_for(options.count_window_for, evaluation))
    if hold >= options.compare_window:
        raise ValueError("the for: durations must be shorter than the compared window to be tested")
    if FIRST_PHASE > options.baseline_window:
        raise ValueError("the first phase must fit in the baseline window")
    assert_time = FIRST_PHASE + options.compare_window
    return Layout(step, evaluation, FIRST_PHASE, assert_time, assert_time - hold)


@dataclasses.dataclass(frozen=True, slots=True)
class Simulation:
    """A scenario on the grid: the series and kpiguard's count windows after every sample."""

    policy: Policy
    scenario: Scenario
    layout: Layout
    grid: Grid
    windows: tuple[CountWindows | None, ...]  # None before the first event

    def count_fires(self, time: int, options: RuleOptions) -> bool:
        """Whether the count-window alert is firing at ``time``: its condition held through its ``for:``."""
        ticks = range(time - held_for(options.count_window_for, self.layout.evaluation), time + 1,
                      self.layout.evaluation)
        return all(self._count_condition(t // self.layout.step) for t in ticks)

    def _count_condition(self, k: int) -> bool:
        """The count-window alert's condition at sample ``k``."""
        windows = self.windows[k]
        return windows is not None and count_window_fires(windows, self.policy)

    def time_fires(self, time: int, options: RuleOptions) -> bool:
        """Whether the time-window alert is firing at ``time``: its condition held through its ``for:``."""
        ticks = range(time - held_for(options.time_window_for, self.layout.evaluation), time + 1,
                      self.layout.evaluation)
        return all(time_window_fires(self.grid, t, self.policy, options) for t in ticks)


def simulate(policy: Policy, scenario: Scenario, options: RuleOptions) -> Simulation:
    """Place the scenario's events on the grid and compute kpiguard's count windows after every sample."""
    lay = layout(options)
    step = lay.step
    before = spread(scenario.before.events, 1, lay.before_time // step)
    recent = spread(scenario.recent.events, lay.before_time // step + 1, (lay.recent_end - lay.before_time) // step)
    events = events_of((scenario.before, scenario.recent))
    grid = place(events, before + recent, lay.samples, step)
    cache: dict[int, CountWindows] = {}
    windows: list[CountWindows | None] = []
    # A sequential or combined guard's CUSUM, folded as the events arrive: the service evaluating after every event.
    cusum, folded = FRESH, 0
    for seen in grid.seen:
        if seen == 0:
            windows.append(None)
            continue
        if seen not in cache:
            if policy.guard in CUSUM_GUARDS:
                values = window_values(events[:seen], policy.aggregation)
                cusum, folded = play(policy, values, cusum, start=folded), len(values)
            cache[seen] = count_windows(events[:seen], policy, cusum if policy.guard in CUSUM_GUARDS else None)
        windows.append(cache[seen])
    return Simulation(policy, scenario, lay, grid, tuple(windows))


# --- promtool's series notation --------------------------------------------------------------------------------


def _number(value: float) -> str:
    """A sample value as promtool reads it: integers plainly, other floats by their exact repr."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def series_notation(values: Sequence[float | None]) -> str:
    """Compress values into promtool's expanding notation: ``_xN`` for gaps, ``a+bxN`` for whole-number steps."""
    parts: list[str] = []
    i = 0
    while i < len(values):
        value = values[i]
        if value is None:
            j = i
            while j < len(values) and values[j] is None:
                j += 1
            parts.append(f"_x{j - i}")
            i = j
            continue
        j = i + 1
        step = None
        whole = float(value).is_integer()
        # Extend an arithmetic run; steps are exact only between whole numbers, so floats only repeat.
        while j < len(values) and values[j] is not None:
            diff = values[j] - values[j - 1]  # type: ignore[operator]
            if step is None:
                if diff != 0 and not (whole and float(values[j]).is_integer() and float(diff).is_integer()):
                    break
                step = diff
            elif diff != step:
                break
            j += 1
        step = step or 0
        sign = "-" if step < 0 else "+"
        parts.append(f"{_number(value)}{sign}{_number(abs(step))}x{j - i - 1}")
        i = j
    return " ".join(parts)


def _series(name: str, policy: Policy, **labels: str) -> str:
    """A series selector with the policy's labels and the scrape's job and instance."""
    pairs = {"domain": policy.domain, "metric": policy.metric, **labels, **SCRAPE_LABELS}
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in pairs.items()) + "}"


def input_series(sim: Simulation) -> list[dict[str, str]]:
    """What kpiguard would export over the scenario: counters, value sums, and the count-window gauges."""
    policy, grid = sim.policy, sim.grid
    series = [
        (_series(r.EVENTS, policy, outcome="success"), list(grid.success)),
        (_series(r.EVENTS, policy, outcome="failure"), list(grid.failure)),
    ]
    if grid.has_values:
        series += [(_series(r.VALUE_POSITIVE, policy), list(grid.value_positive)),
                   (_series(r.VALUE_NEGATIVE, policy), list(grid.value_negative)),
                   (_series(r.VALUE_COUNT, policy), list(grid.value_count))]

    def gauge(pick: Any) -> list[float | None]:
        return [None if w is None else pick(w) for w in sim.windows]

    series += [
        (_series(r.CURRENT, policy), gauge(lambda w: w.current)),
        (_series(r.BASELINE, policy), gauge(lambda w: w.baseline)),
        (_series(r.DROP, policy), gauge(lambda w: w.drop)),
        (_series(r.WINDOW_EVENTS, policy, window="recent"), gauge(lambda w: w.recent_events)),
        (_series(r.WINDOW_EVENTS, policy, window="baseline"), gauge(lambda w: w.baseline_events)),
        (_series("kpiguard_regression_threshold_ratio", policy), gauge(lambda w: policy.max_drop_fraction)),
        (_series("kpiguard_regression_min_events", policy), gauge(lambda w: policy.min_events_to_enforce)),
        (_series("kpiguard_regression_triggered", policy), gauge(lambda w: int(count_window_fires(w, policy)))),
        (_series(r.FIRING, policy), gauge(lambda w: int(w.firing))),
    ]
    return [{"series": name, "values": series_notation(values)} for name, values in series]


# --- expectations ---------------------------------------------------------------------------------------------


def humanize_percentage(value: float) -> str:
    """Go's humanizePercentage: ``%.4g%%`` of value × 100."""
    return "%.4g%%" % (value * 100)


def format_figure(policy: Policy, value: float) -> str:
    """The policy's aggregate as the annotation templates print it (see :func:`_rules.number_format`)."""
    return humanize_percentage(value) if policy.aggregation is Aggregation.SUCCESS_RATE else "%.4g" % value


def expected_count_alert(sim: Simulation, time: int, options: RuleOptions) -> dict[str, Any]:
    """The count-window alert as promtool should see it at ``time``: labels and expanded annotations."""
    windows = sim.windows[time // sim.layout.step]
    if windows is None or windows.drop is None or windows.baseline is None or windows.current is None:
        raise ValueError(f"no count windows at {time}s")
    rule = r.count_window_alert(sim.policy, options)
    summary = r.count_window_summary(
        sim.policy, humanize_percentage(windows.drop),
        format_figure(sim.policy, windows.baseline), format_figure(sim.policy, windows.current),
    )
    return {"exp_labels": dict(rule["labels"]), "exp_annotations": {**rule["annotations"], "summary": summary}}


def expected_time_alert(sim: Simulation, time: int, options: RuleOptions) -> dict[str, Any]:
    """The time-window alert as promtool should see it at ``time``."""
    drop, baseline, current = time_window_drop(sim.grid, time, sim.policy, options)
    rule = r.time_window_alert(sim.policy, options)
    summary = r.time_window_summary(
        sim.policy, options, humanize_percentage(drop),
        format_figure(sim.policy, baseline), format_figure(sim.policy, current),
    )
    return {"exp_labels": dict(rule["labels"]), "exp_annotations": {**rule["annotations"], "summary": summary}}


def expected_recordings(sim: Simulation, time: int, options: RuleOptions) -> list[dict[str, Any]]:
    """promql_expr_test cases: every recording rule's value for the policy's pair at ``time`` (none if absent)."""
    sel = r.selector(sim.policy)
    guarded = {duration(options.compare_window), options.baseline_label}
    windows = [(w, 0, duration(w)) for w in options.short_windows]
    windows.append((options.baseline_window, options.baseline_offset, options.baseline_label))
    cases = []
    for seconds, offset, label in windows:
        figures = window_figures(sim.grid, time, seconds, offset)
        values = {
            r.events_rate_name(label): figures.events_rate,
            r.success_ratio_name(label): figures.success_ratio,
            r.value_mean_name(label): figures.mean,
        }
        if label in guarded:
            values[r.events_increase_name(label)] = figures.events_increase
            values[r.value_count_increase_name(label)] = figures.value_count_increase
        for name, value in values.items():
            if value is not None and math.isnan(value):
                continue  # promtool cannot compare NaN with NaN
            cases.append({
                "expr": name + sel,
                "eval_time": duration(time),
                "exp_samples": [] if value is None else [{"labels": name + sel, "value": value}],
            })
    return cases


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """Which alerts fire at T, and which already at the end of the first phase."""

    count_window: bool
    time_window: bool
    count_window_before: bool
    time_window_before: bool

    def describe(self, policy: Policy) -> str:
        """The outcome at T in words, for the test's name."""
        fired = [name for name, on in (("count-window", self.count_window), ("time-window", self.time_window)) if on]
        if not fired:
            return "no alert fires"
        verb = "alerts fire" if len(fired) > 1 else "alert fires"
        return f"{' and '.join(fired)} {verb} with action {policy.action.value}"


def outcome(sim: Simulation, options: RuleOptions) -> Outcome:
    """The model's verdict on the scenario."""
    lay = sim.layout
    return Outcome(
        count_window=sim.count_fires(lay.assert_time, options),
        time_window=sim.time_fires(lay.assert_time, options),
        count_window_before=sim.count_fires(lay.before_time, options),
        time_window_before=sim.time_fires(lay.before_time, options),
    )


def unit_test(policy: Policy, scenario: Scenario, options: RuleOptions) -> dict[str, Any]:
    """One promtool test group: the scenario's series, the alerts expected before and at T, recorded values at T."""
    sim = simulate(policy, scenario, options)
    lay = sim.layout
    verdict = outcome(sim, options)
    checks = (
        (lay.before_time, r.COUNT_WINDOW_ALERT, verdict.count_window_before, expected_count_alert),
        (lay.before_time, r.TIME_WINDOW_ALERT, verdict.time_window_before, expected_time_alert),
        (lay.assert_time, r.COUNT_WINDOW_ALERT, verdict.count_window, expected_count_alert),
        (lay.assert_time, r.TIME_WINDOW_ALERT, verdict.time_window, expected_time_alert),
    )
    alert_tests = [
        {
            "eval_time": duration(time),
            "alertname": name,
            "exp_alerts": [expect(sim, time, options)] if fires else [],
        }
        for time, name, fires, expect in checks
    ]
    return {
        "name": f"{policy.domain}.{policy.metric} {scenario.name}: {scenario.describe()}; {verdict.describe(policy)}",
        "interval": duration(lay.step),
        "input_series": input_series(sim),
        "alert_rule_test": alert_tests,
        "promql_expr_test": expected_recordings(sim, lay.assert_time, options),
    }


def test_file_name(policy: Policy) -> str:
    """The unit-test file of one policy, relative to the rules directory."""
    return f"tests/{policy.domain}_{policy.metric}.test.yml"


def test_document(policy: Policy, rules_file: str, options: RuleOptions) -> dict[str, Any]:
    """A promtool unit-test file for one enabled policy; ``rules_file`` is relative to the rules directory."""
    return {
        "rule_files": [f"../{rules_file}"],
        "evaluation_interval": duration(EVALUATION),
        "tests": [unit_test(policy, scenario, options) for scenario in scenarios_for(policy)],
    }
