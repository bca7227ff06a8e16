"""What the runner does after an evaluation (decide): latch, mirror, re-arm and the notes; pure, without a database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from kpiguard.tripwire import Guard, Policy, WindowStats, evaluate
from kpiguard.tripwire._runner import decide

POLICY = Policy("WHOLESALE", "contract_rate", window_events=10, baseline_events=40, min_events_to_enforce=10,
                guard=Guard.NONE)
DROPPED = evaluate(POLICY, WindowStats(10, 5.0, 5.0), WindowStats(40, 38.0, 38.0))
STEADY = evaluate(POLICY, WindowStats(10, 9.0, 9.0), WindowStats(40, 38.0, 38.0))
SINCE = datetime(2026, 1, 13, 16, 32, tzinfo=UTC)


def state(triggered: bool = False, rearm_after_id: int | None = None) -> dict[str, Any]:
    """A state row's columns as a round reads them."""
    return {"id": 1, "domain": "WHOLESALE", "metric": "contract_rate", "triggered": triggered,
            "last_triggered_at": SINCE if triggered else None, "rearm_after_id": rearm_after_id}


def test_a_triggered_evaluation_of_an_untriggered_state_latches():
    """A drop past the threshold on an armed, acting policy asks for the latch and leaves triggered to it."""
    step = decide(POLICY, state(), DROPPED, 0)
    assert DROPPED.triggered and step.latch and step.armed and step.triggered is None
    assert step.note == DROPPED.note and not step.clear_rearm


def test_an_already_latched_state_is_not_latched_again():
    """A state that is triggered keeps its flag and is not latched (nor acted on) again."""
    step = decide(POLICY, state(triggered=True), DROPPED, 0)
    assert not step.latch and step.triggered is None and step.note == DROPPED.note


def test_a_latched_state_stays_triggered_while_the_window_recovers():
    """A recovered window does not clear the latch; the note says since when it is latched."""
    step = decide(POLICY, state(triggered=True), STEADY, 0)
    assert not step.latch and step.triggered is None
    assert step.note == f"TRIGGERED (latched since 2026-01-13T16:32:00Z); now {STEADY.note}"


def test_dry_run_and_disabled_policies_mirror_the_verdict_without_latching():
    """A policy that does not act writes the verdict into triggered itself and says why it did not act."""
    for policy, why in ((dataclasses.replace(POLICY, dry_run=True), "(dry_run: not enforced)"),
                        (dataclasses.replace(POLICY, enabled=False), "(policy disabled: not enforced)")):
        step = decide(policy, state(), DROPPED, 0)
        assert not step.latch and step.triggered is True and step.note == f"{DROPPED.note} {why}"
        assert decide(policy, state(triggered=True), STEADY, 0).triggered is False


def test_re_arming_waits_for_min_events_new_events():
    """After a re-enable the policy neither latches nor acts until min_events_to_enforce new events arrived."""
    waiting = decide(POLICY, state(rearm_after_id=99), DROPPED, 9)
    assert not waiting.latch and not waiting.armed and not waiting.clear_rearm
    assert waiting.note == f"REARMING 9/10 new events; {DROPPED.note}"
    armed = decide(POLICY, state(rearm_after_id=99), DROPPED, 10)
    assert armed.latch and armed.armed and armed.clear_rearm and armed.note == DROPPED.note
