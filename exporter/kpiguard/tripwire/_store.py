"""Policies and regression state in the database: upsert with merge, audit and re-enable; window reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import to_json
from sqlalchemy import (
    BigInteger, Boolean, Float, Integer, and_, bindparam, case, column, func, literal, null, select, text,
    union_all, update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kpiguard import audit, enforcement
from kpiguard.db._types import utcnow
from kpiguard.db.engine import sqlite_rows
from kpiguard.db.models import KpiEvent, RegressionPolicy, RegressionState
from kpiguard.errors import ValidationFailed
from kpiguard.tripwire._policy import Action, Aggregation, Guard, Policy
from kpiguard.tripwire._sequential_state import CUSUM_COLUMNS, reset_cusum, resets_cusum
from kpiguard.tripwire._validate import policy_problems
from kpiguard.tripwire._window import WindowStats

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


async def latch_trigger(session: AsyncSession, domain: str, metric: str, now: datetime) -> bool:
    """Flip the state to triggered whatever its re-arm mark (the Alertmanager receiver: the alert is the decision).

    True only for the one caller that flipped it. The evaluator latches with :func:`latch_and_write_state`.
    """
    result = await session.execute(
        update(RegressionState)
        .where(RegressionState.domain == domain, RegressionState.metric == metric, RegressionState.triggered.is_(False))
        .values(triggered=True, last_triggered_at=now)
    )
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class PolicyRound:
    """What an evaluation reads of one policy: the policy, its state row, its two windows."""

    policy: Policy
    state: Mapping[str, Any] | None  # every regression_state column by name; None before the row exists
    recent: WindowStats
    baseline: WindowStats
    fresh: int  # of the window + baseline events, those newer than the state's rearm_after_id
    # 1 when the pair's newest event (in window order) has an id above the last one the CUSUM folded,
    # which is exactly when a fold folds anything (it folds the newest events down to the first it has
    # seen); 0: a stored CUSUM is up to date and the evaluation need not fold. Not a count of ids above
    # it: ids are not in created_at order (two COPYs at once), and such a count stayed above 0 for ever.
    unfolded: int = 0


_POLICY = RegressionPolicy.__table__
_STATE = RegressionState.__table__
# The state columns an evaluation writes (from its windows) are not read back; the rest are.
EVALUATED = ("baseline", "current", "drop_fraction", "recent_events", "baseline_events", "evidence",
             "last_checked_at", "note")
_STATE_READ = tuple(c for c in _STATE.columns if c.name not in EVALUATED)
_STATE_NAMES = tuple(c.name for c in _STATE_READ)
_N_POLICY = len(_POLICY.columns)
_N_STATE = len(_STATE_READ)
_WINDOW_COLUMNS = ("n", "total", "total_sq", "fresh")


def _pg_window(name: str, limit: str, offset: str | None = None) -> str:
    # A policy's newest events in index order, cut to one window, summed to (n, sum, sum of
    # squares). Profiled: a LIMIT per window is cheaper than numbering the rows of both windows
    # (row_number() over window + baseline and a GROUP BY took twice as long over 1M rows).
    return f"""CROSS JOIN LATERAL (
    SELECT count(*) AS n, sum(x.v) AS total, sum(x.v * x.v) AS total_sq,
           count(*) FILTER (WHERE x.id > st.rearm_after_id) AS fresh
    FROM (
        SELECT k.id, CASE WHEN pol.aggregation = 'mean_value' THEN k.value
                          WHEN k.success THEN 1.0::float8 ELSE 0.0::float8 END AS v
        FROM kpi_event AS k
        WHERE k.domain = pol.domain AND k.metric = pol.metric
          AND (pol.aggregation <> 'mean_value' OR k.value IS NOT NULL)
        ORDER BY k.created_at DESC, k.id DESC LIMIT {limit}{f" OFFSET {offset}" if offset else ""}
    ) AS x
) AS {name}"""


def _pg_round(where: str) -> Any:
    """Policies, their states and both windows in one statement: one round trip for any number of policies."""
    policy_cols = ", ".join(f"pol.{c.name}" for c in _POLICY.columns)
    state_cols = ", ".join(f"st.{c} AS state_{c}" for c in _STATE_NAMES)
    windows = ", ".join(f"{w}.{c} AS {w}_{c}" for w in ("r", "b") for c in _WINDOW_COLUMNS)
    # The newest event's id against the CUSUM's last folded one: one more row from the same index.
    unfolded = """(SELECT k.id FROM kpi_event AS k
        WHERE k.domain = pol.domain AND k.metric = pol.metric
          AND (pol.aggregation <> 'mean_value' OR k.value IS NOT NULL)
        ORDER BY k.created_at DESC, k.id DESC LIMIT 1) > COALESCE(st.cusum_last_event_id, -1) AS unfolded"""
    sql = f"""SELECT {policy_cols}, {state_cols}, {windows}, {unfolded}
