"""The /metrics text exposition: byte for byte what prometheus_client's generate_latest writes."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kpiguard.api.health import TextExposition
from kpiguard.metrics import Metrics


def _populated(pairs: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    m = Metrics(registry, max_label_pairs=10_000)
    for i in range(pairs):
        d, k = f"D{i}", f"m{i % 3}"
        m.kpi_events.labels(d, k, "success").inc(i + 1)
        m.kpi_events.labels(d, k, "failure").inc(0.5)
        m.kpi_value.labels(d, k).observe(i * 0.37 - 3)
        m.kpi_value_positive.labels(d, k).inc(i * 1.25)
        m.regression_current.labels(d, k).set(1 / (i + 3))
        m.regression_window_events.labels(d, k, "recent").set(50)
    m.http_requests.labels("/api/x", "POST", "201").inc(7)
    m.http_duration.labels("/api/x").observe(0.004)
    m.kill_switch.set(1)
    m.risk_policy_enabled.labels('we"ird\\eng\nine').set(1)
    return registry


@pytest.mark.parametrize("pairs", [0, 1, 7, 120])
def test_text_exposition_equals_generate_latest(pairs: int) -> None:
    """The fast exposition renders the same bytes as generate_latest, on every scrape."""
    registry = _populated(pairs)
    exposition = TextExposition()
    assert exposition.render(registry) == generate_latest(registry)
    # the second scrape reuses the rendered prefixes and must still follow the values
    registry_metrics = [c for c in registry._collector_to_names if getattr(c, "_name", "") == "kpiguard_kpi_events"]
    registry_metrics[0].labels("D0", "m0", "success").inc(3)
    assert exposition.render(registry) == generate_latest(registry)


def test_text_exposition_other_collectors() -> None:
    """Unlabelled metrics, histograms with custom buckets and gauges with a function are rendered alike."""
    registry = CollectorRegistry()
    Counter("plain", "A plain counter.", registry=registry).inc(2)
    g = Gauge("fn_gauge", "A gauge with a function.", ["x"], registry=registry)
    g.labels("a").set_function(lambda: 4.5)
    h = Histogram("lat_seconds", "Latency.", ["route"], buckets=(0.1, 1.0), registry=registry)
    h.labels("/a").observe(0.5)
    assert TextExposition().render(registry) == generate_latest(registry)
