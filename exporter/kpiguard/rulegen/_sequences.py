"""Synthetic KPI event sequences, and what kpiguard and Prometheus make of them, computed exactly.

A sequence is a list of phases ("200 events at 95% success, then 50 at 20%"). Placed on a sample grid, it
becomes the series kpiguard would export: the event counters and value sums, and the count-window gauges
computed the way kpiguard computes them (recent = the newest ``window_events`` events, baseline = the
``baseline_events`` before them, drop = (baseline − current) / |baseline|). The time-window figures are
computed with PromQL's own arithmetic: :func:`extrapolated` follows Prometheus 2.42's ``extrapolatedRate``
operation for operation, so the generated promtool tests can state exact expected values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from kpiguard.rulegen._options import RuleOptions
from kpiguard.tripwire import Aggregation, Guard, Policy, WindowStats, evaluate
from kpiguard.tripwire._sequential import Cusum
from kpiguard.tripwire._window import event_value


@dataclasses.dataclass(frozen=True, slots=True)
class Phase:
    """``events`` consecutive events: a share ``success_ratio`` of them successful, each carrying ``value``."""

    events: int
    success_ratio: float = 1.0
    value: float | None = None

    def describe(self) -> str:
        """The phase in words, e.g. ``200 at 95%`` or ``50 at -300``."""
        if self.value is not None:
            return f"{self.events} at {self.value:g}"
        return f"{self.events} at {self.success_ratio * 100:g}%"


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One KPI event."""

    success: bool
    value: float | None = None


