"""The KPI event as a client sends it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from kpiguard.names import NAME_PATTERN

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MAX_DETAIL_BYTES = 16 * 1024


class KpiEventFields(BaseModel):
    """A KPI event's fields, without the form-body leniency of :class:`KpiEventIn` (``value`` of "" is refused).

    Batches are validated with this model first: a Python validator that runs on every event costs
    about a tenth of batch ingest, and only a form (or a client that imitates one) sends "". A batch
    this model refuses is validated again with :class:`KpiEventIn`, which accepts or names the field.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    domain: Name
    metric: Name
    success: bool
    value: float | None = None
    actor: ShortText | None = None
    correlation_id: ShortText | None = None
    detail: dict[str, Any] | None = None
    created_at: datetime | None = Field(None, description="ISO 8601; naive means UTC; default: now.")
    event_id: ShortText | None = None

    @field_validator("detail", mode="before")
    @classmethod
    def _detail_from_form(cls, value: Any) -> Any:
        # A form body can only carry text: accept a JSON object written as a string.
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError("must be a JSON object") from exc
        return value

    @field_validator("detail")
    @classmethod
    def _detail_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value)) > MAX_DETAIL_BYTES:
            raise ValueError(f"must serialise to at most {MAX_DETAIL_BYTES} bytes")
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class KpiEventIn(KpiEventFields):
    """One KPI event: the seed's fields, plus ``event_id`` to make a retry count once."""

    @field_validator("value", mode="before")
    @classmethod
    def _blank_value(cls, value: Any) -> Any:
        # An empty form field means "no value", not an error.
        return None if value == "" else value
