"""The drift monitor's endpoints: telemetry ingest, computation, summary, alerts, baseline and daily metrics."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, TypeAdapter, ValidationError

from kpiguard.api._json import json_response
from kpiguard.auth import Scope, requires
from kpiguard.db._types import utcnow
from kpiguard.errors import NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from kpiguard.keys import METRICS, MONITOR, SESSIONS, SETTINGS
from kpiguard.monitor import (
    GLOBAL_SCOPE,
    AlertAction,
    AlertStatus,
    AlertType,
    Severity,
    TelemetryEvent,
    severities_at_least,
    trend,
)
from kpiguard.monitor.service import Granularity, alert_json, baseline_json, count_committed, day_start, metrics_json
from kpiguard.monitor.service import _store as store
from kpiguard.monitor.service import store_events
from kpiguard.validation import (
    JSON,
    NDJSON,
    decode_utf8,
    media_type,
    parse_json,
    parse_ndjson,
    read_body,
    read_object,
    to_validation_failed,
    validate,
)

routes = web.RouteTableDef()
_EVENTS = TypeAdapter(list[TelemetryEvent])
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WINDOW = re.compile(r"^([0-9]{1,3})d$")
MAX_WINDOW_DAYS = 366
MAX_ALERTS = 1000
# ?status= takes the lifecycle states, "active" (open or acknowledged) and "all".
STATUS_CHOICES = ("open", "acknowledged", "resolved", "active", "all")
NOTE_MAX = 1000
ACTOR_MAX = 128


# --- query parameters ---

def _query(request: web.Request, allowed: Sequence[str]) -> dict[str, str]:
    """The query parameters, refusing unknown or repeated ones."""
    out: dict[str, str] = {}
    for key, value in request.query.items():
        if key not in allowed:
            raise ValidationFailed(f"{key}: unknown query parameter", field=key, choices=list(allowed))
        if key in out:
            raise ValidationFailed(f"{key}: given more than once", field=key)
        out[key] = value
    return out


def _date(value: str, field: str) -> date:
    """A YYYY-MM-DD date, or a 422 naming ``field``."""
    try:
        if not _DATE.match(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{field}: not a date (YYYY-MM-DD): {value!r}", field=field) from None


def _today() -> date:
    return utcnow().date()


def _window_days(value: str) -> int:
    match = _WINDOW.match(value.strip())
    days = int(match.group(1)) if match else 0
    if not 1 <= days <= MAX_WINDOW_DAYS:
        raise ValidationFailed(
            f"window: must be a number of days like 7d, from 1d to {MAX_WINDOW_DAYS}d, got {value!r}", field="window"
        )
    return days


# --- telemetry ingest ---

@routes.post("/api/monitor/events")
@requires(Scope.INGEST)
async def ingest_events(request: web.Request) -> web.Response:
    """Store telemetry events (one JSON object, a JSON array or NDJSON) all-or-nothing; 201 once committed."""
    settings = request.app[SETTINGS]
    body = await read_body(request, settings.max_body_bytes)
    ctype = media_type(request)
    if ctype not in (JSON, NDJSON):
        raise UnsupportedMediaType(
            f"Content-Type {ctype or '(none)'} is not accepted here", field="Content-Type", choices=[JSON, NDJSON]
        )
    if not body.strip():
        raise ValidationFailed("the request body holds no event", field="events")
    text = decode_utf8(body)
    if ctype == JSON:
        events, fields = _json_events(text, settings.max_batch_events)
    else:
        events, fields = _ndjson_events(text, settings.max_batch_events)
    result = await store_events(request.app[SESSIONS], events, fields)
    metrics = request.app[METRICS]
    count_committed(metrics, result.rows)
    metrics.ingest_batch_size.labels("monitor-events").observe(len(events))
    return json_response(result.to_json(), status=201)


def _check_count(n: int, limit: int) -> None:
    if n == 0:
        raise ValidationFailed("the batch is empty", field="events")
    if n > limit:
        raise PayloadTooLarge(f"the batch holds {n} events; the limit is {limit}", field="events")


def _validate_events(items: list[Any]) -> tuple[list[TelemetryEvent], list[str]]:
    try:
        events = _EVENTS.validate_python(items)
    except ValidationError as exc:
        raise to_validation_failed(exc, prefix="events") from exc
    return events, [f"events[{i}]" for i in range(len(events))]


def _json_events(text: str, limit: int) -> tuple[list[TelemetryEvent], list[str]]:
    data = parse_json(text)
    if isinstance(data, dict):
        # a single event: its fields are named as they are (event_data.duration_ms)
        return [validate(TelemetryEvent, data)], [""]
    if not isinstance(data, list):
        raise ValidationFailed("expected an event object or an array of events", field="events")
    _check_count(len(data), limit)
    return _validate_events(data)


def _ndjson_events(text: str, limit: int) -> tuple[list[TelemetryEvent], list[str]]:
    return _validate_events(parse_ndjson(text, lambda n: _check_count(n, limit)))


# --- computation ---

class ComputeIn(BaseModel):
    """The body of POST /api/monitor/compute; every field optional."""

    model_config = ConfigDict(extra="forbid")

    date: Annotated[str | None, Field(strict=True)] = None
    hour: Annotated[StrictInt | None, Field(ge=0, le=23)] = None
    update_baseline: StrictBool = True


@routes.post("/api/monitor/compute")
@requires(Scope.ADMIN)
async def compute(request: web.Request) -> web.Response:
    """Compute a day (with its baselines and alerts) or an hour; an empty body does the last closed hour and day."""
    settings = request.app[SETTINGS]
    body = await read_body(request, settings.max_body_bytes)
    data: dict[str, Any] = {}
    if body.strip():
        if media_type(request) != JSON:
            raise UnsupportedMediaType(
                f"Content-Type {media_type(request) or '(none)'} is not accepted here", field="Content-Type",
                choices=[JSON],
            )
        parsed = parse_json(decode_utf8(body))
        if not isinstance(parsed, dict):
            raise ValidationFailed("expected a JSON object", field=None)
        data = parsed
    req = validate(ComputeIn, data)
    service = request.app[MONITOR]
    now = utcnow()
    today = now.date()
    if req.date is None:
        if req.hour is not None:
            raise ValidationFailed("hour: needs a date", field="hour")
        last_hour = Granularity.HOUR.floor(now) - Granularity.HOUR.span
        result = await service.compute_hour(last_hour)
        result.extend(await service.compute_day(today - timedelta(days=1), update_baseline=req.update_baseline))
        requested: dict[str, Any] = {"hour": last_hour, "date": today - timedelta(days=1)}
    else:
        day = _date(req.date, "date")
        if day > today:
            raise ValidationFailed(f"date: {day.isoformat()} is in the future", field="date")
        if req.hour is None:
            result = await service.compute_day(day, update_baseline=req.update_baseline)
            requested = {"date": day}
        else:
            start = day_start(day) + timedelta(hours=req.hour)
            if start > now:
                raise ValidationFailed(f"hour: {start.isoformat()} has not started yet", field="hour")
            result = await service.compute_hour(start)
            requested = {"hour": start}
    return json_response({"requested": {**requested, "update_baseline": req.update_baseline}, **result.to_json()})


# --- reads ---

@routes.get("/api/monitor/summary")
@requires(Scope.READ)
async def summary(request: web.Request) -> web.Response:
    """The seed's summary of the closed days [end - window, end): totals, rates, baseline, trends, open alerts."""
    query = _query(request, ("window", "end"))
    days = _window_days(query.get("window", "7d"))
    end = _date(query["end"], "end") if "end" in query else _today()
    start = end - timedelta(days=days)
    async with request.app[SESSIONS]() as session:
        rows = await store.metrics_rows(
            session, Granularity.DAY, GLOBAL_SCOPE, day_start(start - timedelta(days=days)), day_start(end)
        )
        base = await store.find_baseline(session, request.app[MONITOR].baseline_name, GLOBAL_SCOPE, before=end)
        counts = await store.alert_counts(session)
    current = _pooled([r for r in rows if r.bucket_start >= day_start(start)])
    previous = _pooled([r for r in rows if r.bucket_start < day_start(start)])
    by_severity: dict[str, int] = {}
    acknowledged = 0
    for (_, severity, status), n in counts.items():
        if status == AlertStatus.OPEN:
            by_severity[severity] = by_severity.get(severity, 0) + n
        else:
            acknowledged += n
    ordered = {s.value: by_severity[s.value] for s in sorted(Severity, reverse=True) if s.value in by_severity}
    return json_response({
        "window": {"start_date": start, "end_date": end, "days": days},
        "metrics": {
            "total_events": current["total_events"],
            "avg_fallback_rate": current["fallback_rate"],
            "avg_error_rate": current["error_rate"],
            "avg_health_score": current["health_score"],
            "avg_duplicate_rate": current["duplicate_rate"],
            "avg_latency_p95": current["latency_p95"],
            "days_with_data": current["days_with_data"],
        },
        "baseline": {
            "fallback_rate": base.fallback_rate if base else None,
            "error_rate": base.error_rate if base else None,
            "latency_p95": base.latency_p95 if base else None,
            "duplicate_rate": base.duplicate_rate if base else None,
            "health_score": base.health_score if base else None,
            "start_date": base.start_day if base else None,
            "end_date": base.end_day if base else None,
        },
        "trends": {
            name: trend(current[name], previous[name]).value
            for name in ("fallback_rate", "error_rate", "duplicate_rate", "latency_p95", "health_score")
        },
        "alerts": {"total_open": sum(ordered.values()), "by_severity": ordered, "total_acknowledged": acknowledged},
    })


