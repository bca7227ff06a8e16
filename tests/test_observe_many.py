"""observe_many: a batch of values lands in a histogram exactly as observing them one by one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from kpiguard.metrics import KPI_VALUE_BUCKETS, observe_many


def _exposed(registry: CollectorRegistry) -> list[bytes]:
    # _created is the time the child was made, which differs between the two registries
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


def _histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    return registry, Histogram("h", "help", ["pair"], buckets=KPI_VALUE_BUCKETS, registry=registry)


def test_observe_many_equals_observe_one_by_one():
    """Every bucket (bounds included, negatives, +Inf) and the sum and count match per-value observe()."""
    values = [-20000.0, -10000.0, -0.5, 0.0, 0.0, 0.1, 0.25, 0.75, 1.0, 10.5, 10000.0, 123456.0, 2.0, 2.0]
    reg_a, hist_a = _histogram()
    reg_b, hist_b = _histogram()
    for v in values:
        hist_a.labels("p").observe(v)
    observe_many(hist_b.labels("p"), values)
    assert _exposed(reg_b) == _exposed(reg_a)
    assert b'h_bucket{le="0.0",pair="p"} 5.0' in _exposed(reg_b)


def test_observe_many_of_nothing_changes_nothing():
    """No values: the child's count and sum stay 0."""
    reg_a, hist_a = _histogram()
    reg_b, hist_b = _histogram()
    hist_a.labels("p")
    observe_many(hist_b.labels("p"), [])
    assert _exposed(reg_b) == _exposed(reg_a)
