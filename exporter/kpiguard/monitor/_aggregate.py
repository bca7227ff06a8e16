"""One bucket (an hour, a day) of telemetry records reduced to the seed's metrics.

Counting rules:

* ``total_events`` is traffic: records whose ``event_id`` was new. A duplicate (an ``event_id`` seen before)
  is counted in ``duplicate_events`` only, so replaying an event raises the duplicate rate and never
  ``total_events``, the other rates, the latencies or the distributions.
* ``fallback_rate = fallback_events / total_events``, ``error_rate = failed_events / total_events`` and
  ``success_rate = successful_events / total_events``: rates of traffic.
* ``duplicate_rate = duplicate_events / received_events`` where ``received_events = total_events +
  duplicate_events``: the share of what arrived that was a replay. The seed divides by ``total_events``,
  which exceeds 1 as soon as one event is replayed twice; dividing by what arrived keeps it in [0, 1].
* A rate whose denominator is zero is ``None`` (no data), not 0: an empty hour is not a healthy hour. The
  health score is ``None`` without traffic.
* Missing ``model``, ``backend`` or ``agent`` count under ``"unknown"`` in the distributions.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from kpiguard.monitor._schema import TelemetryRecord

UNKNOWN = "unknown"
TOP_FALLBACK_REASONS = 10
# The seed's latency columns and the fractions percentile_cont is called with.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("latency_p50", 0.50),
    ("latency_p75", 0.75),
    ("latency_p90", 0.90),
    ("latency_p95", 0.95),
    ("latency_p99", 0.99),
)


def percentile_cont(sorted_values: Sequence[float], q: float) -> float:
    """Interpolate the q-quantile of ascending values exactly as PostgreSQL's percentile_cont does."""
    if not sorted_values:
        raise ValueError("percentile_cont of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"percentile must be between 0 and 1, got {q}")
    # PostgreSQL (orderedsetaggs.c): rows floor(q*(n-1)) and ceil(q*(n-1)), then lo + (hi - lo) * fraction.
    position = q * (len(sorted_values) - 1)
    first = math.floor(position)
    second = math.ceil(position)
    lo = float(sorted_values[first])
    if first == second:
        return lo
    hi = float(sorted_values[second])
    return lo + (position - first) * (hi - lo)


def health_score(success_rate: float, fallback_rate: float, duplicate_rate: float) -> float:
    """Return the seed's 0..100 composite: success*50 + (1-min(1,fallback*5))*30 + (1-min(1,duplicate*3))*20."""
    rates = {"success_rate": success_rate, "fallback_rate": fallback_rate, "duplicate_rate": duplicate_rate}
    for name, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {rate}")
    return (
        success_rate * 50.0
        + (1.0 - min(1.0, fallback_rate * 5.0)) * 30.0
        + (1.0 - min(1.0, duplicate_rate * 3.0)) * 20.0
    )


@dataclasses.dataclass(frozen=True)
class Aggregate:
    """The metrics of one bucket; every field has a default so a stored row can be rebuilt by keyword."""

    total_events: int = 0
    successful_events: int = 0
    failed_events: int = 0
    fallback_events: int = 0
    duplicate_events: int = 0
    fallback_rate: float | None = None
    error_rate: float | None = None
    duplicate_rate: float | None = None
    success_rate: float | None = None
    latency_count: int = 0
    latency_p50: float | None = None
    latency_p75: float | None = None
    latency_p90: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    latency_avg: float | None = None
    latency_min: float | None = None
    latency_max: float | None = None
    # Ordered by count descending then name, so that serialising them is deterministic.
    model_distribution: Mapping[str, int] = dataclasses.field(default_factory=dict)
    backend_distribution: Mapping[str, int] = dataclasses.field(default_factory=dict)
    agent_distribution: Mapping[str, int] = dataclasses.field(default_factory=dict)
    top_fallback_reasons: tuple[tuple[str, int], ...] = ()
    health_score: float | None = None

    @property
    def received_events(self) -> int:
        """Everything that arrived: traffic plus duplicates."""
        return self.total_events + self.duplicate_events


def _ranked(counts: Counter[str], limit: int | None = None) -> list[tuple[str, int]]:
    """Order (name, count) by count descending, then name ascending: ties never depend on arrival order."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]


def _rate(numerator: int, denominator: int) -> float | None:
    """Divide, or None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


@dataclasses.dataclass(frozen=True, slots=True)
class Rates:
    """The rates and health score that counts give; None where there is nothing to divide by."""

    success_rate: float | None
    fallback_rate: float | None
    error_rate: float | None
    duplicate_rate: float | None
    health_score: float | None


def rates(total: int, successful: int, failed: int, fallbacks: int, duplicates: int) -> Rates:
    """Rates over the traffic (``total``), the duplicate rate over everything received, and the health score."""
    success_rate = _rate(successful, total)
    fallback_rate = _rate(fallbacks, total)
    duplicate_rate = _rate(duplicates, total + duplicates)
    health = None
    if success_rate is not None and fallback_rate is not None and duplicate_rate is not None:
        health = health_score(success_rate, fallback_rate, duplicate_rate)
    return Rates(success_rate, fallback_rate, _rate(failed, total), duplicate_rate, health)


def aggregate(records: Iterable[TelemetryRecord]) -> Aggregate:
    """Reduce the records of one bucket to its totals, rates, latency percentiles, distributions and health."""
    total = successful = fallbacks = duplicates = 0
    latencies: list[float] = []
    models: Counter[str] = Counter()
    backends: Counter[str] = Counter()
    agents: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for record in records:
        if record.duplicate:
            duplicates += 1
            continue
        total += 1
        successful += record.success
        if record.fallback_reason is not None:
            fallbacks += 1
            reasons[record.fallback_reason] += 1
        if record.duration_ms is not None:
            latencies.append(record.duration_ms)
        models[record.model or UNKNOWN] += 1
        backends[record.backend or UNKNOWN] += 1
        agents[record.agent or UNKNOWN] += 1

    failed = total - successful
    r = rates(total, successful, failed, fallbacks, duplicates)
    latency: dict[str, float | None] = {name: None for name, _ in PERCENTILES}
    latency_avg: float | None = None
    latency_min: float | None = None
    latency_max: float | None = None
    if latencies:
        latencies.sort()
        latency = {name: percentile_cont(latencies, q) for name, q in PERCENTILES}
        latency_avg = math.fsum(latencies) / len(latencies)
        latency_min, latency_max = latencies[0], latencies[-1]

    return Aggregate(
        total_events=total,
        successful_events=successful,
        failed_events=failed,
        fallback_events=fallbacks,
        duplicate_events=duplicates,
        fallback_rate=r.fallback_rate,
        error_rate=r.error_rate,
        duplicate_rate=r.duplicate_rate,
        success_rate=r.success_rate,
        latency_count=len(latencies),
        latency_p50=latency["latency_p50"],
        latency_p75=latency["latency_p75"],
        latency_p90=latency["latency_p90"],
        latency_p95=latency["latency_p95"],
        latency_p99=latency["latency_p99"],
        latency_avg=latency_avg,
        latency_min=latency_min,
        latency_max=latency_max,
        model_distribution=dict(_ranked(models)),
        backend_distribution=dict(_ranked(backends)),
        agent_distribution=dict(_ranked(agents)),
        top_fallback_reasons=tuple(_ranked(reasons, TOP_FALLBACK_REASONS)),
        health_score=r.health_score,
    )