def _pooled(rows: Sequence[Any]) -> dict[str, Any]:
    """Event-weighted figures of several daily rows: rates pooled, health and p95 weighted by their counts."""
    total = sum(r.total_events for r in rows)
    received = total + sum(r.duplicate_events for r in rows)

    def weighted(attr: str, weight: str) -> float | None:
        pairs = [(getattr(r, attr), getattr(r, weight)) for r in rows
                 if getattr(r, attr) is not None and getattr(r, weight)]
        w = sum(n for _, n in pairs)
        return math.fsum(v * n for v, n in pairs) / w if w else None

    return {
        "total_events": total,
        "days_with_data": sum(1 for r in rows if r.total_events),
        "fallback_rate": sum(r.fallback_events for r in rows) / total if total else None,
        "error_rate": sum(r.failed_events for r in rows) / total if total else None,
        "duplicate_rate": sum(r.duplicate_events for r in rows) / received if received else None,
        "health_score": weighted("health_score", "total_events"),
        "latency_p95": weighted("latency_p95", "latency_count"),
    }


def _statuses(value: str) -> tuple[AlertStatus, ...]:
    value = value.strip().lower()
    if value == "all":
        return tuple(AlertStatus)
    if value == "active":
        return (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
    if value in STATUS_CHOICES:
        return (AlertStatus(value),)
    raise ValidationFailed(
        f"status must be one of {', '.join(STATUS_CHOICES)}, got {value!r}", field="status", choices=STATUS_CHOICES
    )


@routes.get("/api/monitor/alerts")
@requires(Scope.READ)
async def list_alerts(request: web.Request) -> web.Response:
    """Alerts at or above ?threshold= (the lowest severity shown) in ?status= (default active), newest first."""
    query = _query(request, ("threshold", "status", "type", "limit"))
    threshold = Severity.parse(query.get("threshold", "low"), "threshold")
    statuses = _statuses(query.get("status", "active"))
    types = None
    if "type" in query:
        try:
            types = [AlertType(query["type"].strip().lower())]
        except ValueError:
            choices = [t.value for t in AlertType]
            raise ValidationFailed(f"type must be one of {', '.join(choices)}, got {query['type']!r}", field="type",
                                   choices=choices) from None
    limit = 100
    if "limit" in query:
        raw = query["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_ALERTS:
            raise ValidationFailed(f"limit: must be an integer from 1 to {MAX_ALERTS}, got {raw!r}", field="limit")
        limit = int(raw)
    async with request.app[SESSIONS]() as session:
        rows = await store.list_alerts(
            session, severities=severities_at_least(threshold), statuses=statuses, types=types, limit=limit
        )
    return json_response({
        "threshold": threshold.value,
        "status": query.get("status", "active").strip().lower(),
        "count": len(rows),
        "alerts": [alert_json(r) for r in rows],
    })


@routes.get("/api/monitor/baseline")
@requires(Scope.READ)
async def get_baseline(request: web.Request) -> web.Response:
    """The current baseline (the newest), or with ?for_date= the one that checks that day; 404 when none."""
    query = _query(request, ("name", "for_date"))
    name = query.get("name", request.app[MONITOR].baseline_name)
    for_date = _date(query["for_date"], "for_date") if "for_date" in query else None
    async with request.app[SESSIONS]() as session:
        row = await store.find_baseline(session, name, GLOBAL_SCOPE, before=for_date)
    if row is None or (for_date is not None and row.end_day != for_date - timedelta(days=1)):
        when = f" for {for_date.isoformat()}" if for_date is not None else ""
        raise NotFound(f"no baseline {name!r}{when} has been computed; POST /api/monitor/compute",
                       field="for_date" if for_date is not None else "name")
    return json_response(baseline_json(row))


@routes.get("/api/monitor/metrics/daily")
@requires(Scope.READ)
async def daily_metrics(request: web.Request) -> web.Response:
    """The computed days start..end (inclusive; default the 7 days up to today), oldest first."""
    query = _query(request, ("start", "end"))
    end = _date(query["end"], "end") if "end" in query else _today()
    start = _date(query["start"], "start") if "start" in query else end - timedelta(days=6)
    if start > end:
        raise ValidationFailed(f"start: {start.isoformat()} is after end {end.isoformat()}", field="start")
    if (end - start).days + 1 > MAX_WINDOW_DAYS:
        raise ValidationFailed(f"start: the range is longer than {MAX_WINDOW_DAYS} days", field="start")
    async with request.app[SESSIONS]() as session:
        rows = await store.metrics_rows(
            session, Granularity.DAY, GLOBAL_SCOPE, day_start(start), day_start(end + timedelta(days=1))
        )
    return json_response({"start": start, "end": end, "days": [metrics_json(r) for r in rows]})


# --- the alert lifecycle ---

class AlertActionIn(BaseModel):
    """Who acts on an alert and why; every field optional (``by`` and ``actor`` are synonyms)."""

    model_config = ConfigDict(extra="forbid")

    by: Annotated[str | None, Field(min_length=1, max_length=ACTOR_MAX, pattern=r"^[^\x00-\x1f\x7f]+$")] = None
    actor: Annotated[str | None, Field(min_length=1, max_length=ACTOR_MAX, pattern=r"^[^\x00-\x1f\x7f]+$")] = None
    note: Annotated[str | None, Field(max_length=NOTE_MAX, pattern=r"^[^\x00]*$")] = None


async def _act(request: web.Request, action: AlertAction) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ValidationFailed(f"id: not an alert id: {raw!r}", field="id")
    data = await read_object(request, request.app[SETTINGS].max_body_bytes, allow_empty=True)
    body = validate(AlertActionIn, data)
    if body.by is not None and body.actor is not None and body.by != body.actor:
        raise ValidationFailed("actor: differs from by; give one of them", field="actor")
    actor = body.by if body.by is not None else body.actor
    alert = await request.app[MONITOR].act_on_alert(int(raw), action, actor, body.note)
    return json_response(alert)


@routes.post("/api/monitor/alerts/{id}/acknowledge")
@requires(Scope.ADMIN)
async def acknowledge_alert(request: web.Request) -> web.Response:
    """Acknowledge an open alert (409 otherwise, 404 for an unknown id), with who and an optional note."""
    return await _act(request, AlertAction.ACKNOWLEDGE)


@routes.post("/api/monitor/alerts/{id}/resolve")
@requires(Scope.ADMIN)
async def resolve_alert(request: web.Request) -> web.Response:
    """Resolve an open or acknowledged alert (409 when already resolved, 404 for an unknown id)."""
    return await _act(request, AlertAction.RESOLVE)
