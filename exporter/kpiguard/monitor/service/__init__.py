"""The monitor's I/O side: telemetry ingest, bucket computation, baselines, alerts and the scheduler.

Kept apart from :mod:`kpiguard.monitor`, whose domain stays pure (no database, no server).
"""

from kpiguard.monitor.service._compute import SIGNALS, ComputeResult, Computed, MonitorService
from kpiguard.monitor.service._scheduler import monitor_context, run_forever
from kpiguard.monitor.service._ingest import IngestResult, count_committed, event_row, store_events
from kpiguard.monitor.service._store import (
    AppliedChange,
    Granularity,
    alert_json,
    baseline_json,
    day_start,
    metrics_json,
)

__all__ = [
    "SIGNALS",
    "AppliedChange",
    "ComputeResult",
    "Computed",
    "Granularity",
    "IngestResult",
    "MonitorService",
    "alert_json",
    "baseline_json",
    "count_committed",
    "day_start",
    "event_row",
    "metrics_json",
    "monitor_context",
    "run_forever",
    "store_events",
]
