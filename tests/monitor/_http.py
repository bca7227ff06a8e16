"""Synthetic telemetry as the HTTP API takes it, and shortcuts for the monitor's endpoints."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

EVENTS = "/api/monitor/events"
COMPUTE = "/api/monitor/compute"
ALERTS = "/api/monitor/alerts"
SUMMARY = "/api/monitor/summary"
BASELINE = "/api/monitor/baseline"
DAILY = "/api/monitor/metrics/daily"


def day_events(
    day: date,
    *,
    events: int,
    failures: int = 0,
    fallbacks: int = 0,
    latency_ms: float = 400.0,
    prefix: str = "",
) -> list[dict[str, Any]]:
    """``events`` telemetry events spread over one UTC day: the first ``failures`` fail (half by
    ``success: false``, half by an ``error`` string), the last ``fallbacks`` fell back."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    out = []
    for i in range(events):
        data: dict[str, Any] = {
            "model": "claude-sonnet-4" if i % 3 else "gpt-4o",
            "backend": "railway" if i % 2 else "vercel",
            "agent": "prince_flowers",
            "duration_ms": latency_ms * (0.5 + i / max(events - 1, 1)),
        }
        if i < failures:
            if i % 2:
                data["error"] = "upstream timeout"
            else:
                data["success"] = False
        else:
            data["success"] = True
        if i >= events - fallbacks:
            data["telemetry"] = {"request_chain": [{"fallback_reason": "rate_limited", "provider": "anthropic"}]}
        out.append({
            "event_id": f"{prefix}{day.isoformat()}-{i}",
            "occurred_at": (start + timedelta(seconds=i * 86_400 / events)).isoformat().replace("+00:00", "Z"),
            "event_type": "chat_completion",
            "event_data": data,
        })
    return out


async def post_events(client: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
    """POST a JSON array of events and return the 201 body."""
    resp = await client.post(EVENTS, json=events)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def compute(client: Any, **body: Any) -> dict[str, Any]:
    """POST /api/monitor/compute and return the 200 body."""
    resp = await client.post(COMPUTE, json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def get_json(client: Any, path: str, **params: str) -> dict[str, Any]:
    """GET a monitor endpoint expecting 200."""
    resp = await client.get(path, params=params)
    assert resp.status == 200, await resp.text()
    return await resp.json()
