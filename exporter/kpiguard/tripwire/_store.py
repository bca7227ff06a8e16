"""Policies and regression state in the database: upsert with merge, audit and re-enable; window reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import EllipsisType
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from kpiguard import audit, enforcement
from kpiguard.db._types import utcnow
from kpiguard.db.models import KpiEvent, RegressionPolicy, RegressionState
from kpiguard.errors import NotFound, ValidationFailed
from kpiguard.tripwire._policy import Action, Aggregation, Guard, Policy
from kpiguard.tripwire._sequential_state import reset_cusum, resets_cusum
from kpiguard.tripwire._validate import policy_problems
from kpiguard.tripwire._window import EMPTY, WindowStats

POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(Policy))
_SETTABLE = tuple(f for f in POLICY_FIELDS if f not in ("domain", "metric"))


def policy_from_row(row: RegressionPolicy) -> Policy:
    """The plain policy a database row holds."""
    return Policy(
        domain=row.domain, metric=row.metric, window_events=row.window_events, baseline_events=row.baseline_events,
        min_events_to_enforce=row.min_events_to_enforce, max_drop_fraction=row.max_drop_fraction,
        action=Action(row.action), aggregation=Aggregation(row.aggregation), enabled=row.enabled,
        dry_run=row.dry_run, guard=Guard(row.guard), guard_confidence=row.guard_confidence,
        guard_alpha=row.guard_alpha, changed_by=row.changed_by, reason=row.reason,
    )


def policy_json(policy: Policy, updated_at: datetime | None = None) -> dict[str, Any]:
    """A policy as a JSON object."""
    out: dict[str, Any] = {f: getattr(policy, f) for f in POLICY_FIELDS}
    if updated_at is not None:
        out["updated_at"] = updated_at
    return out


def _comparable(policy: Policy) -> dict[str, Any]:
    return {f: getattr(policy, f) for f in POLICY_FIELDS if f not in ("changed_by", "reason")}


async def list_policies(session: AsyncSession) -> list[RegressionPolicy]:
    """Every policy, ordered by (domain, metric)."""
    stmt = select(RegressionPolicy).order_by(RegressionPolicy.domain, RegressionPolicy.metric)
    return list((await session.execute(stmt)).scalars())


async def get_policy_row(session: AsyncSession, domain: str, metric: str, *, lock: bool = False) -> RegressionPolicy:
    """The policy row for (domain, metric), or NotFound."""
    stmt = select(RegressionPolicy).where(RegressionPolicy.domain == domain, RegressionPolicy.metric == metric)
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no regression policy for {domain}.{metric}", field="domain,metric")
    return row


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert changed."""

    policy: Policy
    created: bool
    changed: dict[str, tuple[Any, Any]]
    released: list[dict[str, Any]]
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        return {
            "policy": policy_json(self.policy, self.updated_at),
            "created": self.created,
            "changed": {k: {"before": b, "after": a} for k, (b, a) in self.changed.items()},
            "released": self.released,
        }


async def upsert_policy(
    session: AsyncSession, domain: str, metric: str, fields: dict[str, Any], *, source: audit.Source,
    false_positive: bool = False,
) -> UpsertResult:
    """Create or merge-update a policy, audit the change, and on enabled=true re-enable what the tripwire stopped.

    Fields not given keep their stored value (a new policy takes the seed's defaults). ``enabled: true``
    re-arms the tripwire (it waits for min_events_to_enforce new events) and re-enables the domain's engine
    if this policy's THROTTLE disabled it; a kill switch is never released here (that takes a person, through
    the go-live API).
    """
    unknown = set(fields) - set(_SETTABLE)
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationFailed(f"{name}: unknown field", field=name, choices=sorted(_SETTABLE))
    stmt = select(RegressionPolicy).where(RegressionPolicy.domain == domain, RegressionPolicy.metric == metric)
    row = (await session.execute(stmt.with_for_update())).scalar_one_or_none()
    before = policy_from_row(row) if row is not None else None
    base = before if before is not None else Policy(domain=domain, metric=metric)
    merged = dataclasses.replace(base, **fields)
    problems = policy_problems(merged)
    if problems:
        field, reason = problems[0]
        raise ValidationFailed(f"{field}: {reason}", field=field)
    changed = {
        k: (None if before is None else _comparable(before)[k], v)
        for k, v in _comparable(merged).items()
        if before is None or _comparable(before)[k] != v
    }
    now = utcnow()
    if row is None:
        row = RegressionPolicy(domain=domain, metric=metric)
        session.add(row)
        session.add(RegressionState(domain=domain, metric=metric, triggered=False, recent_events=0, baseline_events=0))
    for f in _SETTABLE:
        setattr(row, f, getattr(merged, f).value if isinstance(getattr(merged, f), Guard | Action | Aggregation)
                else getattr(merged, f))
    if changed or before is None:
        row.updated_at = now
        audit.record(
            session, kind=audit.Kind.POLICY_CHANGE, source=source, action="CREATE" if before is None else "UPDATE",
            actor=merged.changed_by, reason=merged.reason, domain=domain, metric=metric,
            before=None if before is None else _jsonable(_comparable(before)), after=_jsonable(_comparable(merged)),
        )
    if before is not None and resets_cusum(changed):
        reset_cusum(await get_state_row(session, domain, metric))
    released: list[dict[str, Any]] = []
    if fields.get("enabled") is True:
        released = await _re_enable(session, merged, source=source, false_positive=false_positive)
    await session.flush()
    return UpsertResult(merged, before is None, changed, released, row.updated_at)


