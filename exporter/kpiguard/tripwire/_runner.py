"""Running the tripwire: read windows, evaluate, store the state, enforce once; after ingest and on a schedule."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpiguard import audit, enforcement
from kpiguard.db._types import utcnow
from kpiguard.db.engine import write_lock
from kpiguard.db.models import RegressionState
from kpiguard.errors import NotFound
from kpiguard.ingest import StoredEvent
from kpiguard.metrics import Metrics
from kpiguard.tripwire._evaluate import Evaluation, evaluate
from kpiguard.tripwire._policy import CUSUM_GUARDS, Action, Policy
from kpiguard.tripwire._sequential import Cusum
from kpiguard.tripwire._sequential_state import CUSUM_COLUMNS, cusum_of, fold_new_events
from kpiguard.tripwire._store import (
    PolicyRound,
    get_state_row,
    latch_and_write_state,
    list_policies,
    read_round,
    state_json,
    write_states,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """One evaluation as stored and reported, with what was enforced."""

    policy: Policy
    evaluation: Evaluation
    state: dict[str, Any]
    enforced: enforcement.Outcome | None

    def to_json(self) -> dict[str, Any]:
        """The seed's state shape plus what was enforced."""
        out = dict(self.state)
        out["enforced"] = None if self.enforced is None else {
            "action": self.enforced.action, "changed": self.enforced.changed, "audit_id": self.enforced.audit_id,
        }
        return out


