"""The telemetry event schema: what it accepts, how it normalises, and where it says bad input is."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from kpiguard.monitor import TelemetryEvent, to_record
from kpiguard.monitor._schema import MAX_EVENT_ID_LENGTH, MAX_NAME_LENGTH, MAX_REASON_LENGTH

VALID: dict[str, Any] = {
    "event_id": "req-1",
    "occurred_at": "2026-02-21T10:15:00Z",
    "event_type": "chat_completion",
    "event_data": {
        "model": "claude-sonnet-4",
        "backend": "railway",
        "agent": "prince_flowers",
        "duration_ms": 812.5,
        "success": True,
        "session": {"free": "form"},
        "telemetry": {"request_chain": [{"fallback_reason": "rate_limited", "provider": "x"}, {"provider": "y"}]},
    },
}

_DROP = object()


def mutated(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A deep copy of VALID with the value at ``path`` replaced (or removed when ``value`` is _DROP)."""
    event = copy.deepcopy(VALID)
    node: Any = event
    for key in path[:-1]:
        node = node[key]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return event


def test_valid_event_flattens_to_record() -> None:
    """A full event validates and its record carries every field the monitor counts."""
    record = to_record(TelemetryEvent.model_validate(VALID))
    assert record.event_id == "req-1"
    assert record.occurred_at == datetime(2026, 2, 21, 10, 15, tzinfo=UTC)
    assert (record.model, record.backend, record.agent) == ("claude-sonnet-4", "railway", "prince_flowers")
    assert record.duration_ms == 812.5
    assert record.success is True
    assert record.fallback_reason == "rate_limited"
    assert record.duplicate is False


def test_free_form_event_data_keys_are_kept() -> None:
    """Keys of event_data and of the request chain that the monitor does not read survive a round trip."""
    dumped = TelemetryEvent.model_validate(VALID).model_dump(mode="json")
    assert dumped["event_data"]["session"] == {"free": "form"}
    assert dumped["event_data"]["telemetry"]["request_chain"][0]["provider"] == "x"


def test_minimal_event_is_a_success_without_dimensions() -> None:
    """Only event_id, occurred_at and event_type are required; the rest defaults to unknown/no-fallback/success."""
    event = TelemetryEvent.model_validate({"event_id": "e", "occurred_at": "2026-02-21T00:00:00Z", "event_type": "t"})
    record = to_record(event, duplicate=True)
    assert (record.model, record.duration_ms, record.fallback_reason) == (None, None, None)
    assert record.success is True
    assert record.duplicate is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-02-21T10:15:00Z", datetime(2026, 2, 21, 10, 15, tzinfo=UTC)),
        ("2026-02-21T10:15:00+00:00", datetime(2026, 2, 21, 10, 15, tzinfo=UTC)),
        ("2026-02-21T12:15:00+02:00", datetime(2026, 2, 21, 10, 15, tzinfo=UTC)),
        ("2026-02-21T05:15:00-05:00", datetime(2026, 2, 21, 10, 15, tzinfo=UTC)),
        ("2026-02-21T10:15:00", datetime(2026, 2, 21, 10, 15, tzinfo=UTC)),  # no offset: taken as UTC
        ("2026-02-21T10:15:00.123456Z", datetime(2026, 2, 21, 10, 15, 0, 123456, tzinfo=UTC)),
        ("2026-02-21", datetime(2026, 2, 21, tzinfo=UTC)),
    ],
)
def test_occurred_at_is_stored_in_utc(text: str, expected: datetime) -> None:
    """Every ISO 8601 form becomes the same instant expressed in UTC."""
    occurred = TelemetryEvent.model_validate(mutated(("occurred_at",), text)).occurred_at
    assert occurred == expected
    assert occurred.utcoffset() is not None and occurred.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("success", "error", "expected"),
    [
        (True, None, True),
        (False, None, False),
        (None, None, True),
        (None, "upstream 502", False),
        (None, "", True),
        (None, "   ", True),
        (True, "upstream 502 recovered by fallback", True),  # success, when given, wins
        (False, "", False),
    ],
)
def test_success_or_failure(success: bool | None, error: str | None, expected: bool) -> None:
    """success decides when present; otherwise a non-blank error means failure."""
    event = mutated(("event_data", "success"), success)
    event["event_data"]["error"] = error
    assert to_record(TelemetryEvent.model_validate(event)).success is expected


