"""Reading what the control plane and the weekly figures need from the database, as plain data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kpiguard import enforcement
from kpiguard.db.models import AuditEvent, RiskLedger
from kpiguard.governance._decide import Situation, decide
from kpiguard.governance._week import IsoWeek, week_of
from kpiguard.governance._weekly import AuditRecord, WeeklyFigures, weekly_figures
from kpiguard.tripwire._store import list_policies, list_states, policy_from_row, state_json

# Triggers are matched with their releases by reading back this far before the week: an episode
# opened earlier and still unresolved then makes a trigger in the week a repeat, not a new one.
LOOKBACK = timedelta(days=28)
FIGURE_KINDS = ("enforcement", "release")


_COLUMNS = (AuditEvent.id, AuditEvent.created_at, AuditEvent.kind, AuditEvent.action, AuditEvent.source,
            AuditEvent.domain, AuditEvent.metric, AuditEvent.engine, AuditEvent.detail)


async def audit_records(session: AsyncSession, since: datetime) -> list[AuditRecord]:
    """Enforcement and release entries written at or after ``since``, in time order."""
    # plain columns, not ORM objects: a few times faster on a long trail
    stmt = (select(*_COLUMNS).where(AuditEvent.kind.in_(FIGURE_KINDS), AuditEvent.created_at >= since)
            .order_by(AuditEvent.created_at, AuditEvent.id))
    return [AuditRecord(*row) for row in (await session.execute(stmt)).all()]


async def read_weekly(session: AsyncSession, week: IsoWeek) -> WeeklyFigures:
    """The week's figures from the audit trail."""
    return weekly_figures(await audit_records(session, week.start - LOOKBACK), week)


async def last_figure_id(session: AsyncSession) -> int:
    """The newest enforcement or release entry's id: the figures change only when it does."""
    stmt = select(func.max(AuditEvent.id)).where(AuditEvent.kind.in_(FIGURE_KINDS))
    return int((await session.execute(stmt)).scalar_one() or 0)


async def _kill_switch_cause(session: AsyncSession) -> dict[str, Any] | None:
    """The enforcement entry that engaged the kill switch last, from the audit trail."""
    stmt = (select(AuditEvent).where(AuditEvent.kind == "enforcement", AuditEvent.action == "KILL_SWITCH")
            .order_by(AuditEvent.id.desc()).limit(5))
    for row in (await session.execute(stmt)).scalars():
        if (row.detail or {}).get("changed", True):
            detail = row.detail or {}
            return {"audit_id": row.id, "at": row.created_at, "source": row.source, "actor": row.actor,
                    "domain": row.domain or None, "metric": row.metric or None,
                    "drop_fraction": detail.get("drop_fraction"), "baseline": detail.get("baseline"),
                    "current": detail.get("current"), "reason": row.reason}
    return None


async def _denials_today(session: AsyncSession) -> dict[str, Any]:
    day = enforcement.today_utc()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    stmt = (select(RiskLedger.engine, RiskLedger.reason, RiskLedger.ok, func.count())
            .where(RiskLedger.created_at >= start, RiskLedger.created_at < start + timedelta(days=1))
            .group_by(RiskLedger.engine, RiskLedger.reason, RiskLedger.ok))
    by_engine: dict[str, dict[str, int]] = {}
    by_reason: dict[str, int] = {}
    total = denied = 0
    for engine, reason, ok, n in (await session.execute(stmt)).all():
        total += n
        if ok:
            continue
        denied += n
        by_engine.setdefault(engine, {})[reason] = n
        by_reason[reason] = by_reason.get(reason, 0) + n
    return {"date": day, "checks": total, "denied": denied, "policy_disabled": by_reason.get("policy_disabled", 0),
            "by_reason": by_reason, "by_engine": by_engine}


async def control_plane(session: AsyncSession, now: datetime) -> dict[str, Any]:
    """The seed's four Monday checks in one answer: go-live, risk, regressions, and the decisions."""
    golive = await enforcement.read_state(session)
    engines = await enforcement.list_risk_policies(session)
    throttled = [{"engine": p.engine, "reason": p.reason, "changed_by": p.changed_by, "since": p.updated_at}
                 for p in engines if not p.enabled]
    denials = await _denials_today(session)
    policies = {(p.domain, p.metric): policy_from_row(p) for p in await list_policies(session)}
    triggered = [state_json(s, policies.get((s.domain, s.metric))) for s in await list_states(session) if s.triggered]
    week = week_of(now)
    weekly = await read_weekly(session, week)
    cause = await _kill_switch_cause(session) if golive.kill_switch_engaged else None
    situation = Situation(
        kill_switch_engaged=golive.kill_switch_engaged, kill_switch_reason=golive.reason,
        throttled_engines=tuple(t["engine"] for t in throttled),
        triggered=tuple(f"{s['domain']}.{s['metric']}" for s in triggered),
        policy_disabled_denials=denials["policy_disabled"], weekly=weekly,
    )
    return {
        "generated_at": now,
        "go_live": {**golive.to_json(), "cause": cause},
        "risk": {"throttled_engines": throttled, "denials_today": denials},
        "regressions": {"triggered": triggered},
        "weekly": {"week": str(week), **weekly.overall.to_json(),
                   "recommendations": [r.to_json() for r in weekly.recommendations]},
        "decisions": [d.to_json() for d in decide(situation)],
    }
