"""Every Prometheus metric kpiguard exports, declared against the registry handed to the app factory.

Naming follows the Prometheus conventions: the ``kpiguard_`` prefix, base units, ``_total`` on
counters, ``_seconds`` on durations and ``_ratio`` on fractions. Labels are bounded: ``domain`` and
``metric`` pass through :class:`LabelGuard`, which admits at most ``max_label_pairs`` pairs.
"""

from __future__ import annotations

import logging
import platform
from bisect import bisect_left
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from kpiguard import __version__

log = logging.getLogger(__name__)
M = TypeVar("M", Counter, Gauge, Histogram)

# KPI values are business numbers (ROI in dollars, scores, ratios): symmetric, roughly logarithmic.
KPI_VALUE_BUCKETS = (
    -10000.0, -1000.0, -500.0, -100.0, -10.0, -1.0, 0.0,
    0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 10.0, 100.0, 500.0, 1000.0, 10000.0,
)
HTTP_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 5000, 10000)
EVALUATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def observe_many(histogram: Histogram, values: Collection[float]) -> None:
    """``histogram.observe(v)`` for every (finite) value, touching each bucket once instead of once per value.

    A batch of 1,000 events observed one by one spent most of its export time taking the value
    locks. This reads the client library's bucket bounds and values (as api/health.py's exposition
    does) and falls back to ``observe`` where they are not there.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values:
            histogram.observe(v)
        return
    # observe() puts a value in the first bucket whose upper bound is >= the value: bisect_left finds it.
    for i, n in Tally(bisect_left(bounds, v) for v in values).items():
        buckets[i].inc(n)
    total.inc(sum(values))


class Children(Generic[M]):
    """A labelled metric's children by label values, each looked up once, as the one call made on them per event.

    ``labels()`` validates the values and takes a lock on every call, and ``inc``/``observe`` check
    the metric and walk the buckets: per request (the HTTP metrics, a single event's batch size)
    that was about 5 % of a single event's server instructions (callgrind). For metrics whose
    children are never removed.
    """

    def __init__(self, metric: M, call: Callable[[M], Callable[[float], None]]) -> None:
        self._metric = metric
        self._call = call
        self._children: dict[tuple[str, ...], Callable[[float], None]] = {}

    def __call__(self, *values: str) -> Callable[[float], None]:
        """The child's ``inc`` or ``observe`` for these label values (as ``metric.labels(*values).inc``)."""
        fn = self._children.get(values)
        if fn is None:
            fn = self._children[values] = self._call(self._metric.labels(*values))
        return fn


def counter_inc(child: Counter) -> Callable[[float], None]:
    """``child.inc`` as its value's own increment (the amounts given are never negative)."""
    value = getattr(child, "_value", None)
    return value.inc if callable(getattr(value, "inc", None)) else child.inc  # type: ignore[union-attr]


def histogram_observe(child: Histogram) -> Callable[[float], None]:
    """``child.observe`` for numbers (never NaN), straight to the sum and the one bucket the value falls in.

    Reads the client library's bucket bounds and values as observe_many does, and falls back to
    ``observe`` where they are not there.
    """
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        return child.observe
    incs = [b.inc for b in buckets]
    add = total.inc

    def observe(value: float) -> None:
        add(value)
        incs[bisect_left(bounds, value)](1)  # the first bucket whose upper bound is >= the value, as observe()

    return observe


class LabelGuard:
    """Admits at most ``cap`` distinct (domain, metric) pairs as label values; the rest are dropped and counted."""

    # Remember this many refused pairs so that each is warned about once, without growing without bound.
    WARNED_MEMORY = 10_000

    def __init__(self, cap: int, dropped: Counter) -> None:
        self._cap = cap
        self._admitted: set[tuple[str, str]] = set()
        self._warned: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._dropped = dropped

    def admit(self, domain: str, metric: str, n: int = 1) -> bool:
        """Say whether the pair may be a label; count ``n`` dropped samples and warn once if it may not."""
        pair = (domain, metric)
        if pair in self._admitted:
            return True
        if len(self._admitted) < self._cap:
            self._admitted.add(pair)
            return True
        self._dropped.inc(n)
        if pair not in self._warned:
            self._warned[pair] = None
            if len(self._warned) > self.WARNED_MEMORY:
                self._warned.popitem(last=False)
            log.warning(
                "label cardinality cap of %d (domain, metric) pairs reached: %s.%s is stored but not exported",
                self._cap, domain, metric,
            )
        return False

    @property
    def admitted(self) -> int:
        """How many pairs are exported."""
        return len(self._admitted)


class Metrics:
    """The metric families of one app, registered on one registry."""

    def __init__(self, registry: CollectorRegistry, max_label_pairs: int = 1000) -> None:
        self.registry = registry
        self.build_info = Info("kpiguard_build", "Build information.", registry=registry)
        self.build_info.info({"version": __version__, "python": platform.python_version()})

        # --- ingest ---
        self.kpi_events = Counter(
            "kpiguard_kpi_events", "KPI events stored, by outcome (success or failure).",
            ["domain", "metric", "outcome"], registry=registry,
        )
        self.kpi_value = Histogram(
            "kpiguard_kpi_event_value", "The value carried by KPI events that have one.",
            ["domain", "metric"], buckets=KPI_VALUE_BUCKETS, registry=registry,
        )
        # The client library omits a histogram's _sum once a bucket is negative (OpenMetrics), yet a
        # mean over a time window needs the sum: two counters carry it, so that resets stay visible.
        # mean = (rate(..._positive_total) - rate(..._negative_total)) / rate(kpiguard_kpi_event_value_count)
        self.kpi_value_positive = Counter(
            "kpiguard_kpi_event_value_positive", "Sum of the positive values carried by KPI events.",
            ["domain", "metric"], registry=registry,
        )
        self.kpi_value_negative = Counter(
            "kpiguard_kpi_event_value_negative", "Sum of the magnitudes of the negative values carried by KPI events.",
            ["domain", "metric"], registry=registry,
        )
        self.ingest_batch_size = Histogram(
            "kpiguard_ingest_batch_size_events", "Events per accepted ingest request.",
            ["endpoint"], buckets=BATCH_SIZE_BUCKETS, registry=registry,
        )
        self.ingest_batch_size_observe = Children(self.ingest_batch_size, histogram_observe)
        self.ingest_group_commit = Histogram(
            "kpiguard_ingest_group_commit_events",
            "Single events stored by one group commit (one transaction for the events that arrived together).",
            buckets=BATCH_SIZE_BUCKETS, registry=registry,
        )
        self.ingest_duplicates = Counter(
            "kpiguard_ingest_duplicates", "Events or requests not stored again because their id or key was seen.",
            ["kind"], registry=registry,
        )
        self.series_dropped = Counter(
            "kpiguard_series_dropped",
            "Samples not exported because the (domain, metric) label cardinality cap was reached; the events are stored.",
            registry=registry,
        )
        self.label_pairs = Gauge(
            "kpiguard_label_pairs", "Distinct (domain, metric) pairs exported as labels.", registry=registry,
        )
        self.label_pairs_cap = Gauge(
            "kpiguard_label_pairs_cap", "The cap on exported (domain, metric) pairs.", registry=registry,
        )
        self.label_pairs_cap.set(max_label_pairs)
        self.labels = LabelGuard(max_label_pairs, self.series_dropped)
        self.label_pairs.set_function(lambda: self.labels.admitted)

        # --- HTTP ---
        self.http_requests = Counter(
            "kpiguard_http_requests", "HTTP requests answered.", ["route", "method", "code"], registry=registry,
        )
        self.http_duration = Histogram(
            "kpiguard_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["route"], buckets=HTTP_DURATION_BUCKETS, registry=registry,
        )
        self.http_requests_inc = Children(self.http_requests, counter_inc)
        self.http_duration_observe = Children(self.http_duration, histogram_observe)

        # --- tripwire (count windows computed by kpiguard, exported for the Prometheus rules) ---
        pm = ["domain", "metric"]
        self.regression_current = Gauge(
            "kpiguard_regression_current", "Aggregate of the recent count window (success ratio or mean value).",
            pm, registry=registry,
        )
        self.regression_baseline = Gauge(
            "kpiguard_regression_baseline", "Aggregate of the baseline count window before the recent one.",
            pm, registry=registry,
        )
        self.regression_drop = Gauge(
            "kpiguard_regression_drop_ratio", "(baseline - current) / |baseline| of the count windows.",
            pm, registry=registry,
        )
        self.regression_threshold = Gauge(
            "kpiguard_regression_threshold_ratio", "The policy's max_drop_fraction.", pm, registry=registry,
        )
        self.regression_window_events = Gauge(
            "kpiguard_regression_window_events", "Events in each count window.",
            ["domain", "metric", "window"], registry=registry,
        )
        self.regression_min_events = Gauge(
            "kpiguard_regression_min_events", "The policy's min_events_to_enforce.", pm, registry=registry,
        )
        self.regression_triggered = Gauge(
            "kpiguard_regression_triggered", "1 while the policy's tripwire is triggered.", pm, registry=registry,
        )
        self.regression_firing = Gauge(
            "kpiguard_regression_firing",
            "1 while the newest evaluation finds a regression by the policy's rule, its guard included, armed.",
            pm, registry=registry,
        )
        self.evaluations = Counter(
            "kpiguard_evaluations", "Policy evaluations, by result.", ["result"], registry=registry,
        )
        self.evaluation_duration = Histogram(
            "kpiguard_evaluation_duration_seconds", "Time to evaluate one round of policies.",
            ["trigger"], buckets=EVALUATION_BUCKETS, registry=registry,
        )

        # --- enforcement ---
        self.risk_policy_enabled = Gauge(
            "kpiguard_risk_policy_enabled", "1 while the engine's risk policy accepts work.", ["engine"],
            registry=registry,
        )
        self.kill_switch = Gauge(
            "kpiguard_kill_switch_engaged", "1 while the global kill switch is engaged.", registry=registry,
        )
        self.enforcement_actions = Counter(
            "kpiguard_enforcement_actions", "Enforcement actions executed.", ["action", "source"], registry=registry,
        )
        # Created at 0 so that increase() and changes() see the very first action (a series born with its
        # first sample at 1 shows no increase).
        for action in ("THROTTLE", "KILL_SWITCH"):
            for source in ("api", "evaluator", "alertmanager", "cli"):
                self.enforcement_actions.labels(action, source)
        self.webhook_alerts = Counter(
            "kpiguard_webhook_alerts", "Alertmanager alerts received, by status and what was done.",
            ["status", "result"], registry=registry,
        )
        self.risk_checks = Counter(
            "kpiguard_risk_checks", "Risk checks answered.", ["engine", "outcome", "reason"], registry=registry,
        )

        # --- monitor ---
        # Telemetry ingest, counted after each committed request. (model, backend) pairs are capped like
        # (domain, metric): past the cap an event is counted under model="other", backend="other", so that
        # totals and rates stay right while the series count stays bounded.
        self.telemetry_label_overflow = Counter(
            "kpiguard_telemetry_label_overflow",
            'Telemetry events counted under model="other", backend="other" because the label cap was reached.',
            registry=registry,
        )
        self.telemetry_labels = LabelGuard(max_label_pairs, self.telemetry_label_overflow)
        self.telemetry_events = Counter(
            "kpiguard_telemetry_events",
            "Telemetry events stored as traffic (not replays), by outcome (success or failure).",
            ["outcome", "model", "backend"], registry=registry,
        )
        self.telemetry_fallbacks = Counter(
            "kpiguard_telemetry_fallbacks",
            "Telemetry events whose request chain fell back (request_chain[0].fallback_reason set).",
            ["model", "backend"], registry=registry,
        )
        # Replays are counted in kpiguard_ingest_duplicates_total{kind="telemetry_event"}.
        # LLM requests take tens of milliseconds to minutes.
        telemetry_duration_buckets = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
        self.telemetry_duration = Histogram(
            "kpiguard_telemetry_request_duration_seconds", "duration_ms of telemetry events that carry one, in seconds.",
            ["backend"], buckets=telemetry_duration_buckets, registry=registry,
        )
        # Computed buckets and baselines, set after each computation, exported for the drift rules.
        gs = ["granularity", "scope"]  # granularity: hour|day, the newest computed bucket
        self.monitor_events = Gauge(
            "kpiguard_monitor_events", "Traffic events in the newest computed bucket.", gs, registry=registry)
        self.monitor_fallback = Gauge(
            "kpiguard_monitor_fallback_ratio", "Fallback rate of the newest computed bucket.", gs, registry=registry)
        self.monitor_error = Gauge(
            "kpiguard_monitor_error_ratio", "Error rate of the newest computed bucket.", gs, registry=registry)
        self.monitor_duplicate = Gauge(
            "kpiguard_monitor_duplicate_ratio", "Duplicates / received events of the newest computed bucket.", gs,
            registry=registry)
        self.monitor_success = Gauge(
            "kpiguard_monitor_success_ratio", "Success rate of the newest computed bucket.", gs, registry=registry)
        self.monitor_latency = Gauge(
            "kpiguard_monitor_latency_seconds",
            "Latency of the newest computed bucket (stat: p50 p75 p90 p95 p99 avg min max).",
            [*gs, "stat"], registry=registry)
        self.monitor_health = Gauge(
            "kpiguard_monitor_health_score", "Health score 0..100 of the newest computed bucket.", gs,
            registry=registry)
        bs = ["baseline", "scope"]
        self.monitor_baseline_fallback = Gauge(
            "kpiguard_monitor_baseline_fallback_ratio", "Fallback rate of the current rolling baseline.", bs,
            registry=registry)
        self.monitor_baseline_error = Gauge(
            "kpiguard_monitor_baseline_error_ratio", "Error rate of the current rolling baseline.", bs,
            registry=registry)
        self.monitor_baseline_duplicate = Gauge(
            "kpiguard_monitor_baseline_duplicate_ratio", "Duplicate rate of the current rolling baseline.", bs,
            registry=registry)
        self.monitor_baseline_latency_p95 = Gauge(
            "kpiguard_monitor_baseline_latency_p95_seconds", "p95 latency of the current rolling baseline.", bs,
            registry=registry)
        self.monitor_baseline_health = Gauge(
            "kpiguard_monitor_baseline_health_score", "Health score of the current rolling baseline.", bs,
            registry=registry)
        self.monitor_baseline_days = Gauge(
            "kpiguard_monitor_baseline_days", "Days with traffic in the current rolling baseline.", bs,
            registry=registry)
        # What the rules compare: current / max(baseline, floor) of the newest checked day (signal: fallback,
        # error, latency_p95, duplicate), and the configured thresholds.
        self.monitor_deviation = Gauge(
            "kpiguard_monitor_deviation_ratio", "Current / max(baseline, floor) of the newest checked day.",
            ["signal", "scope"], registry=registry)
        self.monitor_threshold = Gauge(
            "kpiguard_monitor_threshold_ratio", "Deviation ratio at which each severity starts.", ["severity"],
            registry=registry)
        self.monitor_health_threshold = Gauge(
            "kpiguard_monitor_health_threshold_score", "Health score under which health_decline fires, by severity.",
            ["severity"], registry=registry)
        self.monitor_alerts_active = Gauge(
            "kpiguard_monitor_alerts_active", "Open or acknowledged drift alerts.", ["type", "severity", "status"],
            registry=registry)
        self.monitor_computations = Counter(
            "kpiguard_monitor_computations",
            "Bucket computations, by granularity, trigger (scheduler|api) and result (ok|error).",
            ["granularity", "trigger", "result"], registry=registry)
        self.monitor_computation_duration = Histogram(
            "kpiguard_monitor_computation_duration_seconds", "Time to compute one bucket.", ["granularity"],
            buckets=EVALUATION_BUCKETS, registry=registry)
        self.monitor_last_computed = Gauge(
            "kpiguard_monitor_last_computed_timestamp_seconds", "End of the newest computed bucket, Unix time.",
            ["granularity"], registry=registry)
        # --- end monitor ---
        # --- governance ---
        # The current ISO week's figures from the audit trail, refreshed off the ingest path
        # (kpiguard.governance._refresh); a collector, so undefined figures are absent rather than 0.
        from kpiguard.governance import WeeklyCollector

        self.governance = WeeklyCollector()
        registry.register(self.governance)
