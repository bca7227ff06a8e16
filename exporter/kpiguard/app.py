"""The app factory: one ``web.Application`` per call, no import-time side effects."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable, Sequence
from operator import itemgetter

from aiohttp import web
from prometheus_client import CollectorRegistry

from kpiguard import api
from kpiguard.db import migrate
from kpiguard.db.engine import create_engine, session_factory
from kpiguard.governance._refresh import governance_refresh
from kpiguard.ingest import EventWriter, StoredEvent
from kpiguard.keys import ENGINE, EVALUATOR, METRICS, RECEIVER, SESSIONS, SETTINGS, WRITER
from kpiguard.metrics import Metrics, observe_many
from kpiguard.middleware import http_middleware
from kpiguard.monitor.service import monitor_context
from kpiguard.settings import Settings
from kpiguard.tripwire._runner import Evaluator, running
from kpiguard.webhook import Receiver

log = logging.getLogger(__name__)


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> web.Application:
    """Build the kpiguard application on ``settings``, exporting its metrics on ``registry``."""
    app = web.Application(
        middlewares=[http_middleware],
        # aiohttp refuses larger bodies itself; the handlers check again with a clearer message
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics(registry if registry is not None else CollectorRegistry(), settings.max_label_pairs)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_tripwire)
    app.cleanup_ctx.append(monitor_context)  # after _database: it needs the sessions
    app.cleanup_ctx.append(governance_refresh)
    api.setup_routes(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    """Open the engine (migrating SQLite by itself), start the event writer; close both at shutdown."""
    settings = app[SETTINGS]
    engine = create_engine(settings)
    try:
        if settings.should_auto_migrate:
            await migrate.upgrade(engine)
        else:
            current = await migrate.current_revision(engine)
            if current != migrate.head_revision():
                log.warning(
                    "database at revision %s, code expects %s: run `kpiguard db upgrade`",
                    current, migrate.head_revision(),
                )
        app[ENGINE] = engine
        app[SESSIONS] = session_factory(engine)
        writer = EventWriter(app[SESSIONS], engine=engine, flush_max_events=settings.ingest_flush_max_events,
                             observe_group=app[METRICS].ingest_group_commit.observe)
        writer.add_listener(_count_events(app[METRICS]))
        app[WRITER] = writer
        await writer.start()
        try:
            yield
        finally:
            await writer.stop()
    finally:
        await engine.dispose()


async def _tripwire(app: web.Application) -> AsyncIterator[None]:
    """Run the tripwire's evaluator after ingest and on its schedule; stop it at shutdown."""
    settings = app[SETTINGS]
    evaluator = Evaluator(app[SESSIONS], app[METRICS], enforce=settings.native_enforcement,
                          read_parts=settings.evaluation_read_parts)
    app[EVALUATOR] = evaluator
    app[RECEIVER] = Receiver(app[SESSIONS], app[METRICS], auto_release_throttle=settings.webhook_auto_release_throttle)
    app[WRITER].add_listener(evaluator.on_commit)
    async with running(evaluator, settings.evaluation_interval_seconds):
        yield


def _count_events(metrics: Metrics) -> Callable[[Sequence[StoredEvent]], None]:
    """A commit listener that exports the stored events as counters and value observations."""
    outcome = itemgetter(1, 2, 3)  # (domain, metric, success) of a StoredEvent

    def listener(events: Sequence[StoredEvent]) -> None:
        # Grouped by pair first: a batch of 1,000 events then costs one labels() lookup per pair and
        # series, not three per event (the lookups dominated batch ingest in the profile).
        tally = Tally(map(outcome, events))
        values: dict[tuple[str, str], list[float]] = {}
        for ev in events:
            if ev.value is not None:
                values.setdefault((ev.domain, ev.metric), []).append(ev.value)
        admitted: dict[tuple[str, str], bool] = {}
        for (domain, metric, success), n in tally.items():
            ok = admitted.get((domain, metric))
            if ok is None:
                ok = admitted[(domain, metric)] = metrics.labels.admit(domain, metric, 0)
            if ok:
                metrics.kpi_events.labels(domain, metric, "success" if success else "failure").inc(n)
            else:
                metrics.series_dropped.inc(n)
        for pair, vals in values.items():
            if not admitted.get(pair):
                continue
            observe_many(metrics.kpi_value.labels(*pair), vals)
            positive = sum(v for v in vals if v >= 0)
            negative = -sum(v for v in vals if v < 0)
            # inc both, even by 0: both series exist from the first value, so the mean rule
            # (positive - negative) / count never loses a side to an absent series.
            metrics.kpi_value_positive.labels(*pair).inc(positive)
            metrics.kpi_value_negative.labels(*pair).inc(negative)

    return listener
