"""Named rolling baselines: N days of daily aggregates before the period under check, never including it.

Weighting: event-weighted (pooled), not the mean of daily rates. The baseline fallback rate is
``sum(fallback_events) / sum(total_events)`` over the window, so a quiet Sunday with 10 events and 5
fallbacks weighs 10 events, not one seventh of the week. Likewise for the error and success rates, and
``sum(duplicate_events) / sum(received_events)`` for duplicates (the same denominators as one bucket).
The health score is the seed's formula applied to those pooled rates, so baseline and buckets agree.
Latency cannot be pooled exactly from daily percentiles; ``latency_p95`` and ``latency_avg`` are the daily
values averaged with each day weighted by how many latencies it had (for ``latency_avg`` this is exact).
Days without traffic add nothing and are not counted in ``days_used``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence
from datetime import date, timedelta

from kpiguard.monitor._aggregate import Aggregate, rates

DEFAULT_BASELINE_NAME = "default"
DEFAULT_WINDOW_DAYS = 7
MAX_WINDOW_DAYS = 366


@dataclasses.dataclass(frozen=True, slots=True)
class DailyAggregate:
    """The aggregate of one UTC day, with its date."""

    day: date
    aggregate: Aggregate


@dataclasses.dataclass(frozen=True, slots=True)
class Baseline:
    """A rolling baseline over the days ``start``..``end`` (both inclusive); rates are None without traffic."""

    name: str
    window_days: int
    start: date
    end: date
    days_used: int
    total_events: int
    duplicate_events: int
    fallback_rate: float | None
    error_rate: float | None
    duplicate_rate: float | None
    success_rate: float | None
    latency_p95: float | None
    latency_avg: float | None
    health_score: float | None


def baseline_window(as_of: date, window_days: int = DEFAULT_WINDOW_DAYS) -> tuple[date, date]:
    """Return the inclusive (start, end) days of the baseline for checking ``as_of``: the N days before it."""
    if not 1 <= window_days <= MAX_WINDOW_DAYS:
        raise ValueError(f"window_days must be between 1 and {MAX_WINDOW_DAYS}, got {window_days}")
    return as_of - timedelta(days=window_days), as_of - timedelta(days=1)


def _weighted_mean(pairs: Sequence[tuple[float, int]]) -> float | None:
    """Average values weighted by their counts, or None when no value has weight."""
    weight = sum(count for _, count in pairs)
    if not weight:
        return None
    return math.fsum(value * count for value, count in pairs) / weight


def compute_baseline(
    name: str,
    daily: Sequence[DailyAggregate],
    as_of: date,
    window_days: int = DEFAULT_WINDOW_DAYS,
) -> Baseline:
    """Pool the daily aggregates of the ``window_days`` days before ``as_of`` into a named baseline."""
    start, end = baseline_window(as_of, window_days)
    seen: set[date] = set()
    days_used = total = successful = failed = fallbacks = duplicates = 0
    p95: list[tuple[float, int]] = []
    avg: list[tuple[float, int]] = []
    for entry in daily:
        if not start <= entry.day <= end:
            continue
        if entry.day in seen:
            # Two aggregates for one day would count its traffic twice; the store is unique per day.
            raise ValueError(f"two daily aggregates for {entry.day.isoformat()}")
        seen.add(entry.day)
        agg = entry.aggregate
        duplicates += agg.duplicate_events
        if agg.total_events == 0:
            continue
        days_used += 1
        total += agg.total_events
        successful += agg.successful_events
        failed += agg.failed_events
        fallbacks += agg.fallback_events
        if agg.latency_count and agg.latency_p95 is not None:
            p95.append((agg.latency_p95, agg.latency_count))
        if agg.latency_count and agg.latency_avg is not None:
            avg.append((agg.latency_avg, agg.latency_count))

    r = rates(total, successful, failed, fallbacks, duplicates)
    return Baseline(
        name=name,
        window_days=window_days,
        start=start,
        end=end,
        days_used=days_used,
        total_events=total,
        duplicate_events=duplicates,
        fallback_rate=r.fallback_rate,
        error_rate=r.error_rate,
        duplicate_rate=r.duplicate_rate,
        success_rate=r.success_rate,
        latency_p95=_weighted_mean(p95),
        latency_avg=_weighted_mean(avg),
        health_score=r.health_score,
    )


class Trend(enum.StrEnum):
    """Direction of a metric against its baseline, as the summary's ``trends`` reports it."""

    UP = "up"
    DOWN = "down"
    STABLE = "stable"


def trend(current: float | None, baseline: float | None, tolerance: float = 0.05) -> Trend:
    """Say whether ``current`` is above, below or within ``tolerance`` (a fraction) of ``baseline``."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if current is None or baseline is None:
        return Trend.STABLE
    # Relative to the baseline, but an absolute band around zero so 0 -> 1e-9 is not "up".
    band = max(abs(baseline) * tolerance, 1e-12)
    if current > baseline + band:
        return Trend.UP
    if current < baseline - band:
        return Trend.DOWN
    return Trend.STABLE
