"""Liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from sqlalchemy import text

from kpiguard.api._json import json_response
from kpiguard.db import migrate
from kpiguard.keys import ENGINE, METRICS

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """The database answers and its schema is at the code's head revision."""
    engine = request.app[ENGINE]
    head = migrate.head_revision()
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current = await migrate.current_revision(engine)
    except Exception as exc:  # any failure to reach the store means not ready
        return json_response({"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}, 503)
    if current != head:
        return json_response(
            {"status": "unavailable", "database": "migrations pending: run `kpiguard db upgrade`",
             "revision": current, "head": head},
            503,
        )
    return json_response({"status": "ready", "revision": current})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Expose the app's registry in the format the scraper asks for."""
    registry = request.app[METRICS].registry
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp
