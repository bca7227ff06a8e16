"""POST /api/v1/alertmanager/webhook."""

from __future__ import annotations

from aiohttp import web

from kpiguard.api._json import json_response
from kpiguard.auth import Scope, requires
from kpiguard.errors import MalformedBody, ValidationFailed
from kpiguard.keys import RECEIVER, SETTINGS
from kpiguard.validation import read_object, validate
from kpiguard.webhook import Notification

routes = web.RouteTableDef()


@routes.post("/api/v1/alertmanager/webhook")
@requires(Scope.WEBHOOK)
async def alertmanager_webhook(request: web.Request) -> web.Response:
    """Execute the notification's firing alerts once each; 400 names the bad field; 503 lets Alertmanager retry."""
    data = await read_object(request, request.app[SETTINGS].max_body_bytes)
    try:
        note = validate(Notification, data)
    except ValidationFailed as exc:  # Alertmanager's payload is a protocol, not user input: 400 as issue #5 says
        raise MalformedBody(exc.message, field=exc.field, choices=exc.choices) from exc
    report = await request.app[RECEIVER].handle(note)
    return json_response(report.to_json(len(note.alerts)))
