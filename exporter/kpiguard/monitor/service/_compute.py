"""Computing buckets, baselines and alerts from stored telemetry, and exporting them as gauges.

One :class:`MonitorService` per app. A computation runs under the service's lock, so the scheduler and
``POST /api/monitor/compute`` never interleave in one process; between processes the unique constraints
(one row per bucket, one active alert per type and scope) keep the tables right, and a check that loses
a race on the alert index is retried once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpiguard.db._types import utcnow
from kpiguard.errors import Conflict, NotFound, StorageError
from kpiguard.metrics import Metrics
from kpiguard.monitor._aggregate import PERCENTILES, Aggregate, aggregate
from kpiguard.monitor._alerts import (
    GLOBAL_SCOPE,
    AlertAction,
    AlertStatus,
    AlertType,
    Finding,
    Severity,
    Thresholds,
    evaluate,
    reconcile,
    transition,
)
from kpiguard.monitor._baseline import DEFAULT_BASELINE_NAME, Baseline, baseline_window, compute_baseline
from kpiguard.monitor.service import _store as store
from kpiguard.monitor.service._store import AppliedChange, Granularity, day_start

log = logging.getLogger(__name__)

# Finding type -> the signal label of kpiguard_monitor_deviation_ratio (and of the generated rules).
SIGNALS = {
    AlertType.FALLBACK_SPIKE: "fallback",
    AlertType.ERROR_SPIKE: "error",
    AlertType.LATENCY_SPIKE: "latency_p95",
    AlertType.DUPLICATE_SPIKE: "duplicate",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Computed:
    """One bucket computed."""

    granularity: Granularity
    bucket_start: datetime
    aggregate: Aggregate

    def to_json(self) -> dict[str, Any]:
        """As the compute endpoint answers it."""
        a = self.aggregate
        out: dict[str, Any] = {"granularity": self.granularity.value, "bucket_start": self.bucket_start,
                               "date": self.bucket_start.date()}
        if self.granularity is Granularity.HOUR:
            out["hour"] = self.bucket_start.hour
        out.update(total_events=a.total_events, duplicate_events=a.duplicate_events,
                   fallback_rate=a.fallback_rate, error_rate=a.error_rate, duplicate_rate=a.duplicate_rate,
                   latency_p95=a.latency_p95, health_score=a.health_score)
        return out


@dataclasses.dataclass
class ComputeResult:
    """What one compute request or scheduler run did."""

    computed: list[Computed] = dataclasses.field(default_factory=list)
    baseline: Baseline | None = None
    checked: list[date] = dataclasses.field(default_factory=list)
    alerts: list[AppliedChange] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As the compute endpoint answers it."""
        b = self.baseline
        return {
            "computed": [c.to_json() for c in self.computed],
            "baseline": None if b is None else {
                "name": b.name, "start_date": b.start, "end_date": b.end, "for_date": b.end + timedelta(days=1),
                "days_used": b.days_used, "fallback_rate": b.fallback_rate, "error_rate": b.error_rate,
                "duplicate_rate": b.duplicate_rate, "latency_p95": b.latency_p95, "health_score": b.health_score,
            },
            "checked": self.checked,
            "alerts": [a.to_json() for a in self.alerts],
        }

    def extend(self, other: ComputeResult) -> None:
        """Add another run's work to this one."""
        self.computed.extend(other.computed)
        self.baseline = other.baseline or self.baseline
        self.checked.extend(other.checked)
        self.alerts.extend(other.alerts)


def _storage_error(exc: Exception) -> StorageError:
    return StorageError(f"the monitor could not read or write the database: {type(exc).__name__}")


