"""Metric names the dashboards may use besides those of :mod:`kpiguard.metrics`: the ones other parts export."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

# Declared by the drift monitor and the weekly governance figures, which export them from their own modules.
# Once they move into kpiguard.metrics these entries are redundant, not wrong.
PLANNED_METRICS = {
    "kpiguard_telemetry_events_total": "drift monitor",
    "kpiguard_telemetry_fallbacks_total": "drift monitor",
    "kpiguard_telemetry_request_duration_seconds_bucket": "drift monitor",
    "kpiguard_telemetry_request_duration_seconds_count": "drift monitor",
    "kpiguard_telemetry_request_duration_seconds_sum": "drift monitor",
    "kpiguard_monitor_fallback_ratio": "drift monitor",
    "kpiguard_monitor_error_ratio": "drift monitor",
    "kpiguard_monitor_duplicate_ratio": "drift monitor",
    "kpiguard_monitor_success_ratio": "drift monitor",
    "kpiguard_monitor_latency_seconds": "drift monitor",
    "kpiguard_monitor_health_score": "drift monitor",
    "kpiguard_monitor_events": "drift monitor",
    "kpiguard_monitor_baseline_fallback_ratio": "drift monitor",
    "kpiguard_monitor_baseline_error_ratio": "drift monitor",
    "kpiguard_monitor_baseline_duplicate_ratio": "drift monitor",
    "kpiguard_monitor_baseline_latency_p95_seconds": "drift monitor",
    "kpiguard_monitor_baseline_health_score": "drift monitor",
    "kpiguard_monitor_alerts_active": "drift monitor",
    "kpiguard_governance_triggers": "weekly governance",
    "kpiguard_governance_mttr_seconds": "weekly governance",
    "kpiguard_governance_false_positive_ratio": "weekly governance",
}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
    "gauge": ("",),
}


def sample_names(families: Iterable[Metric]) -> set[str]:
    """The sample names Prometheus stores for metric families (``_total`` of a counter, ``_bucket`` of a histogram)."""
    names = set()
    for family in families:
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def exported_names(registry: CollectorRegistry) -> set[str]:
    """The sample names of every family registered on ``registry``."""
    return sample_names(registry.collect())


def exposed_names(registry: CollectorRegistry, metrics: Iterable[object]) -> set[str]:
    """Sample names as the exposition really writes them, after giving each labelled metric one child.

    Stricter than :func:`sample_names`: the client omits a histogram's ``_sum`` once a bucket is negative
    (``kpiguard_kpi_event_value``), and only the rendered text shows that.
    """
    for metric in metrics:
        if isinstance(metric, MetricWrapperBase):
            labels = getattr(metric, "_labelnames", ())
            if labels:
                metric.labels(*("x" for _ in labels))
    names = set()
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names