@pytest.mark.parametrize(
    ("telemetry", "expected"),
    [
        ({"request_chain": [{"fallback_reason": "timeout"}]}, "timeout"),
        ({"request_chain": [{"fallback_reason": None}, {"fallback_reason": "later hop"}]}, None),
        ({"request_chain": [{"fallback_reason": ""}]}, None),
        ({"request_chain": [{"fallback_reason": "  "}]}, None),
        ({"request_chain": [{}]}, None),
        ({"request_chain": []}, None),
        ({}, None),
        (None, None),
    ],
)
def test_fallback_reason_is_the_first_hops(telemetry: dict[str, Any] | None, expected: str | None) -> None:
    """Only request_chain[0].fallback_reason counts, as in the seed's queries; blank is no fallback."""
    event = TelemetryEvent.model_validate(mutated(("event_data", "telemetry"), telemetry))
    assert to_record(event).fallback_reason == expected


@pytest.mark.parametrize(
    ("path", "value", "loc"),
    [
        (("event_id",), _DROP, ("event_id",)),
        (("event_id",), 123, ("event_id",)),
        (("event_id",), "", ("event_id",)),
        (("event_id",), "x" * (MAX_EVENT_ID_LENGTH + 1), ("event_id",)),
        (("event_id",), "a\nb", ("event_id",)),
        (("occurred_at",), _DROP, ("occurred_at",)),
        (("occurred_at",), 1_771_668_900, ("occurred_at",)),
        (("occurred_at",), "yesterday", ("occurred_at",)),
        (("occurred_at",), "2026-02-30T00:00:00Z", ("occurred_at",)),
        (("occurred_at",), None, ("occurred_at",)),
        (("event_type",), _DROP, ("event_type",)),
        (("event_type",), ["chat"], ("event_type",)),
        (("unexpected",), 1, ("unexpected",)),
        (("event_data",), "x", ("event_data",)),
        (("event_data", "model"), 5, ("event_data", "model")),
        (("event_data", "model"), "", ("event_data", "model")),
        (("event_data", "backend"), "x" * (MAX_NAME_LENGTH + 1), ("event_data", "backend")),
        (("event_data", "agent"), {"name": "a"}, ("event_data", "agent")),
        (("event_data", "duration_ms"), -1, ("event_data", "duration_ms")),
        (("event_data", "duration_ms"), "812", ("event_data", "duration_ms")),
        (("event_data", "duration_ms"), True, ("event_data", "duration_ms")),
        (("event_data", "duration_ms"), float("inf"), ("event_data", "duration_ms")),
        (("event_data", "duration_ms"), float("nan"), ("event_data", "duration_ms")),
        (("event_data", "success"), "yes", ("event_data", "success")),
        (("event_data", "success"), 1, ("event_data", "success")),
        (("event_data", "error"), 500, ("event_data", "error")),
        (("event_data", "telemetry"), "x", ("event_data", "telemetry")),
        (("event_data", "telemetry", "request_chain"), "x", ("event_data", "telemetry", "request_chain")),
        (("event_data", "telemetry", "request_chain"), [{"fallback_reason": 7}],
         ("event_data", "telemetry", "request_chain", 0, "fallback_reason")),
        (("event_data", "telemetry", "request_chain"), [{"fallback_reason": "r" * (MAX_REASON_LENGTH + 1)}],
         ("event_data", "telemetry", "request_chain", 0, "fallback_reason")),
        (("event_data", "telemetry", "request_chain"), ["hop"], ("event_data", "telemetry", "request_chain", 0)),
    ],
)
def test_bad_input_names_its_location(path: tuple[str, ...], value: Any, loc: tuple[str | int, ...]) -> None:
    """Each missing or wrong field fails validation with exactly one error located at that field."""
    with pytest.raises(ValidationError) as caught:
        TelemetryEvent.model_validate(mutated(path, value))
    assert [error["loc"] for error in caught.value.errors()] == [loc]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ('{"event_id": "e", "occurred_at": "2026-02-21T00:00:00Z"}', ("event_type",)),
        ('{"event_id": "e", "occurred_at": 0, "event_type": "t"}', ("occurred_at",)),
        ('{"event_id": "e", "occurred_at": "2026-02-21T00:00:00Z", "event_type": "t",'
         ' "event_data": {"duration_ms": "5"}}', ("event_data", "duration_ms")),
        ('{"event_id": "e", "occurred_at": "2026-02-21T00:00:00Z", "event_type": "t",'
         ' "event_data": {"success": "true"}}', ("event_data", "success")),
    ],
)
def test_bad_json_names_its_location(body: str, loc: tuple[str | int, ...]) -> None:
    """Validating raw JSON is as strict as validating parsed data: no string-to-number or -bool coercion."""
    with pytest.raises(ValidationError) as caught:
        TelemetryEvent.model_validate_json(body)
    assert [error["loc"] for error in caught.value.errors()] == [loc]


def test_json_and_python_validation_agree() -> None:
    """The same event validated from JSON text and from parsed JSON gives the same record."""
    from_json = to_record(TelemetryEvent.model_validate_json(json.dumps(VALID)))
    assert from_json == to_record(TelemetryEvent.model_validate(VALID))
