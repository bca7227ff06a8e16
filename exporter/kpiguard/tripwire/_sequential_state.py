"""The sequential guard's state in the database: fold the events newer than the last one folded, store, reset.

Each evaluation folds only the events that arrived since the previous one, each with the policy's
baseline window as of just before it (what :func:`kpiguard.tripwire._sequential.play` does in
memory), so the service, the tests and the detection harness compute the same statistic whether the
events come one at a time or in a batch.  The read is bounded: the newest ``k + window + baseline``
events for k new ones, at most ``MAX_FOLD_EVENTS`` of them per evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from kpiguard.db.engine import sqlite_rows
from kpiguard.db.models import KpiEvent
from kpiguard.tripwire._policy import CUSUM_GUARDS, Aggregation, Policy
from kpiguard.tripwire._sequential import FRESH, Cusum, Reference, fold
from kpiguard.tripwire._window import WindowStats, event_value

# Most events one evaluation folds.  After a batch larger than this (or a long pause of the evaluator)
# only the newest are folded: the CUSUM then starts its look at a drop that many events late, which
# is far more than it needs to see one (DETECTION.md: median delays of tens to a few hundred events).
MAX_FOLD_EVENTS = 1000
# Events read beyond window + baseline for a fold: folding k new events needs the baseline before each,
# so k more than the windows hold. Read with the windows, the usual fold (after ingest: one to a few
# events) needs no second read; the enforcement benchmark's crossing evaluation made three reads.
FOLD_READ_AHEAD = 32

# The regression_state columns that hold the CUSUM.
CUSUM_COLUMNS = ("cusum_statistic", "cusum_reference", "cusum_level", "cusum_scale", "cusum_total",
                 "cusum_last_event_id")


class CusumState(Protocol):
    """What holds a CUSUM: a RegressionState row, or its CUSUM_COLUMNS as attributes."""

    cusum_statistic: float | None
    cusum_reference: float | None
    cusum_level: float | None
    cusum_scale: float | None
    cusum_total: float | None
    cusum_last_event_id: int | None


def cusum_of(state: CusumState) -> Cusum:
    """The CUSUM a state row holds (fresh when it holds none)."""
    if state.cusum_statistic is None:
        return FRESH
    reference = None
    if state.cusum_reference is not None and state.cusum_level is not None:
        reference = Reference(state.cusum_reference, state.cusum_level, state.cusum_scale)
    # A row stored before cusum_total existed holds a sequential guard's CUSUM, whose sum since the
    # reference was taken is its statistic (until the statistic is back at 0, when both restart).
    total = state.cusum_statistic if state.cusum_total is None else state.cusum_total
    return Cusum(state.cusum_statistic, reference, total)


def reset_cusum(state: CusumState, after_id: int | None = None) -> None:
    """Forget the CUSUM.  With ``after_id`` (a re-enable: a person fixed what fired) it starts at 0 and folds
    only events after that id; without, the next evaluation starts fresh at the recent window."""
    state.cusum_statistic = None if after_id is None else 0.0
    state.cusum_reference = None
    state.cusum_level = None
    state.cusum_scale = None
    state.cusum_total = None if after_id is None else 0.0
    state.cusum_last_event_id = after_id


def _store(state: CusumState, cusum: Cusum, last_event_id: int | None) -> None:
    ref = cusum.reference
    state.cusum_statistic = cusum.statistic
    state.cusum_reference = None if ref is None else ref.value
    state.cusum_level = None if ref is None else ref.level
    state.cusum_scale = None if ref is None else ref.scale
    state.cusum_total = cusum.total
    state.cusum_last_event_id = last_event_id


class _Event(NamedTuple):
    """One event as a fold reads it."""

    id: int
    success: bool
    value: float | None


def _newest_select(mean: bool) -> Any:
    ev = KpiEvent.__table__
    stmt = select(ev.c.id, ev.c.success, ev.c.value).where(ev.c.domain == bindparam("domain"),
                                                          ev.c.metric == bindparam("metric"))
    if mean:
        stmt = stmt.where(ev.c.value.is_not(None))
    return stmt.order_by(ev.c.created_at.desc(), ev.c.id.desc()).limit(bindparam("limit"))


_NEWEST = {mean: _newest_select(mean) for mean in (False, True)}


async def newest_events(session: AsyncSession, policy: Policy, limit: int | None = None) -> Sequence[Any]:
    """The newest ``limit`` events (default: window + baseline) of the policy's pair, newest first: (id, success, value).

    A mean_value policy reads only events that carry a value. Served by the (domain, metric,
    created_at, id, success, value) index in order: the cost does not grow with the size of the table.
    """
    stmt = _NEWEST[policy.aggregation is Aggregation.MEAN_VALUE]
    if limit is None:
        limit = policy.window_events + policy.baseline_events
    params = {"domain": policy.domain, "metric": policy.metric, "limit": limit}
    if session.bind.dialect.name == "sqlite":
        return [_Event(*r) for r in await sqlite_rows(session, stmt, params)]
    return (await session.execute(stmt, params)).all()


def _leading_new(rows: Sequence[Any], last_event_id: int | None, window: int) -> int:
    """How many of the newest rows are new: after the last folded event, or the recent window for a fresh CUSUM."""
    if last_event_id is None:
        return min(window, len(rows))
    k = 0
    while k < len(rows) and rows[k].id > last_event_id:
        k += 1
    return k


def fold_rows(policy: Policy, cusum: Cusum, rows: Sequence[Any], new: int) -> Cusum:
    """Fold the ``new`` newest of ``rows`` (newest first), oldest first, each with its baseline as of just before it."""
    w, b = policy.window_events, policy.baseline_events
    values = [event_value(policy.aggregation, r.success, r.value) for r in rows]
    # Event j (0 = newest) has the baseline values[j + 1 + w : j + 1 + w + b]; slide it from the oldest new event.
    j = new - 1
    baseline = WindowStats.from_values(values[j + 1 + w : j + 1 + w + b])
    pairs: list[tuple[float, WindowStats]] = []
    while j >= 0:
        pairs.append((values[j], baseline))
        j -= 1
        if j >= 0:
            entering = j + 1 + w  # the event that leaves event j's recent window for its baseline
            if entering < len(values):
                baseline = baseline + WindowStats.of(values[entering])
            leaving = j + 1 + w + b
            if leaving < len(values):
                baseline = baseline - WindowStats.of(values[leaving])
    return fold(cusum, pairs, policy)


async def fold_new_events(session: AsyncSession, policy: Policy, state: CusumState) -> Cusum:
    """Fold the events newer than the state's last folded one into its CUSUM, store it on the state, return it.

    Reads the pair's newest window + baseline + FOLD_READ_AHEAD events (newest first); when the new
    events need older baselines than those reach, reads again, at most MAX_FOLD_EVENTS new ones.
    A policy with a guard that keeps no CUSUM clears a stored one (so switching back starts fresh).
    """
    if policy.guard not in CUSUM_GUARDS:
        if state.cusum_statistic is not None or state.cusum_last_event_id is not None:
            reset_cusum(state)
        return FRESH
    cusum = cusum_of(state)
    w, b = policy.window_events, policy.baseline_events
    limit = w + b + FOLD_READ_AHEAD
    rows = await newest_events(session, policy, limit)
    if not rows:
        if state.cusum_last_event_id is None:
            _store(state, cusum, 0)  # no events yet: every event to come is new
        return cusum
    new = _leading_new(rows, state.cusum_last_event_id, w)
    if new and new + w + b > len(rows) == limit:
        # More history exists than was read: read what the new events' baselines need.
        limit = (min(new, MAX_FOLD_EVENTS) if new < len(rows) else MAX_FOLD_EVENTS) + w + b
        rows = await newest_events(session, policy, limit)
        new = min(_leading_new(rows, state.cusum_last_event_id, w), MAX_FOLD_EVENTS)
    last = state.cusum_last_event_id
    if new:
        cusum = fold_rows(policy, cusum, rows, new)
        last = max(max(r.id for r in rows[:new]), last or 0)
    _store(state, cusum, last if last is not None else rows[0].id)
    return cusum


# Policy fields whose change makes a stored CUSUM meaningless (its reference, level or event order).
_RESETTING_FIELDS = frozenset(
    {"guard", "aggregation", "max_drop_fraction", "window_events", "baseline_events", "min_events_to_enforce",
     "enabled"}
)


def resets_cusum(changed_fields: Iterable[str]) -> bool:
    """Whether a policy change starts its CUSUM afresh: a new guard, aggregation, threshold or window, or (re-)enabling.

    A disabled policy is not evaluated, so its CUSUM would resume from events long past.
    """
    return not _RESETTING_FIELDS.isdisjoint(changed_fields)