FROM regression_policy AS pol
LEFT JOIN regression_state AS st ON st.domain = pol.domain AND st.metric = pol.metric
{_pg_window("r", "pol.window_events")}
{_pg_window("b", "pol.baseline_events", "pol.window_events")}
WHERE {where}
ORDER BY pol.domain, pol.metric"""
    typed = [*_POLICY.columns, *(column(f"state_{c.name}", c.type) for c in _STATE_READ),
             *(column(f"{w}_{c}", Float if c.startswith("total") else Integer)
               for w in ("r", "b") for c in _WINDOW_COLUMNS), column("unfolded", Boolean)]
    return text(sql).columns(*typed)


_PG_ROUND_ALL = _pg_round("pol.enabled")
# One of several parts of the enabled policies, read at once on as many connections (Evaluator's read_parts).
_PG_ROUND_PART = _pg_round("pol.enabled AND mod(pol.id, :parts) = :part")
_PG_ROUND_ONE = _pg_round("pol.domain = :domain AND pol.metric = :metric")


def _policies_and_states(key: tuple[str, str] | None) -> Any:
    stmt = (
        select(*_POLICY.columns, *(c.label(f"state_{c.name}") for c in _STATE_READ))
        .select_from(_POLICY.outerjoin(_STATE, and_(_STATE.c.domain == _POLICY.c.domain,
                                                    _STATE.c.metric == _POLICY.c.metric)))
        .order_by(_POLICY.c.domain, _POLICY.c.metric)
    )
    if key is None:
        return stmt.where(_POLICY.c.enabled.is_(True))
    return stmt.where(_POLICY.c.domain == key[0], _POLICY.c.metric == key[1])


def _window_select(mean: bool) -> Any:
    """Both windows of one policy from its newest events (SQLite: no LATERAL, one statement per policy)."""
    ev = KpiEvent.__table__

    first = select(ev.c.id).where(ev.c.domain == bindparam("domain"), ev.c.metric == bindparam("metric"))
    if mean:
        first = first.where(ev.c.value.is_not(None))
    first = first.order_by(ev.c.created_at.desc(), ev.c.id.desc()).limit(1)

    def window(limit: Any, offset: Any) -> Any:
        v = (ev.c.value if mean else case((ev.c.success, literal(1.0)), else_=literal(0.0))).label("v")
        newest = select(ev.c.id, v).where(ev.c.domain == bindparam("domain"), ev.c.metric == bindparam("metric"))
        if mean:
            newest = newest.where(ev.c.value.is_not(None))
        newest = newest.order_by(ev.c.created_at.desc(), ev.c.id.desc()).limit(limit).offset(offset).subquery()
        # The recent window's row also says whether the newest event is above the CUSUM's last folded id.
        unfolded = literal(0) if offset is not None else case(
            (first.scalar_subquery() > bindparam("folded"), literal(1)), else_=literal(0))
        return select(func.count(), func.sum(newest.c.v), func.sum(newest.c.v * newest.c.v),
                      func.count().filter(newest.c.id > bindparam("after")), unfolded,
                      literal(offset is not None).label("b"))

    both = union_all(window(bindparam("window"), None), window(bindparam("baseline"), bindparam("window"))).subquery()
    return select(both).order_by(both.c.b)


_WINDOWS_SQLITE = {mean: _window_select(mean) for mean in (False, True)}

# (domain, metric) -> (the policy row's values, the Policy): a round builds a Policy only when its row
# changed. Profiled: building 100 Policies (enum look-ups, 15 attribute reads) was 8 % of evaluate-all.
_policies: dict[tuple[str, str], tuple[tuple[Any, ...], Policy]] = {}


def _policy(row: Any) -> Policy:
    values = tuple(row[:_N_POLICY])
    key = (row.domain, row.metric)
    known = _policies.get(key)
    if known is not None and known[0] == values:
        return known[1]
    policy = policy_from_row(row)
    _policies[key] = (values, policy)
    return policy


def _round_of(row: Any, recent: WindowStats, baseline: WindowStats, fresh: int, unfolded: int) -> PolicyRound:
    state_values = row[_N_POLICY : _N_POLICY + _N_STATE]
    state = None if state_values[0] is None else dict(zip(_STATE_NAMES, state_values, strict=True))
    return PolicyRound(_policy(row), state, recent, baseline, fresh, unfolded)


def _stats(n: int | None, total: float | None, total_sq: float | None) -> WindowStats:
    return WindowStats(int(n or 0), float(total or 0.0), float(total_sq or 0.0))


async def read_round(
    session: AsyncSession, key: tuple[str, str] | None = None, *, part: tuple[int, int] | None = None
) -> list[PolicyRound]:
    """Every enabled policy (key None) or the one policy of ``key``, with its state and windows; by (domain, metric).

    The windows are those of ``_sequential_state.newest_events`` followed by ``split_windows``, summed by the
    database.
    The state holds the columns an evaluation does not write (EVALUATED); None if the row is missing.
    PostgreSQL answers in one statement whatever the number of policies; SQLite in one more per policy.
    ``part`` (i, n), PostgreSQL only: the enabled policies whose id is i modulo n, so that n reads can
    run at once on n connections.
    """
    if session.bind.dialect.name == "postgresql":
        if part is not None:
            result = await session.execute(_PG_ROUND_PART, {"part": part[0], "parts": part[1]})
        elif key is None:
            result = await session.execute(_PG_ROUND_ALL)
        else:
            result = await session.execute(_PG_ROUND_ONE, {"domain": key[0], "metric": key[1]})
        out = []
        at = _N_POLICY + _N_STATE
        for row in result:
            rn, rt, rsq, rf, bn, bt, bsq, bf, unfolded = row[at:]
            out.append(_round_of(row, _stats(rn, rt, rsq), _stats(bn, bt, bsq), int(rf or 0) + int(bf or 0),
                                 int(bool(unfolded))))
        return out
    out = []
    for row in (await session.execute(_policies_and_states(key))).all():
        policy = _policy(row)
        after, folded = row.state_rearm_after_id, row.state_cusum_last_event_id
        params = {"domain": policy.domain, "metric": policy.metric, "window": policy.window_events,
                  "baseline": policy.baseline_events, "after": -1 if after is None else after,
                  "folded": -1 if folded is None else folded}
        (rn, rt, rsq, rf, ru, _), (bn, bt, bsq, bf, _, _) = await sqlite_rows(
            session, _WINDOWS_SQLITE[policy.aggregation is Aggregation.MEAN_VALUE], params)
        out.append(_round_of(row, _stats(rn, rt, rsq), _stats(bn, bt, bsq),
                             int(rf or 0) + int(bf or 0) if after is not None else 0, int(ru or 0)))
    return out


# One statement for any number of states (an executemany): the columns an evaluation writes;
# ``triggered`` only where given (a policy that acts is latched by latch_and_write_state alone,
# never written back from a possibly stale read), ``rearm_after_id`` cleared once re-armed, and
# only if it is still the one the evaluation read (a re-enable in between set a new one).
_WRITE_STATE = (
    update(_STATE)
    .where(_STATE.c.id == bindparam("p_id"))
    .values(
        baseline=bindparam("p_baseline"), current=bindparam("p_current"),
        drop_fraction=bindparam("p_drop_fraction"), recent_events=bindparam("p_recent_events"),
        baseline_events=bindparam("p_baseline_events"), evidence=bindparam("p_evidence", type_=_STATE.c.evidence.type),
        last_checked_at=bindparam("p_last_checked_at", type_=_STATE.c.last_checked_at.type),
        note=bindparam("p_note"),
        triggered=func.coalesce(bindparam("p_triggered", type_=Boolean), _STATE.c.triggered),
        rearm_after_id=case(
            (and_(bindparam("p_clear_rearm", type_=Boolean), _STATE.c.rearm_after_id == bindparam("p_read_rearm")),
             null()),
            else_=_STATE.c.rearm_after_id,
        ),
    )
)


# The same with the CUSUM an evaluation folded (``p_cusum_*``): one write for both, one commit.
_WRITE_STATE_FOLDED = _WRITE_STATE.values(
    {c: bindparam(f"p_{c}", type_=_STATE.c[c].type) for c in CUSUM_COLUMNS}
)


def _write_statement(values: Mapping[str, Any]) -> Any:
    return _WRITE_STATE_FOLDED if "p_cusum_statistic" in values else _WRITE_STATE


# PostgreSQL: every state of a round in one UPDATE from arrays. Profiled: the executemany's
# per-row parameter processing in SQLAlchemy was a tenth of evaluate-all's time in the server.
_PG_WRITE_STATES = text("""
UPDATE regression_state AS s
SET baseline = v.baseline, current = v.current, drop_fraction = v.drop_fraction, recent_events = v.recent_events,
    baseline_events = v.baseline_events, evidence = CAST(v.evidence AS json), last_checked_at = v.last_checked_at,
    note = v.note, triggered = COALESCE(v.triggered, s.triggered),
    rearm_after_id = CASE WHEN v.clear_rearm AND s.rearm_after_id = v.read_rearm THEN NULL ELSE s.rearm_after_id END
