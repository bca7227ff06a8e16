"""Turning request bodies into validated pydantic models, with errors that name the field.

Shared by every endpoint: JSON, form and NDJSON bodies, size limits, and the conversion of
pydantic's ValidationError into kpiguard's ValidationFailed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ValidationError

from kpiguard.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

M = TypeVar("M", bound=BaseModel)

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
NDJSON = "application/x-ndjson"


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the whole body, refusing one over ``limit`` bytes before reading it where the length is known."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes exceeds the limit of {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes") from exc
    if len(body) > limit:
        raise PayloadTooLarge(f"body of {len(body)} bytes exceeds the limit of {limit} bytes")
    return body


def decode_utf8(body: bytes) -> str:
    """Decode the body as UTF-8 or refuse it."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"body is not valid UTF-8 (byte {exc.start})") from exc


def parse_json(text: str, *, where: str | None = None) -> Any:
    """Parse JSON, naming the line and column of a syntax error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        prefix = f"{where}: " if where else ""
        raise MalformedBody(
            f"{prefix}malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field=where
        ) from exc


def ndjson_lines(text: str) -> list[str]:
    """The non-blank lines of an NDJSON body, one event each."""
    return [line for line in text.split("\n") if line.strip()]


def parse_ndjson(text: str, check_count: Callable[[int], None]) -> list[dict[str, Any]]:
    """Parse NDJSON into objects (blank lines skipped), naming the line of an error as ``events[i]``.

    ``check_count`` sees the number of lines before any is parsed, so an oversize batch is refused cheaply.
    """
    lines = ndjson_lines(text)
    check_count(len(lines))
    return parse_ndjson_lines(lines)


def parse_ndjson_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Parse :func:`ndjson_lines` into objects, naming the line of an error as ``events[i]``."""
    items: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        item = parse_json(line, where=f"events[{i}]")
        if not isinstance(item, dict):
            raise ValidationFailed(f"events[{i}]: expected a JSON object", field=f"events[{i}]")
        items.append(item)
    return items


def parse_form(text: str) -> dict[str, str]:
    """Parse an urlencoded form, refusing a field given twice."""
    out: dict[str, str] = {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError as exc:
        raise MalformedBody(f"malformed form body: {exc}") from exc
    for key, value in pairs:
        if key in out:
            raise ValidationFailed(f"field {key} is given more than once", field=key)
        out[key] = value
    return out


def media_type(request: web.Request) -> str:
    """The request's media type, lower-cased, without parameters."""
    return (request.content_type or "").lower()


async def read_object(request: web.Request, limit: int, *, allow_empty: bool = False) -> dict[str, Any]:
    """Read a JSON object or a form body into a dict of fields."""
    body = await read_body(request, limit)
    ctype = media_type(request)
    if not body.strip():
        if allow_empty:
            return {}
        raise ValidationFailed("the request body is empty", field=None)
    text = decode_utf8(body)
    if ctype == JSON:
        data = parse_json(text)
        if not isinstance(data, dict):
            raise ValidationFailed(f"expected a JSON object, got {_json_kind(data)}", field=None)
        return data
    if ctype == FORM:
        return parse_form(text)
    raise UnsupportedMediaType(
        f"Content-Type {ctype or '(none)'} is not accepted here", field="Content-Type", choices=[JSON, FORM]
    )


def validate(model: type[M], data: Mapping[str, Any], *, prefix: str = "") -> M:
    """Validate ``data`` as ``model``, raising ValidationFailed naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise to_validation_failed(exc, prefix=prefix) from exc


def to_validation_failed(exc: ValidationError, *, prefix: str = "") -> ValidationFailed:
    """Convert pydantic's error into kpiguard's, naming the field and listing valid choices of an enum."""
    err = exc.errors(include_url=False)[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    field = f"{prefix}{'.' if prefix and loc and not loc.startswith('[') else ''}{loc}" if prefix else loc
    choices = None
    ctx = err.get("ctx") or {}
    if err["type"] == "enum" and "expected" in ctx:
        choices = [c.strip().strip("'") for c in str(ctx["expected"]).replace(" or ", ", ").split(",")]
    msg = err["msg"]
    if err["type"] == "missing":
        msg = "field required"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    more = len(exc.errors()) - 1
    message = f"{field or 'body'}: {msg}" + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
    return ValidationFailed(message, field=field or None, choices=choices)


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null"
    )
