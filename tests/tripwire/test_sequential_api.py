"""guard: sequential and combined through the API and the database, on SQLite and PostgreSQL: state carried, reset."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from kpiguard.client._demo import outcomes as successes
from kpiguard.db.models import RegressionState
from kpiguard.keys import SESSIONS
from kpiguard.tripwire import Guard, Policy
from kpiguard.tripwire._sequential import BACKSTOP_BOUNDARY, FRESH, boundary, play
from kpiguard.tripwire._sequential_state import MAX_FOLD_EVENTS

BATCH = "/api/v1/kpi-events"
UPSERT = "/api/governance/regression/policies/upsert"
EVALUATE = "/api/governance/regression/evaluate"
STATE = "/api/governance/regression/state"
RESERVE = "/api/governance/risk/check-and-reserve"
POLICY = Policy("WHOLESALE", "contract_rate", guard=Guard.SEQUENTIAL)
KEY = {"domain": "WHOLESALE", "metric": "contract_rate"}


async def send(client: TestClient, outcomes: list[bool]) -> None:
    """Ingest the outcomes in one batch, in order."""
    resp = await client.post(BATCH, json=[{**KEY, "success": s} for s in outcomes])
    assert resp.status == 201, await resp.text()


async def evaluate(client: TestClient) -> dict[str, Any]:
    """Evaluate the contract_rate policy through the API."""
    resp = await client.post(EVALUATE, json=KEY)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def stored(client: TestClient) -> RegressionState:
    """The contract_rate state row as stored."""
    async with client.app[SESSIONS]() as session:
        stmt = select(RegressionState).where(RegressionState.domain == "WHOLESALE",
                                             RegressionState.metric == "contract_rate")
        return (await session.execute(stmt)).scalar_one()


async def settle(client: TestClient, events: int) -> None:
    """Wait until the after-ingest evaluator has folded every event up to id ``events``."""
    for _ in range(200):
        await evaluate(client)
        if (await stored(client)).cusum_last_event_id == events:
            return
        await asyncio.sleep(0.01)
    pytest.fail("the CUSUM did not catch up with the events")


async def test_testing_flow_with_the_sequential_guard(client):
    """Good events: not triggered, evidence reported; the 20% window: triggered 0.789 and throttled; re-enable resets."""
    resp = await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "sequential"})
    assert resp.status == 200 and (await resp.json())["policy"]["guard"] == "sequential"
    await evaluate(client)  # no events yet: every event to come is folded
    await send(client, successes(200, 0.95))
    body = await evaluate(client)
    assert body["triggered"] is False and body["note"].startswith("OK drop=")
    evidence = body["evidence"]
    assert set(evidence) == {"statistic", "boundary", "reference", "level"}
    assert evidence["boundary"] == pytest.approx(boundary(3e-6))
    assert 0.9 < evidence["reference"] < 1.0 and evidence["level"] < evidence["reference"]
    assert evidence["statistic"] < evidence["boundary"]
    await send(client, successes(50, 0.20))
    await settle(client, 250)
    body = await evaluate(client)
    assert body["triggered"] is True and body["drop_fraction"] == 0.789
    assert body["evidence"]["statistic"] >= body["evidence"]["boundary"]
    state = (await (await client.get(STATE)).json())
    entry = next(s for s in state if s["metric"] == "contract_rate")
    assert entry["evidence"]["statistic"] >= entry["evidence"]["boundary"]
    check = await client.post(RESERVE, json={"engine": "WHOLESALE", "amount": 1})
    assert (await check.json())["reason"] == "policy_disabled"
    # The same statistic as folding the same events in memory, one by one.
    expected = play(POLICY, [1.0 if s else 0.0 for s in successes(200, 0.95) + successes(50, 0.20)])
    assert (await stored(client)).cusum_statistic == pytest.approx(expected.statistic)
    # Re-enable: the statistic restarts at 0 and folds only the events after the fix.
    resp = await client.post(UPSERT, json={**KEY, "enabled": True, "changed_by": "bryan", "reason": "fixed"})
    assert (await resp.json())["released"]
    row = await stored(client)
    assert row.cusum_statistic == 0.0 and row.cusum_reference is None and row.cusum_last_event_id == 250
    body = await evaluate(client)
    assert body["triggered"] is False and body["note"].startswith("REARMING 0/50")
    assert body["evidence"]["statistic"] == 0.0
    await send(client, successes(60, 0.95))
    await settle(client, 310)
    body = await evaluate(client)
    assert body["triggered"] is False and body["evidence"]["statistic"] < body["evidence"]["boundary"]


async def test_state_is_the_same_whatever_the_batches(client):
    """Events folded over several evaluations give the statistic of folding them one by one."""
    await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "sequential", "dry_run": True})
    await evaluate(client)
    outcomes = successes(230, 0.9) + successes(40, 0.55) + successes(17, 0.3) + successes(80, 0.9)
    done = 0
    for size in (230, 1, 39, 17, 80):
        await send(client, outcomes[done : done + size])
        done += size
        await settle(client, done)
        expected = play(POLICY, [1.0 if s else 0.0 for s in outcomes[:done]])
        assert (await stored(client)).cusum_statistic == pytest.approx(expected.statistic), done


async def test_a_large_batch_folds_only_the_newest_events(client):
    """One batch of more than MAX_FOLD_EVENTS events: the read is bounded, the newest MAX_FOLD_EVENTS are folded."""
    await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "sequential", "dry_run": True})
    await evaluate(client)
    total = MAX_FOLD_EVENTS + 300
    outcomes = successes(total - 100, 0.95) + successes(100, 0.6)
    await send(client, outcomes)
    await settle(client, total)
    values = [1.0 if s else 0.0 for s in outcomes]
    expected = play(POLICY, values, FRESH, total - MAX_FOLD_EVENTS)
    assert (await stored(client)).cusum_statistic == pytest.approx(expected.statistic)


async def test_switching_guard_clears_the_cusum(client):
    """A policy leaving the sequential guard keeps no CUSUM; coming back starts fresh at the recent window."""
    await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "sequential", "dry_run": True})
    await send(client, successes(250, 0.95))
    await evaluate(client)
    assert (await stored(client)).cusum_last_event_id == 250
    await client.post(UPSERT, json={**KEY, "guard": "evidence"})
    row = await stored(client)
    assert row.cusum_statistic is None and row.cusum_last_event_id is None
    body = await evaluate(client)
    assert set(body["evidence"]) == {"p_value", "confidence", "drop_low", "drop_high"}
    await client.post(UPSERT, json={**KEY, "guard": "sequential"})
    await evaluate(client)
    row = await stored(client)
    # Fresh: it folded the recent window of 50 events, each against its own baseline.
    values = [1.0 if s else 0.0 for s in successes(250, 0.95)]
    assert row.cusum_last_event_id == 250
    assert row.cusum_statistic == pytest.approx(play(POLICY, values, FRESH, 200).statistic)


async def test_evaluate_all_folds_sequential_policies(client):
    """An evaluate of every enabled policy reports the sequential guard's evidence (folded, not bulk-evaluated)."""
    await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "sequential", "dry_run": True})
    await send(client, successes(250, 0.95))
    body = await (await client.post(EVALUATE, json={})).json()
    (verdict,) = body
    assert set(verdict["evidence"]) == {"statistic", "boundary", "reference", "level"}
    assert (await stored(client)).cusum_last_event_id == 250


