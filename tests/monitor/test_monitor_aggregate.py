"""Bucket aggregation: percentile_cont against numpy, the health score, and the counting rules."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import date

import numpy as np
import pytest

from kpiguard.monitor import PERCENTILES, TelemetryRecord, aggregate, health_score, percentile_cont

DAY = date(2026, 2, 21)
QUANTILES = [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0]


def _random_values(n: int, seed: int) -> list[float]:
    """n log-normal latencies, reproducible."""
    rng = random.Random(seed)
    return [rng.lognormvariate(6.0, 0.8) for _ in range(n)]


@pytest.mark.parametrize(
    "values",
    [
        [812.0],
        [100.0, 300.0],
        [300.0, 100.0],
        [5.0, 5.0, 5.0, 5.0],
        [1.0, 2.0, 2.0, 2.0, 3.0, 10.0],
        [0.0, 0.0, 1e9],
        list(range(1, 11)),
        _random_values(7, 1),
        _random_values(1000, 2),
        _random_values(10_001, 3),
        [float(v) for v in np.random.default_rng(4).integers(0, 50, 200)],  # many ties
    ],
    ids=["n1", "n2", "n2-unsorted", "all-equal", "ties", "huge-gap", "1..10", "n7", "n1000", "n10001", "int-ties"],
)
@pytest.mark.parametrize("q", QUANTILES)
def test_percentile_cont_matches_numpy_linear(values: list[float], q: float) -> None:
    """percentile_cont equals numpy's linear interpolation (PostgreSQL's method) within 1e-9."""
    ordered = sorted(values)
    expected = float(np.percentile(np.asarray(values, dtype=float), q * 100, method="linear"))
    assert percentile_cont(ordered, q) == pytest.approx(expected, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        # Known answers of PostgreSQL: SELECT percentile_cont(q) WITHIN GROUP (ORDER BY v) FROM ...
        ([1, 2, 3, 4], 0.5, 2.5),
        (list(range(1, 11)), 0.95, 9.55),
        (list(range(1, 11)), 0.5, 5.5),
        ([10, 20], 0.25, 12.5),
        ([42], 0.99, 42.0),
    ],
)
def test_percentile_cont_known_postgresql_answers(values: list[int], q: float, expected: float) -> None:
    """Hand-checked percentile_cont results interpolate between the two nearest rows."""
    assert percentile_cont(values, q) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("values", "q"), [([], 0.5), ([1.0], -0.01), ([1.0], 1.01)])
def test_percentile_cont_refuses_no_values_or_bad_fraction(values: list[float], q: float) -> None:
    """No values, or a fraction outside [0, 1], is an error rather than a made-up number."""
    with pytest.raises(ValueError):
        percentile_cont(values, q)


@pytest.mark.parametrize(
    ("success", "fallback", "duplicate", "expected"),
    [
        (1.0, 0.0, 0.0, 100.0),
        (0.0, 0.0, 0.0, 50.0),
        (0.0, 1.0, 1.0, 0.0),
        (1.0, 0.1, 0.0, 85.0),  # fallback*5 = 0.5 -> half the 30
        (1.0, 0.2, 0.0, 70.0),  # fallback*5 = 1 -> none of the 30
        (1.0, 0.9, 0.0, 70.0),  # min(1, ...) caps the penalty
        (1.0, 0.0, 0.1, 94.0),  # duplicate*3 = 0.3 -> 70% of the 20
        (1.0, 0.0, 1 / 3, 80.0),
        (0.9, 0.04, 0.1, 45.0 + 24.0 + 14.0),
        (0.5, 0.2, 0.0, 25.0 + 0.0 + 20.0),
    ],
)
def test_health_score_formula(success: float, fallback: float, duplicate: float, expected: float) -> None:
    """health = success*50 + (1-min(1,fallback*5))*30 + (1-min(1,duplicate*3))*20."""
    assert health_score(success, fallback, duplicate) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("success", "fallback", "duplicate"), [(1.1, 0, 0), (1, -0.1, 0), (1, 0, 2)])
def test_health_score_refuses_rates_outside_0_1(success: float, fallback: float, duplicate: float) -> None:
    """A rate outside [0, 1] is a bug upstream, not an input to score."""
    with pytest.raises(ValueError):
        health_score(success, fallback, duplicate)


def test_aggregate_counts_rates_and_latency(records_of_day: Callable[..., list[TelemetryRecord]]) -> None:
    """Totals and rates follow the traffic; latencies equal numpy's percentiles of the same durations."""
    records = records_of_day(DAY, events=200, failures=10, fallbacks=30)
    agg = aggregate(records)
    assert (agg.total_events, agg.failed_events, agg.successful_events, agg.fallback_events) == (200, 10, 190, 30)
    assert agg.error_rate == pytest.approx(0.05)
    assert agg.success_rate == pytest.approx(0.95)
    assert agg.fallback_rate == pytest.approx(0.15)
    assert agg.duplicate_rate == 0.0
    durations = np.asarray([r.duration_ms for r in records], dtype=float)
    for name, q in PERCENTILES:
        assert getattr(agg, name) == pytest.approx(np.percentile(durations, q * 100, method="linear"), abs=1e-9)
    assert agg.latency_avg == pytest.approx(float(durations.mean()), abs=1e-9)
    assert (agg.latency_min, agg.latency_max) == (durations.min(), durations.max())
    assert agg.latency_count == 200
    assert agg.health_score == pytest.approx(health_score(0.95, 0.15, 0.0))


