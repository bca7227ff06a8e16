"""Rolling baselines: the window never includes the day under check, and rates are event-weighted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest

from kpiguard.monitor import Aggregate, DailyAggregate, Trend, baseline_window, compute_baseline, health_score, trend

DayBuilder = Callable[..., DailyAggregate]
AS_OF = date(2026, 2, 21)


def _days(n: int, before: date = AS_OF) -> list[date]:
    """The n days just before ``before``, oldest first."""
    return [before - timedelta(days=n - i) for i in range(n)]


@pytest.mark.parametrize(
    ("window_days", "start", "end"),
    [(7, date(2026, 2, 14), date(2026, 2, 20)), (1, date(2026, 2, 20), date(2026, 2, 20)),
     (30, date(2026, 1, 22), date(2026, 2, 20))],
)
def test_window_is_the_days_before(window_days: int, start: date, end: date) -> None:
    """The window is the N whole days ending the day before the one under check."""
    assert baseline_window(AS_OF, window_days) == (start, end)


@pytest.mark.parametrize("window_days", [0, -1, 367])
def test_window_refuses_bad_length(window_days: int) -> None:
    """A window of no days, or of more than a year, is refused."""
    with pytest.raises(ValueError):
        baseline_window(AS_OF, window_days)


def test_day_under_check_and_days_outside_are_never_used(day_aggregate: DayBuilder) -> None:
    """Days before the window, the checked day itself and later days do not move the baseline."""
    inside = [day_aggregate(d, events=100, fallbacks=5) for d in _days(7)]
    outside = [
        day_aggregate(AS_OF - timedelta(days=8), events=100, fallbacks=90),
        day_aggregate(AS_OF, events=100, fallbacks=90),
        day_aggregate(AS_OF + timedelta(days=1), events=100, fallbacks=90),
    ]
    base = compute_baseline("default", inside + outside, AS_OF)
    assert base.days_used == 7
    assert base.total_events == 700
    assert base.fallback_rate == pytest.approx(0.05)
    assert (base.start, base.end, base.window_days, base.name) == (date(2026, 2, 14), date(2026, 2, 20), 7, "default")


def test_rates_are_event_weighted(day_aggregate: DayBuilder) -> None:
    """A quiet day weighs its events, not a seventh of the week: pooled counts, not mean of daily rates."""
    busy = [day_aggregate(d, events=1000, failures=10, fallbacks=20) for d in _days(6, AS_OF - timedelta(days=1))]
    quiet = day_aggregate(AS_OF - timedelta(days=1), events=10, failures=5, fallbacks=5)
    base = compute_baseline("default", [*busy, quiet], AS_OF)
    assert base.total_events == 6010
    assert base.fallback_rate == pytest.approx(125 / 6010)
    assert base.error_rate == pytest.approx(65 / 6010)
    assert base.success_rate == pytest.approx(1 - 65 / 6010)
    mean_of_rates = (6 * 0.02 + 0.5) / 7
    assert base.fallback_rate != pytest.approx(mean_of_rates)
    assert base.health_score == pytest.approx(health_score(base.success_rate, base.fallback_rate, 0.0))


def test_latency_is_weighted_by_latency_count(day_aggregate: DayBuilder) -> None:
    """Daily p95 and average latencies are averaged with each day weighted by its number of latencies."""
    a = day_aggregate(AS_OF - timedelta(days=2), events=300, latency_ms=100.0)
    b = day_aggregate(AS_OF - timedelta(days=1), events=100, latency_ms=1000.0)
    base = compute_baseline("default", [a, b], AS_OF)
    expected_p95 = (a.aggregate.latency_p95 * 300 + b.aggregate.latency_p95 * 100) / 400  # type: ignore[operator]
    expected_avg = (a.aggregate.latency_avg * 300 + b.aggregate.latency_avg * 100) / 400  # type: ignore[operator]
    assert base.latency_p95 == pytest.approx(expected_p95)
    assert base.latency_avg == pytest.approx(expected_avg)


def test_duplicates_pool_over_received_events(day_aggregate: DayBuilder) -> None:
    """The duplicate rate pools duplicates over everything received, as one bucket does."""
    days = [day_aggregate(d, events=100, duplicates=d.day % 3) for d in _days(7)]
    duplicates = sum(d.aggregate.duplicate_events for d in days)
    base = compute_baseline("default", days, AS_OF)
    assert duplicates > 0
    assert base.duplicate_events == duplicates
    assert base.duplicate_rate == pytest.approx(duplicates / (700 + duplicates))


def test_days_without_traffic_are_not_used(day_aggregate: DayBuilder) -> None:
    """Empty days count toward neither days_used nor the rates; no data at all gives None rates."""
    days = [DailyAggregate(d, Aggregate()) for d in _days(7)]
    empty = compute_baseline("default", days, AS_OF)
    assert empty.days_used == 0
    assert empty.fallback_rate is empty.error_rate is empty.latency_p95 is empty.health_score is None
    days[3] = day_aggregate(days[3].day, events=50, fallbacks=5)
    one = compute_baseline("default", days, AS_OF)
    assert one.days_used == 1
    assert one.fallback_rate == pytest.approx(0.1)


def test_two_aggregates_for_one_day_are_refused(day_aggregate: DayBuilder) -> None:
    """Counting a day twice would skew the baseline; it is an error."""
    day = AS_OF - timedelta(days=1)
    with pytest.raises(ValueError, match="two daily aggregates"):
        compute_baseline("default", [day_aggregate(day, events=10), day_aggregate(day, events=20)], AS_OF)


@pytest.mark.parametrize(
    ("current", "baseline", "expected"),
    [
        (0.05, 0.05, Trend.STABLE),
        (0.0524, 0.05, Trend.STABLE),
        (0.0526, 0.05, Trend.UP),
        (0.0474, 0.05, Trend.DOWN),
        (0.0, 0.0, Trend.STABLE),
        (0.01, 0.0, Trend.UP),
        (None, 0.05, Trend.STABLE),
        (0.05, None, Trend.STABLE),
    ],
)
def test_trend(current: float | None, baseline: float | None, expected: Trend) -> None:
    """Up or down beyond 5% of the baseline, else stable; no data is stable."""
    assert trend(current, baseline) is expected
