"""The monitor's background scheduler: an aiohttp cleanup context that computes closed hours and days."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from kpiguard.db._types import utcnow
from kpiguard.monitor.service._compute import MonitorService

log = logging.getLogger(__name__)


async def monitor_context(app: web.Application) -> AsyncIterator[None]:
    """Create the app's MonitorService and, unless disabled, run the scheduler until shutdown."""
    # imported here: kpiguard.keys names MonitorService, so importing it at module level would be circular
    from kpiguard.keys import METRICS, MONITOR, SESSIONS, SETTINGS

    settings = app[SETTINGS]
    service = MonitorService(
        app[SESSIONS], app[METRICS], settings.monitor_thresholds,
        baseline_days=settings.monitor_baseline_days,
        catchup_hours=settings.monitor_catchup_hours,
        catchup_days=settings.monitor_catchup_days,
    )
    app[MONITOR] = service
    task: asyncio.Task[None] | None = None
    if settings.monitor_scheduler:
        task = asyncio.create_task(
            run_forever(service, settings.monitor_interval_seconds), name="kpiguard-monitor-scheduler"
        )
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run_forever(service: MonitorService, interval: float) -> None:
    """Run the scheduler now and then every ``interval`` seconds; a failed run is logged and retried."""
    while True:
        try:
            result = await service.run_scheduled(utcnow())
            if result.computed:
                log.info("monitor: computed %d bucket(s), %d alert change(s)", len(result.computed),
                         len(result.alerts))
        except asyncio.CancelledError:
            raise
        except Exception:  # the next run retries; one bad run must not stop the scheduler
            log.exception("monitor: scheduled computation failed")
        await asyncio.sleep(interval)
