"""JSON responses with UTC ISO 8601 timestamps."""

from __future__ import annotations

import enum
import json
from datetime import date, datetime
from typing import Any

from aiohttp import web


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# One encoder for every response: json.dumps with options builds a new JSONEncoder on each call.
_encode = json.JSONEncoder(default=_default, allow_nan=False).encode


def dumps(data: Any) -> str:
    """Serialise to JSON the way every kpiguard response does."""
    return _encode(data)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response."""
    return web.json_response(data, status=status, headers=headers, dumps=dumps)