FROM unnest(CAST(:p_id AS int[]), CAST(:p_baseline AS float8[]), CAST(:p_current AS float8[]),
            CAST(:p_drop_fraction AS float8[]), CAST(:p_recent_events AS int[]), CAST(:p_baseline_events AS int[]),
            CAST(:p_evidence AS text[]), CAST(:p_last_checked_at AS timestamptz[]), CAST(:p_note AS text[]),
            CAST(:p_triggered AS bool[]), CAST(:p_clear_rearm AS bool[]), CAST(:p_read_rearm AS bigint[]))
     AS v(id, baseline, current, drop_fraction, recent_events, baseline_events, evidence, last_checked_at, note,
          triggered, clear_rearm, read_rearm)
WHERE s.id = v.id
""")


async def write_states(session: AsyncSession, values: Sequence[Mapping[str, Any]]) -> None:
    """Store evaluations in their state rows: ``values`` are :data:`_WRITE_STATE`'s parameters (``p_id`` ...)."""
    if not values:
        return
    if len(values) > 1 and session.bind.dialect.name == "postgresql" and "p_cusum_statistic" not in values[0]:
        columns: dict[str, list[Any]] = {k: [v[k] for v in values] for k in values[0]}
        # pydantic-core's serialiser: the standard library's was 5 % of evaluate-all's server time
        columns["p_evidence"] = [None if e is None else to_json(e).decode() for e in columns["p_evidence"]]
        await session.execute(_PG_WRITE_STATES, columns)
        return
    await session.execute(_write_statement(values[0]), list(values))


