"""The risk guard: whether an engine may take a piece of work, written to the ledger every time."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from kpiguard.db._types import utcnow
from kpiguard.db.engine import write_lock
from kpiguard.db.models import RiskExposure, RiskLedger, RiskPolicy


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


def refusal(known: bool, kill_switch_engaged: bool, enabled: bool, max_single_amount: float | None,
            amount: float) -> Reason | None:
    """Why a check is refused before any reservation, or None if it may reserve (pure)."""
    if not known:
        return Reason.UNKNOWN_ENGINE
    if kill_switch_engaged:
        return Reason.KILL_SWITCH_ENGAGED
    if not enabled:
        return Reason.POLICY_DISABLED
    if max_single_amount is not None and amount > max_single_amount:
        return Reason.LIMIT_EXCEEDED
    return None


async def check_and_reserve(
    session: AsyncSession, engine: str, amount: float, *, actor: str | None = None,
    correlation_id: str | None = None,
) -> RiskCheck:
    """Decide whether ``engine`` may take ``amount``, reserve it if so, and write the ledger, atomically.

    It runs on a connection of its own (``session`` names the database; its transaction is not
    used). On PostgreSQL two statements, each atomic by itself: the read, then either the ledger
    entry of a refusal or the reservation and its ledger entry in one statement. On SQLite one
    transaction, under the process's SQLite write lock.
    """
    if session.bind.dialect.name == "postgresql":
        return await _check_and_reserve_pg(session.bind, engine, amount, actor, correlation_id)
    # SQLite: in a transaction of its own, queued behind this process's other writers, reads
    # included: a check that arrives while the tripwire latches waits, then reads the committed
    # throttle (taking the lock only for the writes answered from the older read: p50 17 -> 33 ms).
    async with write_lock(session.bind):
        return await _check_and_reserve_sqlite(session.bind, engine, amount, actor, correlation_id)


def _answer(engine: str, amount: float, reason: Reason, known: bool, limit: float | None, total: float | None,
            ledger_id: int) -> RiskCheck:
    """The check's answer from what it read or reserved: a refusal reports the day's total only for a known engine
    with a daily limit (0 before its first reservation of the day), and the limit only for a known engine."""
    if reason is Reason.OK:
        return RiskCheck(True, reason, engine, amount, total, limit, ledger_id)
    return RiskCheck(False, reason, engine, amount, (total or 0.0) if known and limit is not None else None,
                     limit if known else None, ledger_id)


# The engine's policy, the kill switch and today's exposure in one read (both stores).
_CHECK_READ = text("""
SELECT p.engine IS NOT NULL, coalesce(g.kill_switch_engaged, false), coalesce(p.enabled, false),
       p.max_single_amount, p.daily_limit, x.reserved
FROM (SELECT 1) AS one
LEFT JOIN risk_policy AS p ON p.engine = :engine
LEFT JOIN go_live_state AS g ON g.id = 1
LEFT JOIN risk_exposure AS x ON x.engine = :engine AND x.day = :day
""").bindparams(bindparam("day", type_=RiskExposure.__table__.c.day.type))

_PG_LEDGER = text("""
INSERT INTO risk_ledger (engine, amount, ok, reason, actor, correlation_id, created_at)
VALUES (:engine, :amount, false, :reason, :actor, :correlation_id, :created_at)
RETURNING id
""")

# The reservation and its ledger entry in one statement: the conditional upsert adds the amount
# only while the day's total stays within the limit, so concurrent reservations never pass it together.
_PG_RESERVE = text("""
WITH res AS (
    INSERT INTO risk_exposure AS x (engine, day, reserved)
    SELECT :engine, :day, :amount WHERE CAST(:limit AS float8) IS NULL OR :amount <= CAST(:limit AS float8)
    ON CONFLICT (engine, day) DO UPDATE SET reserved = x.reserved + excluded.reserved
    WHERE CAST(:limit AS float8) IS NULL OR x.reserved + excluded.reserved <= CAST(:limit AS float8)
    RETURNING x.reserved
)
INSERT INTO risk_ledger (engine, amount, ok, reason, actor, correlation_id, created_at)
SELECT :engine, :amount, ok, CASE WHEN ok THEN 'ok' ELSE 'limit_exceeded' END, :actor, :correlation_id, :created_at
FROM (SELECT EXISTS (SELECT 1 FROM res) AS ok) AS r
RETURNING id, (SELECT reserved FROM res),
          (SELECT reserved FROM risk_exposure WHERE engine = :engine AND day = :day)