async def _re_enable(session: AsyncSession, policy: Policy, *, source: audit.Source,
                     false_positive: bool) -> list[dict[str, Any]]:
    """Reset a triggered tripwire, re-arm it, and re-enable the engine its THROTTLE stopped."""
    state = await get_state_row(session, policy.domain, policy.metric, lock=True)
    released: list[dict[str, Any]] = []
    was_triggered = state.triggered
    if was_triggered:
        state.triggered = False
        state.note = f"RE-ENABLED by {policy.changed_by or 'unknown'}: re-arms after {policy.min_events_to_enforce} new events"
        state.rearm_after_id = await _max_event_id(session, policy.domain, policy.metric)
        reset_cusum(state, state.rearm_after_id)  # the sequential guard re-arms at 0, on events after the fix
    detail = {"false_positive": false_positive, "was_triggered": was_triggered,
              "last_triggered_at": state.last_triggered_at.isoformat() if state.last_triggered_at else None}
    if policy.action is Action.THROTTLE:
        outcome = await enforcement.release(
            session, Action.THROTTLE, domain=policy.domain, metric=policy.metric,
            reason=policy.reason or f"re-enabled by {policy.changed_by or 'unknown'}", actor=policy.changed_by,
            source=source, detail=detail,
        )
        if outcome.changed:
            released.append({"action": outcome.action, "engine": policy.domain})
    elif was_triggered:
        # The kill switch stays engaged; the release of the trigger is still audited for MTTR and false positives.
        audit.record(
            session, kind=audit.Kind.RELEASE, source=source, action="REARM", actor=policy.changed_by,
            reason=policy.reason, domain=policy.domain, metric=policy.metric, detail=detail,
        )
    return released


async def _max_event_id(session: AsyncSession, domain: str, metric: str) -> int:
    stmt = select(func.max(KpiEvent.id)).where(KpiEvent.domain == domain, KpiEvent.metric == metric)
    return int((await session.execute(stmt)).scalar_one() or 0)


async def get_state_row(session: AsyncSession, domain: str, metric: str, *, lock: bool = False) -> RegressionState:
    """The state row for (domain, metric), created if missing."""
    stmt = select(RegressionState).where(RegressionState.domain == domain, RegressionState.metric == metric)
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        row = RegressionState(domain=domain, metric=metric, triggered=False, recent_events=0, baseline_events=0)
        session.add(row)
        await session.flush()
    return row


async def list_states(session: AsyncSession) -> list[RegressionState]:
    """Every state, ordered by (domain, metric)."""
    stmt = select(RegressionState).order_by(RegressionState.domain, RegressionState.metric)
    return list((await session.execute(stmt)).scalars())


async def latch_trigger(session: AsyncSession, domain: str, metric: str, now: datetime, *,
                        seen_rearm: int | None | EllipsisType = ...) -> bool:
    """Flip the state to triggered; True only for the one caller that flipped it (so the action runs once).

    An evaluation passes the ``rearm_after_id`` it read (``seen_rearm``): a re-enable committed after
    that read stored a new one, and the latch then fails, so that an evaluation of the windows before
    the re-enable cannot trigger the tripwire the re-enable has just reset. The read is not locked,
    and SQLite runs it outside the write transaction, so this condition is the only safe place.
    The Alertmanager receiver latches whatever the re-arm state (``...``): the alert is the decision.
    """
    stmt = update(RegressionState).where(
        RegressionState.domain == domain, RegressionState.metric == metric, RegressionState.triggered.is_(False))
    if seen_rearm is None:
        stmt = stmt.where(RegressionState.rearm_after_id.is_(None))
    elif not isinstance(seen_rearm, EllipsisType):
        # The evaluation may have cleared it (armed) and autoflushed that before this statement.
        stmt = stmt.where(or_(RegressionState.rearm_after_id.is_(None), RegressionState.rearm_after_id == seen_rearm))
    result = await session.execute(stmt.values(triggered=True, last_triggered_at=now))
    return result.rowcount == 1


