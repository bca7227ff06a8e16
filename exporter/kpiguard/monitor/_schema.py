"""One telemetry event in the seed's ``learning_events`` shape, validated, and the flat record the monitor counts.

The accepted shape::

    {
      "event_id": "req-7f3a",                      # required, 1..128 characters
      "occurred_at": "2026-02-21T10:15:00Z",       # required, ISO 8601; without an offset it is taken as UTC
      "event_type": "chat_completion",             # required, 1..64 characters
      "event_data": {                              # optional object, free-form; these keys are type-checked:
        "model": "claude-sonnet-4", "backend": "railway", "agent": "prince_flowers",   # strings or null
        "duration_ms": 812.5,                      # number >= 0 or null (JSON true/"812" refused)
        "success": true,                           # boolean or null
        "error": null,                             # string or null
        "telemetry": {"request_chain": [{"fallback_reason": "rate_limited"}, ...]}
      }
    }

Success or failure: ``event_data.success`` decides when it is present; when it is absent or null, the event
failed if ``event_data.error`` is a non-empty string and succeeded otherwise. An explicit ``"success": true``
with an ``error`` string is a success that logged an error (e.g. an upstream failure recovered by a
fallback), so ``success`` always wins.

Fallback: an event is a fallback when ``event_data.telemetry.request_chain[0].fallback_reason`` is a non-blank
string, exactly the seed's ``IS NOT NULL`` test except that ``""`` or whitespace counts as "no reason".
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

MAX_EVENT_ID_LENGTH = 128
MAX_EVENT_TYPE_LENGTH = 64
MAX_NAME_LENGTH = 128
MAX_REASON_LENGTH = 512
MAX_ERROR_LENGTH = 4096
MAX_TIMESTAMP_LENGTH = 64
MAX_REQUEST_CHAIN = 64
# A day in milliseconds times a thousand: far beyond any request, small enough to stay exact in a float.
MAX_DURATION_MS = 86_400_000_000.0

# Names become Prometheus label values and JSON keys: printable, no control characters.
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"

Name = Annotated[str | None, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=_PRINTABLE, strict=True)]


class RequestChainLink(BaseModel):
    """One hop of ``telemetry.request_chain``; only ``fallback_reason`` is read, other keys are kept."""

    model_config = ConfigDict(extra="allow")

    fallback_reason: Annotated[str | None, Field(max_length=MAX_REASON_LENGTH, strict=True)] = None


class Telemetry(BaseModel):
    """``event_data.telemetry``; only ``request_chain`` is read, other keys are kept."""

    model_config = ConfigDict(extra="allow")

    request_chain: Annotated[list[RequestChainLink], Field(default_factory=list, max_length=MAX_REQUEST_CHAIN)]


class EventData(BaseModel):
    """``event_data``: free-form, but the keys the monitor reads are type-checked."""

    model_config = ConfigDict(extra="allow")

    model: Name = None
    backend: Name = None
    agent: Name = None
    duration_ms: Annotated[float | None, Field(ge=0, le=MAX_DURATION_MS, allow_inf_nan=False, strict=True)] = None
    success: StrictBool | None = None
    error: Annotated[str | None, Field(max_length=MAX_ERROR_LENGTH, strict=True)] = None
    telemetry: Telemetry | None = None


class TelemetryEvent(BaseModel):
    """One telemetry event as a client sends it; unknown top-level keys are refused."""

    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[str, Field(min_length=1, max_length=MAX_EVENT_ID_LENGTH, pattern=_PRINTABLE, strict=True)]
    occurred_at: datetime
    event_type: Annotated[str, Field(min_length=1, max_length=MAX_EVENT_TYPE_LENGTH, pattern=_PRINTABLE, strict=True)]
    event_data: EventData = Field(default_factory=EventData)

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _iso_8601(cls, value: Any) -> datetime:
        """Parse an ISO 8601 string ourselves: pydantic's lax mode would also take Unix numbers."""
        if isinstance(value, datetime):
            return value
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date-time string")
        if len(value) > MAX_TIMESTAMP_LENGTH:
            raise ValueError(f"must be at most {MAX_TIMESTAMP_LENGTH} characters")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 date-time: {value!r}") from None

    @field_validator("occurred_at", mode="after")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        """Store every instant in UTC; a time without an offset is taken as UTC already."""
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class TelemetryRecord:
    """The flat view of one stored event that aggregation reads."""

    event_id: str
    occurred_at: datetime
    event_type: str
    model: str | None
    backend: str | None
    agent: str | None
    duration_ms: float | None
    success: bool
    fallback_reason: str | None
    # True when the event_id was stored before: counted as a duplicate, never as traffic.
    duplicate: bool = False


def is_success(data: EventData) -> bool:
    """Say whether the event succeeded: ``success`` when given, else no non-empty ``error``."""
    if data.success is not None:
        return data.success
    return not (data.error and data.error.strip())


def fallback_reason(data: EventData) -> str | None:
    """Return ``telemetry.request_chain[0].fallback_reason``, or None when absent or blank."""
    if data.telemetry is None or not data.telemetry.request_chain:
        return None
    reason = data.telemetry.request_chain[0].fallback_reason
    if reason is None or not reason.strip():
        return None
    return reason


def to_record(event: TelemetryEvent, *, duplicate: bool = False) -> TelemetryRecord:
    """Flatten a validated event into the record aggregation counts."""
    data = event.event_data
    return TelemetryRecord(
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        event_type=event.event_type,
        model=data.model,
        backend=data.backend,
        agent=data.agent,
        duration_ms=data.duration_ms,
        success=is_success(data),
        fallback_reason=fallback_reason(data),
        duplicate=duplicate,
    )