class Evaluator:
    """Evaluates policies against their count windows and enforces through :mod:`kpiguard.enforcement`."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], metrics: Metrics, *, enforce: bool, read_parts: int = 1
    ) -> None:
        self._sessions = sessions
        # PostgreSQL: evaluate-all reads its policies in this many statements at once (see _rounds)
        self._read_parts = read_parts
        self._metrics = metrics
        self._enforce = enforce
        self._watched: set[tuple[str, str]] = set()
        self._pending: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._gauges: dict[tuple[str, str], _Gauges] = {}

    # --- evaluation ---

    async def evaluate_one(self, domain: str, metric: str, *, actor: str | None, source: audit.Source) -> Verdict:
        """Evaluate one policy; the latch and the action share one transaction. NotFound if there is no policy."""
        start = time.perf_counter()
        bind = self._sessions.kw["bind"]
        async with self._sessions() as session:
            await _autocommit(session)
            rounds = await read_round(session, (domain, metric))
            if not rounds:
                raise NotFound(f"no regression policy for {domain}.{metric}", field="domain,metric")
            r = rounds[0]
            policy, state = r.policy, r.state
            if state is None:
                row = await get_state_row(session, policy.domain, policy.metric)
                state = {c.name: getattr(row, c.name) for c in RegressionState.__table__.columns}
            cusum = None
            folded: dict[str, Any] = {}
            if policy.guard in CUSUM_GUARDS:
                if _must_fold(r, state):
                    cusum, folded = await _fold_cusum(session, policy, state)
                else:
                    cusum = _stored_cusum(state)
            ev = evaluate(policy, r.recent, r.baseline, cusum)
            now = utcnow()
            step = decide(policy, state, ev, r.fresh)
            values = _state_values(state, ev, step, now)
            params = _params(values, step) | folded
            if not step.latch:
                # Each statement commits by itself: a state write is one UPDATE, and under READ
                # COMMITTED a transaction around the read and the write would hold nothing more.
                async with write_lock(bind):
                    await write_states(session, [params])
        # The read's connection is back in the pool before the latch takes one: ten evaluations at
        # once must not each hold one connection while they wait for a second.
        enforced: enforcement.Outcome | None = None
        if step.latch:
            # The latch and the state are one conditional UPDATE, in the action's transaction: the
            # action runs once, for the evaluation that flipped the trigger, or not at all.
            async with write_lock(bind), self._sessions() as tx, tx.begin():
                if await latch_and_write_state(tx, params, now):
                    values["last_triggered_at"] = now
                    enforced = await self._act(tx, policy, ev, actor=actor, source=source)
                else:  # another evaluation flipped it first
                    await write_states(tx, [params])
            values["triggered"] = True
        self._export(policy, ev, values)
        self._metrics.evaluations.labels(_result(ev, step.armed)).inc()
        self._metrics.evaluation_duration.labels(source.value).observe(time.perf_counter() - start)
        if enforced is not None:
            self._export_enforced(policy)
        return Verdict(policy, ev, state_json(values, policy), enforced)

    async def evaluate_all(self, *, actor: str | None, source: audit.Source) -> list[Verdict]:
        """Evaluate every enabled policy; those that enforce nothing share one read and one write.

        A policy that would latch (or has no state row yet, or a CUSUM with events to fold) is evaluated
        again by :meth:`evaluate_one`, so that an action runs exactly as it does after ingest.
        """
        start = time.perf_counter()
        verdicts: dict[tuple[str, str], Verdict] = {}
        alone: list[tuple[str, str]] = []
        keys: list[tuple[str, str]] = []
        async with self._sessions() as session:
            # Profiled: one transaction and five round trips per policy bounded evaluate-all at a few
            # hundred policies a second; then the ORM's loading and flushing of 100 states a round did.
            # Now one statement reads policies, states and windows (on PostgreSQL: read_parts statements at
            # once, each a share of the policies), and one statement writes states.
            await _autocommit(session)
            now = utcnow()
            writes = []
            async with contextlib.aclosing(self._rounds(session)) as rounds:
                async for r in rounds:
                    keys.append(r.policy.key)
                    policy, state = r.policy, r.state
                    if state is None:
                        alone.append(policy.key)
                        continue
                    cusum = None
                    if policy.guard in CUSUM_GUARDS:
                        # New events to fold into the stored CUSUM take evaluate_one (it reads them); a CUSUM
                        # that has folded every event evaluates here with the rest, as it stands.
                        if _must_fold(r, state):
                            alone.append(policy.key)
                            continue
                        cusum = _stored_cusum(state)
                    ev = evaluate(policy, r.recent, r.baseline, cusum)
                    step = decide(policy, state, ev, r.fresh)
                    if step.latch:
                        alone.append(policy.key)
                        continue
                    values = _state_values(state, ev, step, now)
                    writes.append(_params(values, step))
                    self._export(policy, ev, values)
                    self._metrics.evaluations.labels(_result(ev, step.armed)).inc()
                    verdicts[policy.key] = Verdict(policy, ev, state_json(values, policy), None)
            keys.sort()
            self._watched = set(keys)
            async with write_lock(session.bind):
                await write_states(session, writes)
        if verdicts:
            each = (time.perf_counter() - start) / len(verdicts)
            observe = self._metrics.evaluation_duration.labels(source.value).observe
            for _ in verdicts:
                observe(each)
        for domain, metric in alone:
            verdicts[(domain, metric)] = await self.evaluate_one(domain, metric, actor=actor, source=source)
        return [verdicts[k] for k in keys]

    async def _rounds(self, session: AsyncSession) -> AsyncIterator[PolicyRound]:
        """Every enabled policy's round; on PostgreSQL in ``read_parts`` statements at once, each part as it comes.

        Profiled over 1M rows: the one statement took about 30 ms of one PostgreSQL backend while the
        server waited, then the server evaluated for about 20 ms while PostgreSQL waited. Two parts on
        two connections read in 16-20 ms, and the first part's evaluation overlaps the second's read.
        """
        if self._read_parts <= 1 or session.bind.dialect.name != "postgresql":
            for r in await read_round(session):
                yield r
            return

        async def read(i: int) -> list[PolicyRound]:
            if i == 0:
                return await read_round(session, part=(0, self._read_parts))
            async with self._sessions() as own:
                await _autocommit(own)
                return await read_round(own, part=(i, self._read_parts))

        tasks = [asyncio.create_task(read(i)) for i in range(self._read_parts)]
        try:
            for done in asyncio.as_completed(tasks):
                for r in await done:
                    yield r
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _act(self, session: AsyncSession, policy: Policy, ev: Evaluation, *, actor: str | None,
                   source: audit.Source) -> enforcement.Outcome | None:
        if not self._enforce:
            log.info("tripwire %s.%s triggered (%s); native enforcement is off", policy.domain, policy.metric, ev.note)
            return None
        if policy.action is Action.THROTTLE:
            reason = enforcement.throttle_reason(policy.domain, policy.metric, ev.drop_fraction)
        else:
            reason = enforcement.kill_reason(policy.domain, policy.metric, ev.drop_fraction)
        detail = {"drop_fraction": ev.drop_fraction, "baseline": ev.baseline, "current": ev.current,
                  "evidence": ev.evidence, "note": ev.note}
        outcome = await enforcement.enforce(
            session, policy.action, domain=policy.domain, metric=policy.metric, reason=reason,
            actor=actor or "tripwire", source=source, detail=detail,
        )
        self._metrics.enforcement_actions.labels(policy.action.value, source.value).inc()
        log.warning("tripwire %s.%s triggered: %s -> %s", policy.domain, policy.metric, ev.note, reason)
        return outcome

    def _export_enforced(self, policy: Policy) -> None:
        """Set the gauge of what the policy's action changed; the action committed, the state is known.

        Reading every engine's risk policy back (refresh_enforcement_gauges) cost two more round trips
        and a load of every risk policy right when clients check whether the engine is stopped.
        """
        if policy.action is Action.THROTTLE:
            self._metrics.risk_policy_enabled.labels(policy.domain).set(0)
        else:
            self._metrics.kill_switch.set(1)

    def _export(self, policy: Policy, ev: Evaluation, values: Mapping[str, Any]) -> None:
        """Export the evaluation and the state ``values`` it left (triggered, rearm_after_id) as gauges."""
        children = self._gauges.get(policy.key)
        if children is None:
            m = self._metrics
            if not m.labels.admit(policy.domain, policy.metric, 0):
                return
            # Profiled: eight labels() look-ups a policy were a sixth of evaluate-all; a pair's gauges
            # never go away (the label guard only admits), so each pair looks them up once.
            labels = policy.key
            children = self._gauges[policy.key] = _Gauges(
                m.regression_current.labels(*labels).set, m.regression_baseline.labels(*labels).set,
                m.regression_drop.labels(*labels).set, m.regression_threshold.labels(*labels).set,
                m.regression_min_events.labels(*labels).set, m.regression_window_events.labels(*labels, "recent").set,
                m.regression_window_events.labels(*labels, "baseline").set, m.regression_triggered.labels(*labels).set,
                m.regression_firing.labels(*labels).set,
            )
        if ev.current is not None:
            children.current(ev.current)
        if ev.baseline is not None:
            children.baseline(ev.baseline)
        if ev.drop_fraction is not None:
            children.drop(ev.drop_fraction)
        children.threshold(policy.max_drop_fraction)
        children.min_events(policy.min_events_to_enforce)
        children.recent_events(ev.recent_events)
        children.baseline_events(ev.baseline_events)
        children.triggered(1 if values["triggered"] else 0)
        # What the generated count-window alert reads, so that Alertmanager acts on the guard's verdict too
        # (a re-arming state still has rearm_after_id: the same bad windows do not fire again).
        children.firing(1 if ev.triggered and values["rearm_after_id"] is None else 0)

    # --- background work ---

    def on_commit(self, events: Sequence[StoredEvent]) -> None:
        """Commit listener: queue the watched (domain, metric) pairs the events touch; evaluation coalesces them."""
        touched = {(e.domain, e.metric) for e in events} & self._watched
        if touched:
            self._pending |= touched
            self._wake.set()

    def watch(self, keys: Iterable[tuple[str, str]]) -> None:
        """Set the (domain, metric) pairs whose ingest triggers an evaluation."""
        self._watched = set(keys)

    async def refresh_watched(self) -> None:
        """Reload the enabled policies' pairs from the database (other replicas may have changed them)."""
        async with self._sessions() as session:
            self.watch((r.domain, r.metric) for r in await list_policies(session) if r.enabled)

    async def run_after_ingest(self) -> None:
        """Evaluate the pairs ingest touched; pairs touched while an evaluation runs are evaluated once after it."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, set()
            for domain, metric in sorted(batch):
                try:
                    await self.evaluate_one(domain, metric, actor="tripwire", source=audit.Source.EVALUATOR)
                except Exception:
                    log.exception("evaluating %s.%s after ingest failed", domain, metric)

    async def run_schedule(self, interval: float) -> None:
        """Evaluate every enabled policy every ``interval`` seconds."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.evaluate_all(actor="tripwire", source=audit.Source.EVALUATOR)
            except Exception:
                log.exception("scheduled evaluation failed")

    async def refresh_enforcement_gauges(self) -> None:
        """Export the engines' risk policies and the kill switch as they are in the database."""
        async with self._sessions() as session:
            for p in await enforcement.list_risk_policies(session):
                self._metrics.risk_policy_enabled.labels(p.engine).set(1 if p.enabled else 0)
            state = await enforcement.read_state(session)
        self._metrics.kill_switch.set(1 if state.kill_switch_engaged else 0)