async def test_evaluate_all_shares_the_round_once_the_cusum_is_up_to_date(client):
    """With nothing new to fold, evaluate-all evaluates a sequential policy in its shared round (no fold read), with
    the verdict evaluating it alone gives; after new events it folds them first."""
    from sqlalchemy import event

    from kpiguard.keys import ENGINE

    await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "sequential", "dry_run": True})
    await send(client, successes(250, 0.95) + successes(30, 0.6))
    await settle(client, 280)
    folds: list[str] = []
    singles: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if "cusum_statistic" in statement and statement.lstrip().upper().startswith("UPDATE"):
            folds.append(statement)
        if "pol.domain = " in statement or "regression_policy.domain = " in statement:
            singles.append(statement)  # a read of one policy: evaluate_one's

    sync_engine = client.app[ENGINE].sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        (shared,) = await (await client.post(EVALUATE, json={})).json()
        assert singles == []  # evaluated in the shared round, not handed to evaluate_one
        alone = await evaluate(client)
        assert singles  # the single-policy evaluate reads one policy
        assert folds == []  # up to date: neither folded, so neither wrote the CUSUM
        await send(client, successes(5, 0.0))
        await settle(client, 285)
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    for key in ("triggered", "drop_fraction", "evidence", "note"):
        assert shared[key] == alone[key], key
    assert shared["evidence"]["statistic"] > 0
    assert folds  # the new events were folded
    row = await stored(client)
    values = [1.0 if s else 0.0 for s in successes(250, 0.95) + successes(30, 0.6) + successes(5, 0.0)]
    assert row.cusum_statistic == pytest.approx(play(POLICY, values, FRESH, 200).statistic)


