"""The Monday control plane and the weekly governance figures."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from kpiguard.api._json import json_response
from kpiguard.auth import Scope, requires
from kpiguard.db._types import utcnow
from kpiguard.errors import ValidationFailed
from kpiguard.governance import parse_week, week_of
from kpiguard.governance._store import control_plane as read_control_plane
from kpiguard.governance._store import read_weekly
from kpiguard.keys import METRICS, SESSIONS

routes = web.RouteTableDef()


def _only(request: web.Request, allowed: Iterable[str]) -> None:
    """Refuse query parameters the endpoint does not know, naming the first."""
    known = set(allowed)
    for name in request.query:
        if name not in known:
            raise ValidationFailed(f"{name}: unknown query parameter", field=name, choices=sorted(known))


@routes.get("/api/governance/control-plane")
@requires(Scope.READ)
async def control_plane(request: web.Request) -> web.Response:
    """The seed's Monday checks: go-live and why, throttled engines and today's denials, triggers, decisions."""
    _only(request, ())
    async with request.app[SESSIONS]() as session:
        return json_response(await read_control_plane(session, utcnow()))


@routes.get("/api/governance/weekly")
@requires(Scope.READ)
async def weekly(request: web.Request) -> web.Response:
    """A week's governance figures from the audit trail (``week=2026-W47``, default the current week)."""
    _only(request, ("week",))
    now = utcnow()
    text = request.query.get("week")
    if text is None:
        week = week_of(now)
    else:
        try:
            week = parse_week(text)
        except ValueError as exc:
            raise ValidationFailed(f"week: {exc}", field="week") from exc
    async with request.app[SESSIONS]() as session:
        figures = await read_weekly(session, week)
    if week == week_of(now):
        # fresher than the refresher's last pass: export what was just computed
        request.app[METRICS].governance.update(figures, now)
    return json_response(figures.to_json())