def _must_fold(r: PolicyRound, state: Mapping[str, Any]) -> bool:
    """Whether the stored CUSUM lacks events: the newest event is above the last folded id, or it holds none yet."""
    return bool(r.unfolded) or state["cusum_statistic"] is None


def _cusum_columns(state: Mapping[str, Any]) -> SimpleNamespace:
    """The state's CUSUM columns as attributes (what the _sequential_state functions read and write)."""
    return SimpleNamespace(**{c: state[c] for c in CUSUM_COLUMNS})


def _stored_cusum(state: Mapping[str, Any]) -> Cusum:
    """The CUSUM as the state row holds it."""
    return cusum_of(_cusum_columns(state))  # type: ignore[arg-type]


async def _fold_cusum(session: AsyncSession, policy: Policy, state: Mapping[str, Any]) -> tuple[Cusum, dict[str, Any]]:
    """Fold the events newer than the state's last folded one into its CUSUM: the CUSUM and its state-write parameters.

    The CUSUM columns go out with the evaluation's own state write (``p_cusum_*``): a separate UPDATE
    was one more commit on the crossing evaluation's path (one more fsync on SQLite).
    """
    holder = _cusum_columns(state)
    cusum = await fold_new_events(session, policy, holder)  # type: ignore[arg-type]
    return cusum, {f"p_{c}": getattr(holder, c) for c in CUSUM_COLUMNS}