async def test_folding_the_events_of_an_ingest_reads_them_once_and_writes_once(client, monkeypatch):
    """A fold of the few events one ingest adds reads the pair's newest events in one statement (the windows plus a
    read-ahead), not once for the windows and again for the new events' baselines; and the evaluation writes its
    state and the folded CUSUM in one UPDATE."""
    from sqlalchemy import event

    from kpiguard.keys import ENGINE
    from kpiguard.tripwire import _sequential_state

    await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "sequential", "dry_run": True})
    await send(client, successes(250, 0.95))
    await settle(client, 250)
    reads: list[str] = []
    folds: list[str] = []
    evaluations: list[str] = []
    writes: list[str] = []
    raw_rows = getattr(_sequential_state, "sqlite_rows", None)

    async def counted(session, stmt, params):  # type: ignore[no-untyped-def]
        reads.append("raw")  # SQLite's fold read goes straight to aiosqlite, past SQLAlchemy's events
        return await raw_rows(session, stmt, params)

    def record(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        text = " ".join(statement.split())
        if text.startswith("SELECT kpi_event.id, kpi_event.success, kpi_event.value FROM kpi_event"):
            reads.append(text)
        if text.upper().startswith("UPDATE REGRESSION_STATE"):
            writes.append(text)
            if "cusum_statistic" in text:
                folds.append(text)
        if "pol.domain = " in text or "regression_policy.domain = " in text:
            evaluations.append(text)  # evaluate_one's read of its policy

    monkeypatch.setattr(_sequential_state, "sqlite_rows", counted, raising=False)
    sync_engine = client.app[ENGINE].sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        await send(client, successes(3, 0.0))
        await settle(client, 253)
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    assert folds and len(reads) == len(folds)
    assert len(writes) == len(evaluations)  # one state write an evaluation, folded or not
    row = await stored(client)
    values = [1.0 if s else 0.0 for s in successes(250, 0.95) + successes(3, 0.0)]
    assert row.cusum_statistic == pytest.approx(play(POLICY, values, FRESH, 200).statistic)


async def test_events_stored_out_of_id_order_do_not_keep_evaluate_all_folding(client):
    """Events with higher ids but older times than the newest (two writers at once) fold nothing, and evaluate-all
    keeps sharing its round: the check is the newest event's id, not any id above the last folded."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import event

    from kpiguard.keys import ENGINE

    start = datetime(2026, 1, 13, tzinfo=UTC)

    def at(outcomes: list[bool], first: int) -> list[dict[str, Any]]:
        return [{**KEY, "success": s, "created_at": (start + timedelta(seconds=first + i)).isoformat()}
                for i, s in enumerate(outcomes)]

    await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "sequential", "dry_run": True})
    assert (await client.post(BATCH, json=at(successes(250, 0.95), 0))).status == 201
    await settle(client, 250)
    # ids 251-255, stamped between the 241st and the 246th event: inside the recent window, not the newest
    late = [{**e, "created_at": (start + timedelta(seconds=240.5 + i)).isoformat()}
            for i, e in enumerate(at([True] * 5, 0))]
    assert (await client.post(BATCH, json=late)).status == 201
    await evaluate(client)
    assert (await stored(client)).cusum_last_event_id == 250  # the newest event is id 250: nothing to fold
    singles: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if "pol.domain = " in statement or "regression_policy.domain = " in statement:
            singles.append(statement)

    sync_engine = client.app[ENGINE].sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        for _ in range(2):
            assert (await client.post(EVALUATE, json={})).status == 200
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    assert singles == []


async def test_unknown_guard_lists_the_choices(client):
    """An unknown guard is a 422 naming the field and listing none, evidence, sequential and combined."""
    resp = await client.post(UPSERT, json={**KEY, "guard": "cusum"})
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["field"] == "guard"
    assert sorted(error["choices"]) == ["combined", "evidence", "none", "sequential"]


# --- guard: combined: the window test with a CUSUM backstop, whose state carries the same way ---------------

COMBINED = Policy("WHOLESALE", "contract_rate", guard=Guard.COMBINED)


async def test_combined_guard_reports_both_parts_and_stores_its_backstop(client):
    """Good events: OK with the window test's and the backstop's evidence; the 20% window triggers; re-enable resets."""
    resp = await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "combined"})
    assert resp.status == 200 and (await resp.json())["policy"]["guard"] == "combined"
    await evaluate(client)
    await send(client, successes(200, 0.95))
    body = await evaluate(client)
    assert body["triggered"] is False and body["note"].startswith("OK drop=")
    assert set(body["evidence"]) == {"p_value", "confidence", "drop_low", "drop_high", "statistic", "boundary",
                                     "reference", "level"}
    assert body["evidence"]["boundary"] == BACKSTOP_BOUNDARY
    await send(client, successes(50, 0.20))
    await settle(client, 250)
    body = await evaluate(client)
    assert body["triggered"] is True and body["drop_fraction"] == 0.789
    # The backstop folded every event as play() does, the ratio summed since its reference included.
    expected = play(COMBINED, [1.0 if s else 0.0 for s in successes(200, 0.95) + successes(50, 0.20)])
    row = await stored(client)
    assert row.cusum_statistic == pytest.approx(expected.statistic)
    assert row.cusum_total == pytest.approx(expected.total)
    resp = await client.post(UPSERT, json={**KEY, "enabled": True, "changed_by": "bryan", "reason": "fixed"})
    assert (await resp.json())["released"]
    row = await stored(client)
    assert row.cusum_statistic == 0.0 and row.cusum_total == 0.0 and row.cusum_reference is None


async def test_combined_state_is_the_same_whatever_the_batches(client):
    """The backstop folded over several evaluations gives the statistic and sum of folding the events one by one."""
    await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "combined", "dry_run": True})
    await evaluate(client)
    outcomes = successes(230, 0.9) + successes(40, 0.7) + successes(17, 0.5) + successes(300, 0.9)
    done = 0
    for size in (230, 1, 39, 17, 300):
        await send(client, outcomes[done : done + size])
        done += size
        await settle(client, done)
        expected = play(COMBINED, [1.0 if s else 0.0 for s in outcomes[:done]])
        row = await stored(client)
        assert (row.cusum_statistic, row.cusum_total) == (
            pytest.approx(expected.statistic), pytest.approx(expected.total)), done
        assert row.cusum_reference == pytest.approx(expected.reference.value if expected.reference else None)


async def test_a_sequential_row_stored_without_the_sum_reads_it_from_its_statistic(client):
    """A CUSUM stored before cusum_total existed (null) folds on as if the sum were its statistic."""
    await client.post(UPSERT, json={**KEY, "enabled": True, "guard": "sequential", "dry_run": True})
    await evaluate(client)
    outcomes = successes(250, 0.95) + successes(20, 0.7)
    await send(client, outcomes[:260])
    await settle(client, 260)
    async with client.app[SESSIONS]() as session, session.begin():
        stmt = select(RegressionState).where(RegressionState.metric == "contract_rate")
        (await session.execute(stmt)).scalar_one().cusum_total = None
    await send(client, outcomes[260:])
    await settle(client, 270)
    expected = play(POLICY, [1.0 if s else 0.0 for s in outcomes])
    assert (await stored(client)).cusum_statistic == pytest.approx(expected.statistic)
