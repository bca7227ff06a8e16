"""observe_many and Children: values land in a metric exactly as the client library's own calls put them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from kpiguard.metrics import KPI_VALUE_BUCKETS, Children, counter_inc, histogram_observe, observe_many


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


def test_children_observe_and_inc_equal_the_library_calls():
    """Children's per-child observe and inc land exactly as labels(...).observe() and .inc() do, bounds included."""
    values = [-20000.0, -10000.0, -0.5, 0.0, 0.1, 0.25, 1.0, 10.5, 10000.0, 123456.0, 2.0]
    reg_a, hist_a = _histogram()
    reg_b, hist_b = _histogram()
    count_a = Counter("c", "help", ["route"], registry=reg_a)
    count_b = Counter("c", "help", ["route"], registry=reg_b)
    observe = Children(hist_b, histogram_observe)
    inc = Children(count_b, counter_inc)
    for i, v in enumerate(values):
        hist_a.labels(f"p{i % 2}").observe(v)
        observe(f"p{i % 2}")(v)
        count_a.labels(f"/r{i % 3}").inc(i)
        inc(f"/r{i % 3}")(i)
    assert _exposed(reg_b) == _exposed(reg_a)
    assert observe("p0") is observe("p0")  # looked up once
