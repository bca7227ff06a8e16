"""The two middlewares: HTTP metrics around everything, and errors rendered as JSON."""

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
async def metrics_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Count and time every request by route template, method and status."""
    metrics = request.app[METRICS]
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route_label(request)
        metrics.http_requests_by(route, request.method, str(status)).inc()
        metrics.http_duration_by(route).observe(time.perf_counter() - start)


@web.middleware
async def error_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Render every error as ``{"error": {code, message, field}}``; never leak a traceback."""
    try:
        return await handler(request)
    except RequestError as exc:
        return json_response(exc.to_json(), status=exc.status)
    except StorageError as exc:
        log.warning("%s %s: %s", request.method, request.path, exc.message)
        body = {"error": {"code": exc.code, "message": exc.message, "field": None}}
        return json_response(body, status=exc.status, headers={"Retry-After": "1"})
    except web.HTTPRequestEntityTooLarge as exc:
        return json_response(PayloadTooLarge(exc.text or "body too large").to_json(), status=413)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 404 else f"no route for {request.method} {request.path}"
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return json_response({"error": {"code": code, "message": message, "field": None}}, exc.status, headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        body = {"error": {"code": "internal_error", "message": "internal error; see the server log", "field": None}}
        return json_response(body, status=500)