async def _autocommit(session: AsyncSession) -> None:
    """Run the session's statements without BEGIN and COMMIT: two round trips fewer on PostgreSQL."""
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


class _Gauges(NamedTuple):
    """The set() of one pair's regression gauges."""

    current: Callable[[float], None]
    baseline: Callable[[float], None]
    drop: Callable[[float], None]
    threshold: Callable[[float], None]
    min_events: Callable[[float], None]
    recent_events: Callable[[float], None]
    baseline_events: Callable[[float], None]
    triggered: Callable[[float], None]
    firing: Callable[[float], None]


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with an evaluation, given the state it was read with."""

    note: str
    armed: bool  # False while re-arming after a re-enable
    clear_rearm: bool  # re-armed now: forget rearm_after_id
    latch: bool  # flip the trigger and act (if no other evaluation flipped it first)
    triggered: bool | None  # the state's new triggered flag; None: leave it to the latch
    read_rearm: int | None  # the state's rearm_after_id as read: latch and clear only if it is unchanged


def decide(policy: Policy, state: Mapping[str, Any], ev: Evaluation, fresh: int) -> Step:
    """The step after an evaluation: pure, from the policy, the state as read and the events newer than a re-enable.

    ``fresh`` counts the window + baseline events newer than ``state["rearm_after_id"]``.
    """
    note = ev.note
    armed = True
    clear_rearm = False
    if state["rearm_after_id"] is not None:
        armed = fresh >= policy.min_events_to_enforce
        if armed:
            clear_rearm = True
        else:
            note = f"REARMING {fresh}/{policy.min_events_to_enforce} new events; {ev.note}"
    acts = policy.enabled and not policy.dry_run
    if ev.triggered and armed and acts:
        # Already latched: nothing to flip, the note is the verdict's (as when another evaluation flipped it).
        return Step(note, armed, clear_rearm, not state["triggered"], None, state["rearm_after_id"])
    return Step(_quiet_note(policy, state, ev, note, armed=armed), armed, clear_rearm, False,
                None if acts else ev.triggered and armed, state["rearm_after_id"])


def _quiet_note(policy: Policy, state: Mapping[str, Any], ev: Evaluation, note: str, *, armed: bool) -> str:
    """The note of an evaluation that enforces nothing; a policy that does not act mirrors the verdict in the state."""
    acts = policy.enabled and not policy.dry_run
    if not policy.enabled:
        note += " (policy disabled: not enforced)"
    elif policy.dry_run:
        note += " (dry_run: not enforced)"
    if state["triggered"] and acts:
        # Latched until a person re-enables: a recovering window does not clear the trip.
        last = state["last_triggered_at"]
        when = f"{last:%Y-%m-%dT%H:%M:%SZ}" if last else "?"
        return f"TRIGGERED (latched since {when}); now {note}"
    return note


def _state_values(state: Mapping[str, Any], ev: Evaluation, step: Step, now: datetime) -> dict[str, Any]:
    """The state row's columns after the step, as stored (before any latch)."""
    out = dict(state)
    out.update(
        baseline=ev.baseline, current=ev.current, drop_fraction=ev.drop_fraction, recent_events=ev.recent_events,
        baseline_events=ev.baseline_events, evidence=ev.evidence, last_checked_at=now, note=step.note[:1024],
    )
    if step.triggered is not None:
        out["triggered"] = step.triggered
    if step.clear_rearm:
        out["rearm_after_id"] = None
    return out


