"""The risk guard: whether an engine may take a piece of work, written to the ledger every time."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kpiguard.db._types import utcnow
from kpiguard.db.models import RiskExposure, RiskLedger, RiskPolicy
from kpiguard.enforcement._golive import read_state


class Reason(enum.StrEnum):
    """Why a risk check answered as it did."""

    OK = "ok"
    UNKNOWN_ENGINE = "unknown_engine"
    KILL_SWITCH_ENGAGED = "kill_switch_engaged"
    POLICY_DISABLED = "policy_disabled"
    LIMIT_EXCEEDED = "limit_exceeded"


@dataclass(frozen=True, slots=True)
class RiskCheck:
    """The answer to one check-and-reserve."""

    ok: bool
    reason: Reason
    engine: str
    amount: float
    reserved_today: float | None
    daily_limit: float | None
    ledger_id: int

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        return {
            "ok": self.ok, "reason": self.reason.value, "engine": self.engine, "amount": self.amount,
            "reserved_today": self.reserved_today, "daily_limit": self.daily_limit, "ledger_id": self.ledger_id,
        }


def today_utc() -> date:
    """The current UTC day, the unit of daily exposure."""
    return datetime.now(UTC).date()


async def check_and_reserve(
    session: AsyncSession, engine: str, amount: float, *, actor: str | None = None,
    correlation_id: str | None = None,
) -> RiskCheck:
    """Decide whether ``engine`` may take ``amount``, reserve it if so, and write the ledger; in one transaction."""
    policy = await session.get(RiskPolicy, engine)
    reserved: float | None = None
    limit = policy.daily_limit if policy else None
    if policy is None:
        reason = Reason.UNKNOWN_ENGINE
    elif (await read_state(session)).kill_switch_engaged:
        reason = Reason.KILL_SWITCH_ENGAGED
    elif not policy.enabled:
        reason = Reason.POLICY_DISABLED
    elif policy.max_single_amount is not None and amount > policy.max_single_amount:
        reason = Reason.LIMIT_EXCEEDED
    else:
        reserved = await _reserve(session, engine, amount, policy.daily_limit)
        reason = Reason.OK if reserved is not None else Reason.LIMIT_EXCEEDED
    entry = RiskLedger(
        engine=engine, amount=amount, ok=reason is Reason.OK, reason=reason.value, actor=actor,
        correlation_id=correlation_id, created_at=utcnow(),
    )
    session.add(entry)
    await session.flush()
    if reserved is None and policy is not None and limit is not None:
        reserved = await _reserved(session, engine)
    return RiskCheck(reason is Reason.OK, reason, engine, amount, reserved, limit, entry.id)


async def _reserve(session: AsyncSession, engine: str, amount: float, limit: float | None) -> float | None:
    """Add ``amount`` to today's exposure unless that passes ``limit``; the new total, or None if refused.

    One conditional UPDATE decides, so concurrent reservations can never pass the limit together.
    """
    day = today_utc()
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(RiskExposure).values(engine=engine, day=day, reserved=0.0).on_conflict_do_nothing()
    )
    cond = and_(RiskExposure.engine == engine, RiskExposure.day == day)
    if limit is not None:
        cond = and_(cond, RiskExposure.reserved + amount <= limit)
    result = await session.execute(
        update(RiskExposure).where(cond).values(reserved=RiskExposure.reserved + amount)
        .returning(RiskExposure.reserved)
    )
    return result.scalar_one_or_none()


async def _reserved(session: AsyncSession, engine: str) -> float:
    row = await session.get(RiskExposure, (engine, today_utc()))
    return row.reserved if row else 0.0


async def set_engine_enabled(
    session: AsyncSession, engine: str, enabled: bool, *, reason: str, actor: str | None,
) -> tuple[bool, dict[str, Any]]:
    """Enable or disable an engine's risk policy (creating it if unknown); returns (changed, state before).

    Not audited here: the caller records one entry that says why (tripwire, webhook, person).
    """
    stmt = select(RiskPolicy).where(RiskPolicy.engine == engine).with_for_update()
    policy = (await session.execute(stmt)).scalar_one_or_none()
    if policy is None:
        policy = RiskPolicy(engine=engine, enabled=True, updated_at=utcnow())
        session.add(policy)
    before = {"enabled": policy.enabled, "reason": policy.reason}
    if policy.enabled == enabled:
        return False, before
    policy.enabled = enabled
    policy.reason = reason
    policy.changed_by = actor
    policy.updated_at = utcnow()
    await session.flush()
    return True, before


async def ledger_today(session: AsyncSession) -> dict[str, Any]:
    """Today's ledger entries (UTC) with counts by engine and by reason."""
    day = today_utc()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rows = (await session.execute(
        select(RiskLedger).where(RiskLedger.created_at >= start, RiskLedger.created_at < start + timedelta(days=1))
        .order_by(RiskLedger.id)
    )).scalars().all()
    by_engine: dict[str, dict[str, int]] = {}
    by_reason: dict[str, int] = {}
    for r in rows:
        by_engine.setdefault(r.engine, {}).setdefault(r.reason, 0)
        by_engine[r.engine][r.reason] += 1
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    return {
        "date": day,
        "total": len(rows),
        "denied": sum(1 for r in rows if not r.ok),
        "by_reason": by_reason,
        "by_engine": by_engine,
        "entries": [
            {"id": r.id, "engine": r.engine, "amount": r.amount, "ok": r.ok, "reason": r.reason, "actor": r.actor,
             "correlation_id": r.correlation_id, "created_at": r.created_at}
            for r in rows
        ],
    }


async def list_risk_policies(session: AsyncSession) -> list[RiskPolicy]:
    """Every engine's risk policy."""
    return list((await session.execute(select(RiskPolicy).order_by(RiskPolicy.engine))).scalars())


def risk_policy_json(p: RiskPolicy) -> dict[str, Any]:
    """A risk policy as a JSON object."""
    return {
        "engine": p.engine, "enabled": p.enabled, "reason": p.reason, "max_single_amount": p.max_single_amount,
        "daily_limit": p.daily_limit, "changed_by": p.changed_by, "updated_at": p.updated_at,
    }


