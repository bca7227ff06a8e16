"""Whether a request of an execution class may run: the decision behind the gate and the middleware."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kpiguard.db.models import RiskPolicy
from kpiguard.enforcement._golive import read_state

PROD_EXEC = "PROD_EXEC"


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The answer for one (engine, execution class)."""

    allowed: bool
    reason: str | None
    engine: str | None
    exec_class: str
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The 403 body: the usual error shape with the reason as its code."""
        return {"error": {"code": self.reason, "message": self.detail, "field": None},
                "engine": self.engine, "class": self.exec_class}


def decide_from(kill_switch_engaged: bool, kill_reason: str | None, engine: str | None,
                engine_enabled: bool | None, engine_reason: str | None, exec_class: str) -> GateDecision:
    """The pure rule: only PROD_EXEC is gated; the kill switch stops all of it, a throttled or unknown engine its own."""
    if exec_class != PROD_EXEC:
        return GateDecision(True, None, engine, exec_class)
    if kill_switch_engaged:
        return GateDecision(False, "kill_switch_engaged", engine, exec_class, kill_reason)
    if engine is None:
        return GateDecision(True, None, engine, exec_class)
    if engine_enabled is None:
        return GateDecision(False, "unknown_engine", engine, exec_class, f"no risk policy for engine {engine}")
    if not engine_enabled:
        return GateDecision(False, "policy_disabled", engine, exec_class, engine_reason)
    return GateDecision(True, None, engine, exec_class)


async def decide(session: AsyncSession, engine: str | None, exec_class: str) -> GateDecision:
    """Read the go-live state and the engine's risk policy and decide."""
    state = await read_state(session)
    policy = await session.get(RiskPolicy, engine) if engine else None
    return decide_from(
        state.kill_switch_engaged, state.reason, engine,
        None if policy is None else policy.enabled, None if policy is None else policy.reason, exec_class,
    )
