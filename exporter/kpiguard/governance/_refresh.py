"""Keeping the exported weekly figures current, off the ingest path.

Every few seconds one indexed ``max(id)`` over the enforcement and release entries says whether
anything was enforced or released; only then (or when the week turns) are the figures recomputed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpiguard.db._types import utcnow
from kpiguard.governance._prometheus import WeeklyCollector
from kpiguard.governance._store import last_figure_id, read_weekly
from kpiguard.governance._week import IsoWeek, week_of

log = logging.getLogger(__name__)

# Recompute at least this often even when nothing changed, so the exported timestamp stays fresh.
FULL_SECONDS = 300.0


class Refresher:
    """Recomputes the current week's figures into a collector when the audit trail changes."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], collector: WeeklyCollector,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._collector = collector
        self._clock = clock
        self._seen: tuple[int, IsoWeek] | None = None
        self._computed_at = 0.0

    async def refresh(self, *, force: bool = False) -> bool:
        """Recompute if something changed (or ``force``); True if it did."""
        now = self._clock()
        week = week_of(now)
        async with self._sessions() as session:
            last = await last_figure_id(session)
            stale = time.monotonic() - self._computed_at > FULL_SECONDS
            if not force and not stale and self._seen == (last, week):
                return False
            figures = await read_weekly(session, week)
        self._collector.update(figures, now)
        self._seen = (last, week)
        self._computed_at = time.monotonic()
        return True

    async def run(self, interval: float) -> None:
        """Refresh every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing the governance figures failed")


async def governance_refresh(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: keep the app's exported weekly figures current for its lifetime."""
    from kpiguard.keys import METRICS, SESSIONS, SETTINGS

    refresher = Refresher(app[SESSIONS], app[METRICS].governance)
    try:
        await refresher.refresh(force=True)
    except Exception as exc:  # an unmigrated store: serve anyway, /readyz says why
        log.warning("governance figures not computed on this store (%s)", type(exc).__name__)
    task = asyncio.create_task(refresher.run(app[SETTINGS].governance_refresh_seconds), name="kpiguard-governance-refresh")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