async def latch_and_write_state(session: AsyncSession, values: Mapping[str, Any], now: datetime) -> bool:
    """Latch the trigger and store the evaluation in one UPDATE; True only for the one caller that flipped it.

    Only a state still untriggered and with the re-arm mark the evaluation read is latched: a re-enable
    between the read and the latch makes the evaluation that read the older state act on nothing.
    """
    stmt = (
        _write_statement(values).values(triggered=True, last_triggered_at=now)
        .where(_STATE.c.triggered.is_(False),
               _STATE.c.rearm_after_id.is_not_distinct_from(bindparam("p_read_rearm", type_=BigInteger)))
    )
    result = await session.execute(stmt, dict(values))
    return result.rowcount == 1


def state_json(state: RegressionState | Mapping[str, Any], policy: Policy | None = None) -> dict[str, Any]:
    """The seed's state shape, plus the evidence and window sizes; from a state row or its columns by name."""
    get = state.__getitem__ if isinstance(state, Mapping) else state.__getattribute__
    drop = get("drop_fraction")
    out: dict[str, Any] = {
        "domain": get("domain"),
        "metric": get("metric"),
        "triggered": get("triggered"),
        "baseline": get("baseline"),
        "current": get("current"),
        "drop_fraction": None if drop is None else round(drop, 3),
        "last_triggered_at": get("last_triggered_at"),
        "note": get("note"),
        "last_checked_at": get("last_checked_at"),
        "recent_events": get("recent_events"),
        "baseline_events": get("baseline_events"),
        "evidence": get("evidence"),
    }
    if policy is not None:
        out["action"] = policy.action.value
        out["max_drop_fraction"] = policy.max_drop_fraction
        out["enabled"] = policy.enabled
        out["dry_run"] = policy.dry_run
    return out


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, Guard | Action | Aggregation) else v) for k, v in d.items()}