async def newest_events(session: AsyncSession, policy: Policy) -> Sequence[Any]:
    """The newest window+baseline events of the policy's (domain, metric), newest first: (id, success, value).

    A mean_value policy reads only events that carry a value. Served by the (domain, metric,
    created_at, id) index in order: the cost does not grow with the size of the table.
    """
    stmt = (
        select(KpiEvent.id, KpiEvent.success, KpiEvent.value)
        .where(KpiEvent.domain == policy.domain, KpiEvent.metric == policy.metric)
        .order_by(KpiEvent.created_at.desc(), KpiEvent.id.desc())
        .limit(policy.window_events + policy.baseline_events)
    )
    if policy.aggregation is Aggregation.MEAN_VALUE:
        stmt = stmt.where(KpiEvent.value.is_not(None))
    return (await session.execute(stmt)).all()


# Every policy's two windows in one round trip: each policy's newest events come from the (domain,
# metric, created_at, id) index in order (LIMIT window + baseline), and only the sufficient
# statistics travel back, two rows per policy instead of window + baseline rows.
_WINDOWS_SQL = text("""
SELECT p.k, e.rn <= p.w AS recent, count(*) AS n, sum(e.v) AS total, sum(e.v * e.v) AS total_sq
FROM unnest(CAST(:domains AS text[]), CAST(:metrics AS text[]), CAST(:windows AS int[]), CAST(:limits AS int[]),
            CAST(:means AS bool[])) WITH ORDINALITY AS p(domain, metric, w, lim, mean_only, k)
CROSS JOIN LATERAL (
    SELECT row_number() OVER (ORDER BY newest.created_at DESC, newest.id DESC) AS rn,
           CASE WHEN p.mean_only THEN newest.value WHEN newest.success THEN 1.0::float8 ELSE 0.0::float8 END AS v
    FROM (
        SELECT k.created_at, k.id, k.success, k.value FROM kpi_event AS k
        WHERE k.domain = p.domain AND k.metric = p.metric AND (NOT p.mean_only OR k.value IS NOT NULL)
        ORDER BY k.created_at DESC, k.id DESC LIMIT p.lim
    ) AS newest
) AS e
GROUP BY p.k, recent
""")


async def window_stats_many(
    session: AsyncSession, policies: Sequence[Policy]
) -> dict[tuple[str, str], tuple[WindowStats, WindowStats]] | None:
    """(recent, baseline) statistics of every policy in one query on PostgreSQL; None on other stores.

    The same windows as :func:`newest_events` followed by ``split_windows``, summed by the database.
    """
    if session.bind.dialect.name != "postgresql":
        return None
    out = {p.key: (EMPTY, EMPTY) for p in policies}
    if not policies:
        return out
    params = {
        "domains": [p.domain for p in policies],
        "metrics": [p.metric for p in policies],
        "windows": [p.window_events for p in policies],
        "limits": [p.window_events + p.baseline_events for p in policies],
        "means": [p.aggregation is Aggregation.MEAN_VALUE for p in policies],
    }
    for k, recent, n, total, total_sq in (await session.execute(_WINDOWS_SQL, params)).all():
        key = policies[k - 1].key
        stats = WindowStats(int(n), float(total or 0.0), float(total_sq or 0.0))
        before = out[key]
        out[key] = (stats, before[1]) if recent else (before[0], stats)
    return out


def state_json(state: RegressionState, policy: Policy | None = None) -> dict[str, Any]:
    """The seed's state shape, plus the evidence and window sizes."""
    out: dict[str, Any] = {
        "domain": state.domain,
        "metric": state.metric,
        "triggered": state.triggered,
        "baseline": state.baseline,
        "current": state.current,
        "drop_fraction": None if state.drop_fraction is None else round(state.drop_fraction, 3),
        "last_triggered_at": state.last_triggered_at,
        "note": state.note,
        "last_checked_at": state.last_checked_at,
        "recent_events": state.recent_events,
        "baseline_events": state.baseline_events,
        "evidence": state.evidence,
    }
    if policy is not None:
        out["action"] = policy.action.value
        out["max_drop_fraction"] = policy.max_drop_fraction
        out["enabled"] = policy.enabled
        out["dry_run"] = policy.dry_run
    return out


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, Guard | Action | Aggregation) else v) for k, v in d.items()}