def phase_events(phase: Phase) -> tuple[Event, ...]:
    """The events of a phase, its failures spread evenly so that no stretch of it looks worse than the whole."""
    n = phase.events
    successes = round(phase.success_ratio * n)
    # Integer arithmetic: event i succeeds when the running quota of successes steps up at it.
    return tuple(
        Event(success=(i + 1) * successes // n > i * successes // n, value=phase.value) for i in range(n)
    )


def events_of(phases: Sequence[Phase]) -> tuple[Event, ...]:
    """All events of the phases, in order."""
    return tuple(event for phase in phases for event in phase_events(phase))


@dataclasses.dataclass(frozen=True, slots=True)
class CountWindows:
    """kpiguard's count-window figures after some events; None where a window is empty or the baseline is 0."""

    recent_events: int
    baseline_events: int
    current: float | None
    baseline: float | None
    drop: float | None
    firing: bool = False  # the evaluator's verdict, its guard included (what kpiguard_regression_firing exports)


def aggregate(events: Sequence[Event], aggregation: Aggregation) -> float | None:
    """Success ratio or mean value of a window; None for an empty window (or no values)."""
    if aggregation is Aggregation.SUCCESS_RATE:
        return sum(e.success for e in events) / len(events) if events else None
    values = [e.value for e in events if e.value is not None]
    return math.fsum(values) / len(values) if values else None


def window_values(events: Sequence[Event], aggregation: Aggregation) -> list[float]:
    """The events as the evaluator reads them: 1/0 for a success rate, the values (if any) for a mean."""
    if aggregation is Aggregation.MEAN_VALUE:
        events = [e for e in events if e.value is not None]
    return [event_value(aggregation, e.success, e.value) for e in events]


def count_windows(events: Sequence[Event], policy: Policy, cusum: Cusum | None = None) -> CountWindows:
    """The windows kpiguard evaluates over ``events`` (oldest first): the newest window_events and those before.

    ``firing`` is the real evaluator's verdict on them; a ``guard: sequential`` or ``combined`` policy needs
    ``cusum``, its CUSUM with these events folded in.
    """
    split = max(0, len(events) - policy.window_events)
    recent = events[split:]
    baseline = events[max(0, split - policy.baseline_events):split]
    current = aggregate(recent, policy.aggregation)
    base = aggregate(baseline, policy.aggregation)
    # A baseline of 0 has no relative drop; the drop is left undefined rather than divided by zero.
    drop = (base - current) / abs(base) if base and current is not None else None
    verdict = evaluate(policy, WindowStats.from_values(window_values(recent, policy.aggregation)),
                       WindowStats.from_values(window_values(baseline, policy.aggregation)), cusum)
    return CountWindows(len(recent), len(baseline), current, base, drop, verdict.triggered)


def count_window_fires(windows: CountWindows, policy: Policy) -> bool:
    """The count-window alert's condition: the plain rule for ``guard: none``, else the evaluator's verdict."""
    if policy.guard is not Guard.NONE:
        return windows.firing
    return (
        windows.drop is not None
        and windows.drop >= policy.max_drop_fraction
        and windows.recent_events >= policy.min_events_to_enforce
        and windows.baseline_events >= policy.min_events_to_enforce
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Grid:
    """Cumulative series on a sample grid of ``step`` seconds from time 0, and the events seen by each sample."""

    step: int
    success: tuple[int, ...]
    failure: tuple[int, ...]
    value_positive: tuple[float, ...]  # sum of positive values (a counter)
    value_negative: tuple[float, ...]  # sum of the magnitudes of negative values (a counter)
    value_count: tuple[int, ...]
    seen: tuple[int, ...]  # events with a time at or before each sample
    has_values: bool  # whether any event carries a value, so that the value series are exported at all

    @property
    def samples(self) -> int:
        """Number of samples, the first at time 0."""
        return len(self.seen)


def place(events: Sequence[Event], slots: Sequence[int], samples: int, step: int) -> Grid:
    """Put event i at sample ``slots[i]`` (non-decreasing) and accumulate the series over ``samples`` samples."""
    success, failure, vpos, vneg, vcount, seen = [], [], [], [], [], []
    s = f = c = n = 0
    pos = neg = 0.0
    i = 0
    for k in range(samples):
        while i < len(events) and slots[i] <= k:
            event = events[i]
            s, f = s + event.success, f + (not event.success)
            if event.value is not None:
                if event.value >= 0:
                    pos += event.value
                else:
                    neg -= event.value
                c += 1
            i, n = i + 1, n + 1
        success.append(s)
        failure.append(f)
        vpos.append(pos)
        vneg.append(neg)
        vcount.append(c)
        seen.append(n)
    has_values = any(event.value is not None for event in events)
    return Grid(step, tuple(success), tuple(failure), tuple(vpos), tuple(vneg), tuple(vcount), tuple(seen), has_values)


def spread(count: int, first: int, slots: int) -> list[int]:
    """Sample indices for ``count`` events spread evenly over ``slots`` samples starting at ``first``."""
    return [first + (i * slots) // count for i in range(count)]


def extrapolated(
    values: Sequence[float], step: int, at: int, seconds: int, offset: int, *, counter: bool, rate: bool,
) -> float | None:
    """PromQL's rate (counter, rate), increase (counter) or delta (neither) at time ``at`` over ``[seconds]``
    ``offset``, for a series with one sample every ``step`` seconds from 0; None where PromQL gives no value.

    Operation for operation Prometheus 2.42's ``extrapolatedRate``, range ends included, so that the doubles agree.
    """
    start_ms, end_ms = (at - offset - seconds) * 1000, (at - offset) * 1000
    points = [(k * step * 1000, float(v)) for k, v in enumerate(values) if start_ms <= k * step * 1000 <= end_ms]
    if len(points) < 2:
        return None
    result = points[-1][1] - points[0][1]
    if counter:
        last = 0.0
        for _, value in points:
            if value < last:
                result += last
            last = value
    to_start = (points[0][0] - start_ms) / 1000
    to_end = (end_ms - points[-1][0]) / 1000
    sampled = (points[-1][0] - points[0][0]) / 1000
    average = sampled / (len(points) - 1)
    if counter and result > 0 and points[0][1] >= 0:
        to_zero = sampled * (points[0][1] / result)
        if to_zero < to_start:
            to_start = to_zero
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    factor = interval / sampled
    if rate:
        factor /= float(seconds)
    return result * factor


@dataclasses.dataclass(frozen=True, slots=True)
class WindowFigures:
    """What the recording rules give for one window; None where PromQL has no sample, NaN where it gives NaN."""

    events_rate: float | None
    events_increase: float | None
    success_ratio: float | None
    value_count_increase: float | None
    mean: float | None


def _div(a: float, b: float) -> float:
    """IEEE division as PromQL does it: x/0 is ±Inf, 0/0 is NaN."""
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


def _sum(*values: float | None) -> float | None:
    """``sum by`` over the series that have a value; None if none has."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    total = present[0]
    for value in present[1:]:
        total += value
    return total


def window_figures(grid: Grid, at: int, seconds: int, offset: int = 0) -> WindowFigures:
    """The recorded figures at time ``at`` over ``[seconds] offset``, as the recording rules compute them."""
    def fn(values: Sequence[float], counter: bool, rate: bool) -> float | None:
        return extrapolated(values, grid.step, at, seconds, offset, counter=counter, rate=rate)

    rate_s, rate_f = fn(grid.success, True, True), fn(grid.failure, True, True)
    total = _sum(rate_s, rate_f)
    # (success or total * 0) / total
    numerator = rate_s if rate_s is not None else (None if total is None else total * 0)
    ratio = None if total is None or numerator is None else _div(numerator, total)
    positive = negative = count_increase = None
    if grid.has_values:
        positive, negative = fn(grid.value_positive, True, False), fn(grid.value_negative, True, False)
        count_increase = fn(grid.value_count, True, False)
    mean = (
        None if positive is None or negative is None or count_increase is None
        else _div(positive - negative, count_increase)
    )
    return WindowFigures(
        events_rate=total,
        events_increase=_sum(fn(grid.success, True, False), fn(grid.failure, True, False)),
        success_ratio=ratio,
        value_count_increase=count_increase,
        mean=mean,
    )


def _comparison(grid: Grid, at: int, policy: Policy, options: RuleOptions) -> tuple[float | None, ...]:
    """(baseline, current, baseline events, current events) the time-window alert compares at ``at``."""
    short = window_figures(grid, at, options.compare_window)
    base = window_figures(grid, at, options.baseline_window, options.baseline_offset)
    if policy.aggregation is Aggregation.MEAN_VALUE:
        return base.mean, short.mean, base.value_count_increase, short.value_count_increase
    return base.success_ratio, short.success_ratio, base.events_increase, short.events_increase


def time_window_fires(grid: Grid, at: int, policy: Policy, options: RuleOptions) -> bool:
    """The time-window alert's condition at time ``at``."""
    b, c, base_events, short_events = _comparison(grid, at, policy, options)
    n = policy.min_events_to_enforce
    if b is None or c is None or base_events is None or short_events is None:
        return False
    if not (short_events >= n and base_events >= n and abs(b) > 0):
        return False
    return _div(b - c, abs(b)) >= policy.max_drop_fraction


def time_window_drop(grid: Grid, at: int, policy: Policy, options: RuleOptions) -> tuple[float, float, float]:
    """(drop, baseline, current) of the time-window comparison at ``at``, as the alert's $value shows."""
    b, c, _, _ = _comparison(grid, at, policy, options)
    if b is None or c is None:
        raise ValueError(f"no time-window figures at {at}s")
    return _div(b - c, abs(b)), b, c
