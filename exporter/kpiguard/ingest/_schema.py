"""The KPI event as a client sends it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import SchemaValidator, core_schema

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


# An event as the writer stores it: the model's fields in this order, ``created_at`` still None when not sent.
ROW_FIELDS = ("domain", "metric", "success", "value", "actor", "correlation_id", "detail", "created_at", "event_id")
EventRow = tuple[str, str, bool, float | None, str | None, str | None, dict[str, Any] | None, datetime | None, str | None]
_row = itemgetter(*ROW_FIELDS)


def row_of(event: KpiEventFields) -> EventRow:
    """A validated event's fields in ``ROW_FIELDS`` order."""
    return _row(event.__dict__)  # type: ignore[no-any-return]


def _fields_validators() -> tuple[SchemaValidator, SchemaValidator]:
    """KpiEventFields' own validation without building the model: for one object and for an array of them.

    pydantic-core validates a model's fields into a dict and then builds the instance; a batch of
    1,000 events spent a third of its validation time on the instances and as much again copying
    their attributes into rows. The inner ``model-fields`` schema is the model's exact schema (the
    same constraints, validators, defaults and error locations), so accepting and refusing do not change.
    """
    schema = KpiEventFields.__pydantic_core_schema__
    if schema["type"] != "model" or schema["schema"]["type"] != "model-fields":  # pragma: no cover - pydantic changed
        raise RuntimeError(f"unexpected core schema for KpiEventFields: {schema['type']}")
    fields, config = schema["schema"], schema.get("config")
    return SchemaValidator(fields, config), SchemaValidator(core_schema.list_schema(fields), config)


_ONE, _MANY = _fields_validators()


def row_from_json(text: str | bytes) -> EventRow:
    """Validate one JSON object as a :class:`KpiEventFields` and return its row; raises pydantic's ValidationError."""
    return _row(_ONE.validate_json(text)[0])  # type: ignore[no-any-return]


def rows_from_json_array(text: str | bytes) -> list[EventRow]:
    """Validate a JSON array of :class:`KpiEventFields` objects into rows; raises pydantic's ValidationError."""
    return [_row(fields) for fields, _extra, _set in _MANY.validate_json(text)]


def rows_of(events: Sequence[KpiEventFields]) -> list[EventRow]:
    """Validated events' rows, in order."""
    return [row_of(e) for e in events]