def test_replayed_event_raises_duplicate_rate_not_traffic(records_of_day: Callable[..., list[TelemetryRecord]]) -> None:
    """Replays count as duplicates only: total, rates, latencies and distributions are those without them."""
    records = records_of_day(DAY, events=100, failures=5, fallbacks=10)
    clean = aggregate(records)
    # Replay the failed, fell-back events (the worst ones) and the slowest, to catch any leak into traffic.
    replays = [dataclasses.replace(r, duplicate=True) for r in records[:5] + records[-10:]]
    replayed = aggregate(records + replays)
    assert replayed.total_events == clean.total_events == 100
    assert replayed.duplicate_events == 15
    assert replayed.duplicate_rate == pytest.approx(15 / 115)
    assert clean.duplicate_rate == 0.0
    for name in ("error_rate", "fallback_rate", "success_rate", "latency_p95", "latency_avg", "latency_max",
                 "model_distribution", "backend_distribution", "top_fallback_reasons"):
        assert getattr(replayed, name) == getattr(clean, name), name
    assert replayed.health_score < clean.health_score  # type: ignore[operator]


def test_only_duplicates_gives_a_duplicate_rate_and_no_traffic_rates(
    records_of_day: Callable[..., list[TelemetryRecord]],
) -> None:
    """A bucket of nothing but replays has duplicate_rate 1 and no traffic, so no other rate and no health."""
    replays = [dataclasses.replace(r, duplicate=True) for r in records_of_day(DAY, events=4)]
    agg = aggregate(replays)
    assert (agg.total_events, agg.duplicate_events, agg.duplicate_rate) == (0, 4, 1.0)
    assert (agg.error_rate, agg.fallback_rate, agg.success_rate, agg.health_score) == (None, None, None, None)


def test_empty_bucket_has_no_rates() -> None:
    """No events: zero counts and None for every rate, latency and the health score."""
    agg = aggregate([])
    assert agg.total_events == agg.duplicate_events == agg.latency_count == 0
    assert agg.fallback_rate is agg.error_rate is agg.duplicate_rate is agg.success_rate is None
    assert agg.latency_p50 is agg.latency_p99 is agg.latency_avg is agg.latency_min is None
    assert agg.health_score is None
    assert agg.model_distribution == {} and agg.top_fallback_reasons == ()


def _record(i: int, **fields: object) -> TelemetryRecord:
    """A minimal successful record with id ``i``."""
    base = dict(event_id=f"e{i}", occurred_at=None, event_type="t", model=None, backend=None, agent=None,
                duration_ms=None, success=True, fallback_reason=None)
    base.update(fields)
    return TelemetryRecord(**base)  # type: ignore[arg-type]


def test_distributions_count_unknown_and_order_deterministically() -> None:
    """Distributions map name to count, missing names count as 'unknown', ordered by count then name."""
    models = ["b", "a", None, "b", "a", "c", "b"]
    agg = aggregate([_record(i, model=m, backend="railway") for i, m in enumerate(models)])
    assert list(agg.model_distribution.items()) == [("b", 3), ("a", 2), ("c", 1), ("unknown", 1)]
    assert agg.backend_distribution == {"railway": 7}
    assert agg.agent_distribution == {"unknown": 7}


def test_latency_ignores_events_without_duration() -> None:
    """Percentiles are over the events that carry a duration only."""
    agg = aggregate([_record(0, duration_ms=100.0), _record(1), _record(2, duration_ms=300.0)])
    assert agg.latency_count == 2
    assert agg.latency_p50 == pytest.approx(200.0)
    assert agg.total_events == 3


def test_top_fallback_reasons_are_ten_with_ties_broken_by_name() -> None:
    """The 10 most frequent reasons, by count descending then reason ascending, independent of arrival order."""
    sizes = [5, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 7]
    counts = {f"reason_{letter}": n for letter, n in zip("abcdefghijkl", sizes, strict=True)}
    reasons = [reason for reason, n in counts.items() for _ in range(n)]
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:10]
    for seed in range(3):
        random.Random(seed).shuffle(reasons)
        agg = aggregate([_record(i, fallback_reason=r) for i, r in enumerate(reasons)])
        assert list(agg.top_fallback_reasons) == expected
    assert expected[0] == ("reason_l", 7) and expected[-1] == ("reason_i", 1)
    assert agg.fallback_events == sum(counts.values())