""")


async def _check_and_reserve_pg(engine_: AsyncEngine, engine: str, amount: float, actor: str | None,
                                correlation_id: str | None) -> RiskCheck:
    # Profiled (native enforcement latency): check-and-reserve took seven round trips (BEGIN, policy,
    # go-live state, exposure insert, exposure update, ledger, COMMIT); a client polling it waited a
    # whole check after the tripwire had already throttled the engine. Now two, without BEGIN/COMMIT.
    day = today_utc()
    common = {"engine": engine, "amount": amount, "actor": actor, "correlation_id": correlation_id}
    async with engine_.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        known, kill, enabled, max_single, limit, reserved = (
            await conn.execute(_CHECK_READ, {"engine": engine, "day": day})
        ).one()
        reason = refusal(known, kill, enabled, max_single, amount)
        if reason is not None:
            ledger_id = (await conn.execute(_PG_LEDGER, {**common, "reason": reason.value,
                                                         "created_at": utcnow()})).scalar_one()
            return _answer(engine, amount, reason, bool(known), limit, reserved, ledger_id)
        ledger_id, new_total, current = (await conn.execute(
            _PG_RESERVE, {**common, "day": day, "limit": limit, "created_at": utcnow()})).one()
    if new_total is not None:
        return _answer(engine, amount, Reason.OK, True, limit, new_total, ledger_id)
    return _answer(engine, amount, Reason.LIMIT_EXCEEDED, True, limit, current, ledger_id)


# SQLite: the reservation as one conditional upsert (no data-modifying WITH there); the ledger entry follows.
_SQLITE_RESERVE = text("""
INSERT INTO risk_exposure (engine, day, reserved)
SELECT :engine, :day, :amount WHERE :limit IS NULL OR :amount <= :limit
ON CONFLICT (engine, day) DO UPDATE SET reserved = risk_exposure.reserved + excluded.reserved
WHERE :limit IS NULL OR risk_exposure.reserved + excluded.reserved <= :limit
RETURNING reserved
""").bindparams(bindparam("day", type_=RiskExposure.__table__.c.day.type))

_SQLITE_LEDGER = text("""
INSERT INTO risk_ledger (engine, amount, ok, reason, actor, correlation_id, created_at)
VALUES (:engine, :amount, :ok, :reason, :actor, :correlation_id, :created_at)
RETURNING id
""").bindparams(bindparam("created_at", type_=RiskLedger.__table__.c.created_at.type))


async def _check_and_reserve_sqlite(engine_: AsyncEngine, engine: str, amount: float, actor: str | None,
                                    correlation_id: str | None) -> RiskCheck:
    # Profiled (native enforcement latency on SQLite, a timeline of 12 trials): a check took 5-7 ms
    # through the ORM (policy, go-live state, exposure insert and update, ledger flush, commit, each a
    # hop to aiosqlite's thread and back, most of it Python in the busy event loop); the tripwire's
    # latch and the client's next check queue behind it. Now the read, at most two writes, the commit.
    day = today_utc()
    common = {"engine": engine, "amount": amount, "actor": actor, "correlation_id": correlation_id}
    async with engine_.connect() as conn, conn.begin():
        known, kill, enabled, max_single, limit, reserved = (
            await conn.execute(_CHECK_READ, {"engine": engine, "day": day})
        ).one()
        reason = refusal(bool(known), bool(kill), bool(enabled), max_single, amount)
        new_total = None
        if reason is None:
            total = (await conn.execute(_SQLITE_RESERVE, {**common, "day": day, "limit": limit})).scalar()
            new_total = None if total is None else float(total)  # RETURNING answers an integral REAL as int
            reason = Reason.OK if new_total is not None else Reason.LIMIT_EXCEEDED
        ledger_id = (await conn.execute(_SQLITE_LEDGER, {
            **common, "ok": reason is Reason.OK, "reason": reason.value, "created_at": utcnow()})).scalar_one()
    return _answer(engine, amount, reason, bool(known), limit, reserved if new_total is None else new_total, ledger_id)


_PG_SET_ENABLED = text("""
WITH old AS (SELECT engine, enabled, reason FROM risk_policy WHERE engine = :engine FOR UPDATE),
changed AS (
    UPDATE risk_policy AS p SET enabled = :enabled, reason = :reason, changed_by = :actor, updated_at = :now
    FROM old WHERE p.engine = old.engine AND old.enabled <> :enabled
    RETURNING p.engine
)
SELECT old.enabled, old.reason, EXISTS (SELECT 1 FROM changed) FROM old
""")


async def set_engine_enabled(
    session: AsyncSession, engine: str, enabled: bool, *, reason: str, actor: str | None,
) -> tuple[bool, dict[str, Any]]:
    """Enable or disable an engine's risk policy (creating it if unknown); returns (changed, state before).

    Not audited here: the caller records one entry that says why (tripwire, webhook, person).
    """
    if session.bind.dialect.name == "postgresql":
        # Lock, read and change in one statement: one round trip inside the enforcing transaction.
        row = (await session.execute(_PG_SET_ENABLED, {
            "engine": engine, "enabled": enabled, "reason": reason, "actor": actor, "now": utcnow()})).one_or_none()
        if row is not None:
            before_enabled, before_reason, changed = row
            return changed, {"enabled": before_enabled, "reason": before_reason}
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




async def upsert_risk_policy(
    session: AsyncSession, engine: str, fields: dict[str, Any], *, source: Any,
) -> dict[str, Any]:
    """Create or merge-update an engine's risk policy; audited when something changed."""
    from kpiguard import audit

    policy = (await session.execute(
        select(RiskPolicy).where(RiskPolicy.engine == engine).with_for_update()
    )).scalar_one_or_none()
    created = policy is None
    if policy is None:
        policy = RiskPolicy(engine=engine, enabled=True, updated_at=utcnow())
        session.add(policy)
    tracked = ("enabled", "max_single_amount", "daily_limit")
    before = {k: getattr(policy, k) for k in tracked}
    for key in (*tracked, "reason", "changed_by"):
        if key in fields:
            setattr(policy, key, fields[key])
    after = {k: getattr(policy, k) for k in tracked}
    if created or before != after:
        policy.updated_at = utcnow()
        audit.record(
            session, kind=audit.Kind.RISK_POLICY_CHANGE, source=source, action="CREATE" if created else "UPDATE",
            actor=fields.get("changed_by"), reason=fields.get("reason"), engine=engine,
            before=None if created else before, after=after,
        )
    await session.flush()
    return {**risk_policy_json(policy), "created": created}