class MonitorService:
    """Computes the monitor's buckets, baselines and alerts for one app and exports them."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        thresholds: Thresholds,
        *,
        baseline_days: int = 7,
        baseline_name: str = DEFAULT_BASELINE_NAME,
        catchup_hours: int = 48,
        catchup_days: int = 8,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.thresholds = thresholds
        self.baseline_days = baseline_days
        self.baseline_name = baseline_name
        self.catchup_hours = catchup_hours
        self.catchup_days = catchup_days
        self._lock = asyncio.Lock()
        # The newest bucket, baseline and checked day exported: recomputing an older one leaves the gauges.
        self._exported: dict[Granularity, datetime] = {}
        self._exported_baseline: date | None = None
        self._exported_check: date | None = None
        self.export_thresholds()

    # --- public operations ---

    async def compute_hour(self, start: datetime, *, trigger: str = "api") -> ComputeResult:
        """Compute (or recompute) the hour starting at ``start``."""
        async with self._lock:
            return ComputeResult(computed=[await self._bucket(Granularity.HOUR, start, trigger)])

    async def compute_day(self, day: date, *, update_baseline: bool = True, trigger: str = "api") -> ComputeResult:
        """Compute a day, optionally its baselines, then check it against the baseline of the days before it.

        With ``update_baseline``, days of the baseline window that hold events but no daily row are computed
        first (so a backfill needs one call), then two baselines are stored: the one that checks ``day``
        (the N days before it) and, once ``day`` has closed, the current one for the day after (which
        includes it): a partial today never becomes the current baseline.
        """
        async with self._lock:
            result = ComputeResult()
            computed = await self._bucket(Granularity.DAY, day_start(day), trigger)
            result.computed.append(computed)
            if update_baseline:
                result.computed.extend(await self._fill_window(day, trigger))
                checking = await self._baseline(day)
                if day < utcnow().date():
                    # the current baseline (for the day after) only from a closed day, never a partial today
                    await self._baseline(day + timedelta(days=1))
            else:
                checking = await self._stored_baseline(day)
            result.baseline = checking
            result.alerts = await self._check(day, computed.aggregate, checking)
            result.checked.append(day)
            await self.refresh_alert_gauges()
            return result

    async def run_scheduled(self, now: datetime) -> ComputeResult:
        """Compute the closed hours and days that have new traffic (the scheduler's one run)."""
        result = ComputeResult()
        last_hour = Granularity.HOUR.floor(now) - Granularity.HOUR.span
        for start in await self._due(Granularity.HOUR, last_hour, self.catchup_hours):
            result.extend(await self.compute_hour(start, trigger="scheduler"))
        last_day = Granularity.DAY.floor(now) - Granularity.DAY.span
        for start in await self._due(Granularity.DAY, last_day, self.catchup_days):
            result.extend(await self.compute_day(start.date(), update_baseline=True, trigger="scheduler"))
        return result

    async def act_on_alert(self, alert_id: int, action: AlertAction, actor: str | None, note: str | None
                           ) -> dict[str, Any]:
        """Acknowledge or resolve an alert: 404 for an unknown id, 409 for a transition its status forbids."""
        try:
            async with self.sessions() as session, session.begin():
                await store.lock_for_write(session)
                row = await store.get_alert(session, alert_id, lock=True)
                if row is None:
                    raise NotFound(f"no monitoring alert with id {alert_id}", field="id")
                status = transition(row.status, action)
                now = utcnow()
                row.status = status.value
                row.updated_at = now
                if action is AlertAction.ACKNOWLEDGE:
                    row.acknowledged_at, row.acknowledged_by, row.acknowledge_note = now, actor, note
                else:
                    row.resolved_at, row.resolved_by, row.resolve_note = now, actor, note
                out = store.alert_json(row)
        except (NotFound, Conflict):
            raise
        except IntegrityError as exc:  # pragma: no cover - a status the check constraint refuses
            raise _storage_error(exc) from exc
        except (OperationalError, DBAPIError, OSError) as exc:
            raise _storage_error(exc) from exc
        await self.refresh_alert_gauges()
        return out

    # --- computation steps ---

    async def _bucket(self, granularity: Granularity, start: datetime, trigger: str) -> Computed:
        """Aggregate one bucket from its stored events and upsert its row."""
        began = time.perf_counter()
        try:
            async with self.sessions() as session, session.begin():
                records = await store.load_records(session, start, start + granularity.span)
                agg = aggregate(records)
                await store.upsert_metrics(session, granularity, start, GLOBAL_SCOPE, agg)
        except (OperationalError, DBAPIError, OSError) as exc:
            self.metrics.monitor_computations.labels(granularity.value, trigger, "error").inc()
            raise _storage_error(exc) from exc
        self.metrics.monitor_computations.labels(granularity.value, trigger, "ok").inc()
        self.metrics.monitor_computation_duration.labels(granularity.value).observe(time.perf_counter() - began)
        self._export_bucket(granularity, start, agg)
        return Computed(granularity, start, agg)

    async def _fill_window(self, day: date, trigger: str) -> list[Computed]:
        """Compute the days of ``day``'s baseline window that have events but no daily row."""
        first, last = baseline_window(day, self.baseline_days)
        async with self.sessions() as session:
            stored = {d.day for d in await store.daily_aggregates(session, GLOBAL_SCOPE, first, last)}
            missing = []
            current = first
            while current <= last:
                if current not in stored and await store.has_events(
                    session, day_start(current), day_start(current + timedelta(days=1))
                ):
                    missing.append(current)
                current += timedelta(days=1)
        return [await self._bucket(Granularity.DAY, day_start(d), trigger) for d in missing]

    async def _baseline(self, as_of: date) -> Baseline:
        """Compute and store the baseline that checks ``as_of`` from the stored daily rows before it."""
        first, last = baseline_window(as_of, self.baseline_days)
        try:
            async with self.sessions() as session, session.begin():
                daily = await store.daily_aggregates(session, GLOBAL_SCOPE, first, last)
                baseline = compute_baseline(self.baseline_name, daily, as_of, self.baseline_days)
                await store.upsert_baseline(session, baseline, GLOBAL_SCOPE)
        except (OperationalError, DBAPIError, OSError) as exc:
            raise _storage_error(exc) from exc
        self._export_baseline(baseline)
        return baseline

    async def _stored_baseline(self, day: date) -> Baseline | None:
        """The newest stored baseline whose days all precede ``day``."""
        async with self.sessions() as session:
            row = await store.find_baseline(session, self.baseline_name, GLOBAL_SCOPE, before=day)
            return store.baseline_from_row(row) if row is not None else None

    async def _check(self, day: date, current: Aggregate, baseline: Baseline | None) -> list[AppliedChange]:
        """Evaluate the day against the baseline and reconcile the alerts table with the findings."""
        findings = evaluate(current, baseline, self.thresholds, GLOBAL_SCOPE)
        for attempt in (1, 2):
            try:
                async with self.sessions() as session, session.begin():
                    await store.lock_for_write(session)
                    rows = await store.active_alert_rows(session, GLOBAL_SCOPE)
                    changes = reconcile(findings, [store.active_alert(r) for r in rows], self.thresholds)
                    applied = await store.apply_changes(
                        session, changes, rows, granularity=Granularity.DAY, bucket_start=day_start(day),
                        baseline_name=baseline.name if baseline is not None else None,
                    )
                break
            except IntegrityError as exc:
                # another process opened the same (type, scope) alert first: the retry updates it instead
                if attempt == 2:
                    raise _storage_error(exc) from exc
            except (OperationalError, DBAPIError, OSError) as exc:
                raise _storage_error(exc) from exc
        self._export_check(day, findings)
        return applied

    async def _due(self, granularity: Granularity, last: datetime, catchup: int) -> list[datetime]:
        """Closed buckets up to ``last`` to (re)compute: the newest stored one if it now holds more events than it
        counted (late arrivals), then every later bucket holding events, looking back at most ``catchup`` buckets.

        Comparing counts, not receive times, cannot miss a request that committed while the bucket was computed.
        """
        span = granularity.span
        earliest = last - span * (catchup - 1)
        due: list[datetime] = []
        async with self.sessions() as session:
            newest = await store.newest_bucket(session, granularity, GLOBAL_SCOPE, earliest)
            cursor = earliest
            if newest is not None:
                start, counted = newest
                if start <= last and await store.count_events(session, start, start + span) != counted:
                    due.append(start)
                cursor = start + span
            while cursor <= last:
                found = await store.first_event_at(session, cursor, last + span)
                if found is None:
                    break
                start = granularity.floor(found)
                due.append(start)
                cursor = start + span
        return due

    # --- Prometheus ---

    def export_thresholds(self) -> None:
        """Export the configured thresholds, so dashboards and rules can show them."""
        t = self.thresholds
        for severity in Severity:
            self.metrics.monitor_threshold.labels(severity.value).set(t.ratio_threshold(severity))
        self.metrics.monitor_health_threshold.labels(Severity.HIGH.value).set(t.health_decline_below)
        self.metrics.monitor_health_threshold.labels(Severity.CRITICAL.value).set(t.health_critical_below)

    def _export_bucket(self, granularity: Granularity, start: datetime, agg: Aggregate) -> None:
        newest = self._exported.get(granularity)
        if newest is not None and start < newest:
            return
        self._exported[granularity] = start
        m, labels = self.metrics, (granularity.value, GLOBAL_SCOPE)
        m.monitor_events.labels(*labels).set(agg.total_events)
        m.monitor_last_computed.labels(granularity.value).set((start + granularity.span).timestamp())
        gauges = ((m.monitor_fallback, agg.fallback_rate), (m.monitor_error, agg.error_rate),
                  (m.monitor_duplicate, agg.duplicate_rate), (m.monitor_success, agg.success_rate),
                  (m.monitor_health, agg.health_score))
        for gauge, value in gauges:
            _set_or_remove(gauge, labels, value)
        stats = [*((name.removeprefix("latency_"), getattr(agg, name)) for name, _ in PERCENTILES),
                 ("avg", agg.latency_avg), ("min", agg.latency_min), ("max", agg.latency_max)]
        for stat, ms in stats:
            _set_or_remove(m.monitor_latency, (*labels, stat), None if ms is None else ms / 1000.0)

    def _export_baseline(self, baseline: Baseline) -> None:
        if self._exported_baseline is not None and baseline.end < self._exported_baseline:
            return
        self._exported_baseline = baseline.end
        m, labels = self.metrics, (baseline.name, GLOBAL_SCOPE)
        m.monitor_baseline_days.labels(*labels).set(baseline.days_used)
        p95 = None if baseline.latency_p95 is None else baseline.latency_p95 / 1000.0
        for gauge, value in ((m.monitor_baseline_fallback, baseline.fallback_rate),
                             (m.monitor_baseline_error, baseline.error_rate),
                             (m.monitor_baseline_duplicate, baseline.duplicate_rate),
                             (m.monitor_baseline_latency_p95, p95),
                             (m.monitor_baseline_health, baseline.health_score)):
            _set_or_remove(gauge, labels, value)

    def _export_check(self, day: date, findings: Sequence[Finding]) -> None:
        if self._exported_check is not None and day < self._exported_check:
            return
        self._exported_check = day
        ratios = {SIGNALS[f.type]: f.ratio for f in findings if f.type in SIGNALS}
        for signal in SIGNALS.values():
            # a signal that could not be checked (thin baseline, no latency) must not keep a stale ratio
            _set_or_remove(self.metrics.monitor_deviation, (signal, GLOBAL_SCOPE), ratios.get(signal))

    async def refresh_alert_gauges(self) -> None:
        """Recount the open and acknowledged alerts into kpiguard_monitor_alerts_active."""
        try:
            async with self.sessions() as session:
                counts = await store.alert_counts(session)
        except (OperationalError, DBAPIError, OSError):
            log.warning("could not count the monitor's alerts", exc_info=True)
            return
        gauge = self.metrics.monitor_alerts_active
        gauge.clear()
        for alert_type in AlertType:
            for severity in Severity:
                for status in (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED):
                    key = (alert_type.value, severity.value, status.value)
                    gauge.labels(*key).set(counts.get(key, 0))


def _set_or_remove(gauge: Any, labels: tuple[str, ...], value: float | None) -> None:
    """Set the labelled gauge, or drop the series when there is no value (a rate of no traffic)."""
    if value is None:
        try:
            gauge.remove(*labels)
        except KeyError:
            pass
    else:
        gauge.labels(*labels).set(value)
