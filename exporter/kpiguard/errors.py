"""Every exception kpiguard raises on purpose, and the HTTP status each one becomes.

    KpiguardError                      base; never raised itself
    ├── RequestError                   the client's fault: 4xx, rendered as {"error": {code, message, field}}
    │   ├── MalformedBody        400   not JSON / not UTF-8 / not a form / not NDJSON
    │   ├── ValidationFailed     422   parsed, but a field is missing, of the wrong type or out of range
    │   ├── UnsupportedMediaType 415   a Content-Type the endpoint does not take
    │   ├── PayloadTooLarge      413   body or batch over the configured limit
    │   ├── Unauthorized         401   no token, or an unknown one
    │   ├── Forbidden            403   a known token without the needed scope
    │   ├── NotFound             404   an unknown id or name
    │   └── Conflict             409   a state transition that is not allowed
    ├── ConfigError                    a setting is invalid; stops start-up naming the setting
    ├── SpecError                      a YAML spec file is invalid; names the file and the field
    └── StorageError         503       the database could not store or read; the client may retry

Library errors (pydantic, json, SQLAlchemy) are converted where they cross into kpiguard, with
``raise ... from exc``, so that one middleware can render them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar


class KpiguardError(Exception):
    """Base of every kpiguard exception."""


class RequestError(KpiguardError):
    """A request kpiguard refuses; rendered as a 4xx JSON error."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        choices: Iterable[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.field = field
        self.choices = list(choices) if choices is not None else None
        self.extra = extra or {}
        super().__init__(message)

    def to_json(self) -> dict[str, Any]:
        """The body of the error response."""
        body: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if self.choices is not None:
            body["choices"] = self.choices
        body.update(self.extra)
        return {"error": body}


class MalformedBody(RequestError):
    """The body cannot be parsed at all."""

    status = 400
    code = "malformed_body"


class ValidationFailed(RequestError):
    """The body parsed, but a field is missing, of the wrong type or out of range."""

    status = 422
    code = "validation_failed"


class UnsupportedMediaType(RequestError):
    """The Content-Type is not one the endpoint takes."""

    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(RequestError):
    """The body or the batch is larger than the configured limit."""

    status = 413
    code = "payload_too_large"


class Unauthorized(RequestError):
    """No bearer token, or one kpiguard does not know."""

    status = 401
    code = "unauthorized"


class Forbidden(RequestError):
    """A known token that lacks the scope the endpoint needs."""

    status = 403
    code = "forbidden"


class NotFound(RequestError):
    """An id or name that does not exist."""

    status = 404
    code = "not_found"


class Conflict(RequestError):
    """A transition the current state does not allow."""

    status = 409
    code = "conflict"


class ConfigError(KpiguardError):
    """An invalid setting; start-up stops and names it."""

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = reason
        super().__init__(f"invalid setting {setting}: {reason}")


class SpecError(KpiguardError):
    """An invalid YAML spec file; names the file and the field."""

    def __init__(self, file: str, field: str | None, reason: str) -> None:
        self.file = file
        self.field = field
        self.reason = reason
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {reason}")


class StorageError(KpiguardError):
    """The database failed; the request may be retried."""

    status: ClassVar[int] = 503
    code: ClassVar[str] = "storage_unavailable"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
