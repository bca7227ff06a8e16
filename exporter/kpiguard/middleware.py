"""The one middleware: errors rendered as JSON, and every request counted and timed."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from kpiguard.api._json import json_response
from kpiguard.errors import PayloadTooLarge, RequestError, StorageError
from kpiguard.keys import METRICS

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
}


def _route_label(request: web.Request) -> str:
    # The route's template, never the raw path: label values stay bounded.
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical


@web.middleware
async def http_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Render every error as ``{"error": {code, message, field}}`` (never a traceback); count and time every request.

    Requests are counted and timed by route template, method and the status answered, an error's
    included. One middleware, not one for errors and one for metrics: counted with callgrind, the
    second layer cost 11k of the 444k instructions a single event took in the server (2.5 %).
    """
    start = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except RequestError as exc:
            response = json_response(exc.to_json(), status=exc.status)
        except StorageError as exc:
            log.warning("%s %s: %s", request.method, request.path, exc.message)
            body = {"error": {"code": exc.code, "message": exc.message, "field": None}}
            response = json_response(body, status=exc.status, headers={"Retry-After": "1"})
        except web.HTTPRequestEntityTooLarge as exc:
            response = json_response(PayloadTooLarge(exc.text or "body too large").to_json(), status=413)
        except web.HTTPException as exc:
            status = exc.status
            if exc.status < 400:
                raise
            code = _HTTP_CODES.get(exc.status, "http_error")
            message = exc.reason if exc.status != 404 else f"no route for {request.method} {request.path}"
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            response = json_response({"error": {"code": code, "message": message, "field": None}}, exc.status, headers)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            body = {"error": {"code": "internal_error", "message": "internal error; see the server log", "field": None}}
            response = json_response(body, status=500)
        status = response.status
        return response
    finally:
        metrics = request.app[METRICS]
        route = _route_label(request)
        metrics.http_requests_inc(route, request.method, str(status))(1)
        metrics.http_duration_observe(route)(time.perf_counter() - start)
