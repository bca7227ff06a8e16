"""check-and-reserve's answers on both stores at the edges of its limits, and its pure refusal rule."""

from __future__ import annotations

from conftest import count_rows
from kpiguard.db.models import RiskLedger
from kpiguard.enforcement import Reason
from kpiguard.enforcement._risk import refusal

RESERVE = "/api/governance/risk/check-and-reserve"
RISK_UPSERT = "/api/governance/risk/policies/upsert"


async def reserve(client, engine: str, amount: float) -> dict:
    """One check-and-reserve."""
    resp = await client.post(RESERVE, json={"engine": engine, "amount": amount})
    assert resp.status == 200
    return await resp.json()


async def test_more_than_the_daily_limit_on_a_fresh_day_is_refused_and_reserves_nothing(client):
    """An amount over the daily limit is refused even with nothing reserved yet; the exposure stays 0."""
    await client.post(RISK_UPSERT, json={"engine": "E", "daily_limit": 100})
    first = await reserve(client, "E", 150)
    assert (first["ok"], first["reason"], first["reserved_today"], first["daily_limit"]) == (
        False, "limit_exceeded", 0, 100)
    assert (await reserve(client, "E", 100))["reserved_today"] == 100
    full = await reserve(client, "E", 1)
    assert full["reason"] == "limit_exceeded" and full["reserved_today"] == 100
    assert await count_rows(client, RiskLedger) == 3


async def test_refusals_report_the_exposure_and_unlimited_engines_none(client):
    """A throttled engine with a limit reports today's exposure; without a limit reserved_today is None."""
    await client.post(RISK_UPSERT, json={"engine": "L", "daily_limit": 50})
    await client.post(RISK_UPSERT, json={"engine": "U"})
    assert (await reserve(client, "L", 20))["reserved_today"] == 20
    ok = await reserve(client, "U", 1e9)
    assert ok["ok"] is True and ok["reserved_today"] == 1e9 and ok["daily_limit"] is None
    await client.post(RISK_UPSERT, json={"engine": "L", "enabled": False})
    await client.post(RISK_UPSERT, json={"engine": "U", "enabled": False})
    limited, unlimited = await reserve(client, "L", 1), await reserve(client, "U", 1)
    assert (limited["reason"], limited["reserved_today"]) == ("policy_disabled", 20)
    assert (unlimited["reason"], unlimited["reserved_today"]) == ("policy_disabled", None)
    unknown = await reserve(client, "NOPE", 1)
    assert (unknown["reason"], unknown["reserved_today"], unknown["daily_limit"]) == ("unknown_engine", None, None)


def test_refusal_order():
    """Unknown engine first, then the kill switch, the disabled policy, the single-amount limit; else none."""
    assert refusal(False, True, False, 1.0, 5.0) is Reason.UNKNOWN_ENGINE
    assert refusal(True, True, False, 1.0, 5.0) is Reason.KILL_SWITCH_ENGAGED
    assert refusal(True, False, False, 1.0, 5.0) is Reason.POLICY_DISABLED
    assert refusal(True, False, True, 1.0, 5.0) is Reason.LIMIT_EXCEEDED
    assert refusal(True, False, True, 5.0, 5.0) is None and refusal(True, False, True, None, 5.0) is None


async def test_a_reservation_reports_the_days_total_as_a_number_with_a_fraction(client):
    """reserved_today is the day's total as a float on both stores (SQLite's RETURNING gives 60 for 60.0)."""
    await client.post("/api/governance/risk/policies/upsert", json={"engine": "F", "enabled": True, "daily_limit": 100})
    first = await (await client.post("/api/governance/risk/check-and-reserve", json={"engine": "F", "amount": 60})).json()
    refused = await (await client.post("/api/governance/risk/check-and-reserve",
                                       json={"engine": "F", "amount": 60})).json()
    assert (first["ok"], first["reserved_today"]) == (True, 60.0) and isinstance(first["reserved_today"], float)
    assert (refused["ok"], refused["reason"], refused["reserved_today"]) == (False, "limit_exceeded", 60.0)
