"""The evaluation's database reads and writes on SQLite and PostgreSQL: windows summed in SQL, the latch."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, update

from kpiguard import audit
from kpiguard.db.models import KpiEvent, RegressionState
from kpiguard.keys import SESSIONS
from kpiguard.tripwire import Aggregation, Policy, event_value, split_windows
from kpiguard.tripwire._sequential_state import newest_events
from kpiguard.tripwire._store import latch_and_write_state, read_round, upsert_policy, write_states

# (domain, metric, window, baseline, aggregation, events): fewer events than the windows, exactly
# enough, more; a mean policy whose events carry no value half the time.
CASES = (
    ("W", "few", 10, 40, Aggregation.SUCCESS_RATE, 30),
    ("W", "exact", 10, 40, Aggregation.SUCCESS_RATE, 50),
    ("W", "many", 7, 23, Aggregation.SUCCESS_RATE, 400),
    ("C", "roi", 5, 20, Aggregation.MEAN_VALUE, 120),
)


async def _load(client) -> dict[tuple[str, str], Policy]:
    rnd = random.Random(7)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for domain, metric, _, _, agg, n in CASES:
        for i in range(n):
            value = None if agg is Aggregation.MEAN_VALUE and rnd.random() < 0.5 else round(rnd.uniform(-50, 150), 3)
            # Several events share a timestamp: the id breaks the tie, newest first.
            rows.append({"domain": domain, "metric": metric, "success": rnd.random() < 0.8, "value": value,
                         "created_at": base + timedelta(seconds=i // 3)})
    rnd.shuffle(rows)  # inserted out of time order: ids do not follow created_at
    policies = {}
    async with client.app[SESSIONS]() as session, session.begin():
        await session.execute(insert(KpiEvent), rows)
        for domain, metric, window, baseline, agg, _ in CASES:
            result = await upsert_policy(session, domain, metric, {
                "window_events": window, "baseline_events": baseline, "min_events_to_enforce": 1,
                "aggregation": agg, "enabled": True}, source=audit.Source.API)
            policies[(domain, metric)] = result.policy
    return policies


async def _reference(session, policy: Policy, after: int | None):
    rows = await newest_events(session, policy)
    values = [event_value(policy.aggregation, r.success, r.value) for r in rows]
    recent, baseline = split_windows(values, policy.window_events, policy.baseline_events)
    fresh = 0 if after is None else sum(1 for r in rows if r.id > after)
    return recent, baseline, fresh


def _close(a, b) -> bool:
    return a.n == b.n and abs(a.total - b.total) <= 1e-9 * max(1.0, abs(b.total)) and \
        abs(a.total_sq - b.total_sq) <= 1e-9 * max(1.0, abs(b.total_sq))


async def test_round_windows_equal_the_newest_events_split(client):
    """Every enabled policy's windows, summed by the database, equal split_windows of its newest events."""
    policies = await _load(client)
    async with client.app[SESSIONS]() as session:
        rounds = await read_round(session)
        assert [r.policy.key for r in rounds] == sorted(policies)
        for r in rounds:
            assert r.policy == policies[r.policy.key]
            assert r.state is not None and r.state["triggered"] is False and r.state["rearm_after_id"] is None
            recent, baseline, fresh = await _reference(session, r.policy, None)
            assert _close(r.recent, recent) and _close(r.baseline, baseline), r.policy.key
            assert r.fresh == fresh == 0
            assert r.recent.n == min(r.policy.window_events, recent.n)


async def test_round_of_one_policy_counts_events_after_a_re_enable(client):
    """Reading one policy gives the same windows, and counts the events newer than rearm_after_id."""
    policies = await _load(client)
    key = ("W", "many")
    async with client.app[SESSIONS]() as session:
        newest = await newest_events(session, policies[key])
    after = sorted(r.id for r in newest)[len(newest) // 2]
    async with client.app[SESSIONS]() as session, session.begin():
        await session.execute(update(RegressionState).where(RegressionState.domain == "W",
                                                            RegressionState.metric == "many")
                              .values(rearm_after_id=after))
    async with client.app[SESSIONS]() as session:
        (r,) = await read_round(session, key)
        recent, baseline, fresh = await _reference(session, policies[key], after)
    assert r.state is not None and r.state["rearm_after_id"] == after
    assert _close(r.recent, recent) and _close(r.baseline, baseline)
    assert r.fresh == fresh and 0 < fresh < len(newest)


async def test_round_of_an_unknown_pair_is_empty(client):
    """A pair without a policy reads as no rounds at all."""
    async with client.app[SESSIONS]() as session:
        assert await read_round(session, ("NOPE", "m")) == []


def _write(state_id: int, *, read_rearm: int | None, clear_rearm: bool = False) -> dict:
    return {"p_id": state_id, "p_baseline": 0.9, "p_current": 0.5, "p_drop_fraction": 0.44, "p_recent_events": 10,
            "p_baseline_events": 40, "p_evidence": None, "p_last_checked_at": datetime.now(UTC), "p_note": "n",
            "p_triggered": None, "p_clear_rearm": clear_rearm, "p_read_rearm": read_rearm}


async def test_latch_flips_once_and_not_over_a_re_enable_it_did_not_read(client):
    """The latch succeeds once; an evaluation that read an older re-arm mark latches nothing and clears nothing."""
    await _load(client)
    async with client.app[SESSIONS]() as session:
        ids = {r.policy.key: r.state["id"] for r in await read_round(session)}
    sid, other = ids[("W", "few")], ids[("W", "exact")]
    now = datetime.now(UTC)
    async with client.app[SESSIONS]() as session, session.begin():
        # a re-enable set rearm_after_id = 5 after this evaluation read None
        await session.execute(update(RegressionState).where(RegressionState.id == sid).values(rearm_after_id=5))
        assert not await latch_and_write_state(session, _write(sid, read_rearm=None), now)
        # two rows: PostgreSQL writes them in one UPDATE from arrays
        await write_states(session, [_write(sid, read_rearm=None, clear_rearm=True),
                                     _write(other, read_rearm=None, clear_rearm=True)])
    async with client.app[SESSIONS]() as session, session.begin():
        (r,) = await read_round(session, ("W", "few"))
        assert r.state["rearm_after_id"] == 5 and r.state["triggered"] is False
        assert await latch_and_write_state(session, _write(sid, read_rearm=5, clear_rearm=True), now)
        assert not await latch_and_write_state(session, _write(sid, read_rearm=None), now)
    async with client.app[SESSIONS]() as session:
        (r,) = await read_round(session, ("W", "few"))
    assert r.state["triggered"] is True and r.state["rearm_after_id"] is None
