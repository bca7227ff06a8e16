"""Running the tripwire: read windows, evaluate, store the state, enforce once; after ingest and on a schedule."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpiguard import audit, enforcement
from kpiguard.db._types import utcnow
from kpiguard.db.models import RegressionPolicy, RegressionState
from kpiguard.ingest import StoredEvent
from kpiguard.metrics import Metrics
from kpiguard.tripwire._evaluate import Evaluation, evaluate
from kpiguard.tripwire._policy import Action, Guard, Policy
from kpiguard.tripwire._sequential_state import fold_new_events
from kpiguard.tripwire._store import (
    get_policy_row,
    get_state_row,
    latch_trigger,
    list_policies,
    list_states,
    newest_events,
    policy_from_row,
    state_json,
    window_stats_many,
)
from kpiguard.tripwire._window import event_value, split_windows

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

    def __init__(self, sessions: async_sessionmaker[AsyncSession], metrics: Metrics, *, enforce: bool) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._enforce = enforce
        self._watched: set[tuple[str, str]] = set()
        self._pending: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()

    # --- evaluation ---

    async def evaluate_one(self, domain: str, metric: str, *, actor: str | None, source: audit.Source) -> Verdict:
        """Evaluate one policy in one transaction; NotFound if there is none."""
        async with self._sessions() as session, session.begin():
            row = await get_policy_row(session, domain, metric)
            verdict = await self._evaluate(session, row, actor=actor, source=source)
        if verdict.enforced is not None:
            await self.refresh_enforcement_gauges()
        return verdict

    async def evaluate_all(self, *, actor: str | None, source: audit.Source) -> list[Verdict]:
        """Evaluate every enabled policy; those that enforce nothing share one transaction and one window query.

        A policy that would enforce (or is re-arming, or has no state row yet) is evaluated again by
        :meth:`evaluate_one` in its own transaction, so that an action runs exactly as it does after ingest.
        """
        start = time.perf_counter()
        verdicts: dict[tuple[str, str], Verdict] = {}
        alone: list[tuple[str, str]] = []
        async with self._sessions() as session, session.begin():
            policies = [policy_from_row(r) for r in await list_policies(session) if r.enabled]
            keys = [p.key for p in policies]
            self._watched = set(keys)
            # Profiled: one transaction and five round trips per policy bounded evaluate-all at a few
            # hundred policies a second; one query for every window keeps it flat in the policy count.
            windows = await window_stats_many(session, policies)
            if windows is None:
                alone = keys
            else:
                states = {(s.domain, s.metric): s for s in await list_states(session)}
                now = utcnow()
                for policy in policies:
                    state = states.get(policy.key)
                    ev = evaluate(policy, *windows[policy.key])
                    # The sequential guard folds the new events into its stored CUSUM: that takes evaluate_one.
                    if (state is None or state.rearm_after_id is not None or (ev.triggered and not policy.dry_run)
                            or policy.guard is Guard.SEQUENTIAL):
                        alone.append(policy.key)
                        continue
                    note = _quiet_note(policy, state, ev, ev.note, armed=True)
                    _copy(state, ev, note, now)
                    self._export(policy, ev, state)
                    self._metrics.evaluations.labels(_result(ev, True)).inc()
                    verdicts[policy.key] = Verdict(policy, ev, state_json(state, policy), None)
        if verdicts:
            each = (time.perf_counter() - start) / len(verdicts)
            observe = self._metrics.evaluation_duration.labels(source.value).observe
            for _ in verdicts:
                observe(each)
        for domain, metric in alone:
            verdicts[(domain, metric)] = await self.evaluate_one(domain, metric, actor=actor, source=source)
        return [verdicts[k] for k in keys]

    async def _evaluate(self, session: AsyncSession, row: RegressionPolicy, *, actor: str | None,
                        source: audit.Source) -> Verdict:
        start = time.perf_counter()
        policy = policy_from_row(row)
        rows = await newest_events(session, policy)
        values = [event_value(policy.aggregation, r.success, r.value) for r in rows]
        recent, baseline = split_windows(values, policy.window_events, policy.baseline_events)
        state = await get_state_row(session, policy.domain, policy.metric)
        ev = evaluate(policy, recent, baseline, await fold_new_events(session, policy, state, rows))
        now = utcnow()
        note = ev.note
        armed = True
        seen_rearm = state.rearm_after_id
        if state.rearm_after_id is not None:
            fresh = sum(1 for r in rows if r.id > state.rearm_after_id)
            armed = fresh >= policy.min_events_to_enforce
            if armed:
                state.rearm_after_id = None
            else:
                note = f"REARMING {fresh}/{policy.min_events_to_enforce} new events; {ev.note}"
        acts = policy.enabled and not policy.dry_run
        enforced: enforcement.Outcome | None = None
        if ev.triggered and armed and acts:
            if await latch_trigger(session, policy.domain, policy.metric, now, seen_rearm=seen_rearm):
                await session.refresh(state)
                enforced = await self._act(session, policy, ev, actor=actor, source=source)
        else:
            note = _quiet_note(policy, state, ev, note, armed=armed)
        _copy(state, ev, note, now)
        self._export(policy, ev, state)
        self._metrics.evaluations.labels(_result(ev, armed)).inc()
        self._metrics.evaluation_duration.labels(source.value).observe(time.perf_counter() - start)
        return Verdict(policy, ev, state_json(state, policy), enforced)

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

    def _export(self, policy: Policy, ev: Evaluation, state: RegressionState) -> None:
        m = self._metrics
        if not m.labels.admit(policy.domain, policy.metric, 0):
            return
        labels = (policy.domain, policy.metric)
        if ev.current is not None:
            m.regression_current.labels(*labels).set(ev.current)
        if ev.baseline is not None:
            m.regression_baseline.labels(*labels).set(ev.baseline)
        if ev.drop_fraction is not None:
            m.regression_drop.labels(*labels).set(ev.drop_fraction)
        m.regression_threshold.labels(*labels).set(policy.max_drop_fraction)
        m.regression_min_events.labels(*labels).set(policy.min_events_to_enforce)
        m.regression_window_events.labels(*labels, "recent").set(ev.recent_events)
        m.regression_window_events.labels(*labels, "baseline").set(ev.baseline_events)
        m.regression_triggered.labels(*labels).set(1 if state.triggered else 0)
        # What the generated count-window alert reads, so that Alertmanager acts on the guard's verdict too
        # (a re-arming state still has rearm_after_id: the same bad windows do not fire again).
        m.regression_firing.labels(*labels).set(1 if ev.triggered and state.rearm_after_id is None else 0)

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


def _quiet_note(policy: Policy, state: RegressionState, ev: Evaluation, note: str, *, armed: bool) -> str:
    """The note of an evaluation that enforces nothing; a policy that does not act mirrors the verdict in the state."""
    acts = policy.enabled and not policy.dry_run
    if not policy.enabled:
        note += " (policy disabled: not enforced)"
    elif policy.dry_run:
        note += " (dry_run: not enforced)"
    if state.triggered and acts:
        # Latched until a person re-enables: a recovering window does not clear the trip.
        when = f"{state.last_triggered_at:%Y-%m-%dT%H:%M:%SZ}" if state.last_triggered_at else "?"
        return f"TRIGGERED (latched since {when}); now {note}"
    if not acts:
        state.triggered = ev.triggered and armed
    return note


def _copy(state: RegressionState, ev: Evaluation, note: str, now: Any) -> None:
    state.baseline = ev.baseline
    state.current = ev.current
    state.drop_fraction = ev.drop_fraction
    state.recent_events = ev.recent_events
    state.baseline_events = ev.baseline_events
    state.evidence = ev.evidence
    state.last_checked_at = now
    state.note = note[:1024]


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