def _params(values: Mapping[str, Any], step: Step) -> dict[str, Any]:
    """The parameters of the state write (_store.write_states) for the values."""
    return {
        "p_id": values["id"], "p_baseline": values["baseline"], "p_current": values["current"],
        "p_drop_fraction": values["drop_fraction"], "p_recent_events": values["recent_events"],
        "p_baseline_events": values["baseline_events"], "p_evidence": values["evidence"],
        "p_last_checked_at": values["last_checked_at"], "p_note": values["note"],
        "p_triggered": step.triggered, "p_clear_rearm": step.clear_rearm, "p_read_rearm": step.read_rearm,
    }


def _result(ev: Evaluation, armed: bool) -> str:
    if not ev.enforceable:
        return "insufficient_data"
    if ev.triggered:
        return "triggered" if armed else "rearming"
    return "held" if ev.note.startswith("HELD") else "ok"


@contextlib.asynccontextmanager
async def running(evaluator: Evaluator, interval: float) -> Any:
    """Run the evaluator's background tasks for the duration of the block; cancel and await them after."""
    try:
        await evaluator.refresh_watched()
        await evaluator.refresh_enforcement_gauges()
    except Exception as exc:  # an unmigrated store: serve anyway, /readyz says why
        log.warning("tripwire not started on this store (%s); run `kpiguard db upgrade`", type(exc).__name__)
    tasks = [asyncio.create_task(evaluator.run_after_ingest(), name="kpiguard-tripwire-ingest")]
    if interval > 0:
        tasks.append(asyncio.create_task(evaluator.run_schedule(interval), name="kpiguard-tripwire-schedule"))
    try:
        yield evaluator
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
