"""THROTTLE, KILL_SWITCH and their release: the one place both engines (evaluator, Alertmanager) act through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kpiguard import audit
from kpiguard.enforcement._golive import set_kill_switch
from kpiguard.enforcement._risk import set_engine_enabled
from kpiguard.tripwire import Action


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an enforcement call did."""

    action: str
    changed: bool
    audit_id: int | None


def throttle_reason(domain: str, metric: str, drop_fraction: float | None) -> str:
    """The seed's reason text: ``Regression tripwire: WHOLESALE.contract_rate drop=21%``."""
    drop = "n/a" if drop_fraction is None else f"{drop_fraction * 100:.0f}%"
    return f"Regression tripwire: {domain}.{metric} drop={drop}"


def kill_reason(domain: str, metric: str, drop_fraction: float | None) -> str:
    """The seed's reason text: ``Regression: CAPITAL.roi_event drop=35%``."""
    drop = "n/a" if drop_fraction is None else f"{drop_fraction * 100:.0f}%"
    return f"Regression: {domain}.{metric} drop={drop}"


async def enforce(
    session: AsyncSession, action: Action, *, domain: str, metric: str, reason: str, actor: str | None,
    source: audit.Source, detail: dict[str, Any] | None = None,
) -> Outcome:
    """Execute ``action`` for (domain, metric) and audit it once, even if the target was already in that state.

    THROTTLE disables the risk policy of the engine named by ``domain``; KILL_SWITCH engages the global switch.
    """
    if action is Action.THROTTLE:
        changed, before = await set_engine_enabled(session, domain, False, reason=reason, actor=actor)
        after = {"enabled": False, "reason": reason if changed else before["reason"]}
    else:
        changed, before = await set_kill_switch(session, True, reason=reason, actor=actor, source=source.value)
        after = {"kill_switch_engaged": True, "reason": reason if changed else before["reason"]}
    entry = audit.record(
        session, kind=audit.Kind.ENFORCEMENT, source=source, action=action.value, actor=actor, reason=reason,
        domain=domain, metric=metric, engine=domain if action is Action.THROTTLE else None,
        before=before, after=after, detail={**(detail or {}), "changed": changed},
    )
    await session.flush()
    return Outcome(action.value, changed, entry.id)


async def release(
    session: AsyncSession, action: Action, *, domain: str, metric: str | None, reason: str, actor: str | None,
    source: audit.Source, detail: dict[str, Any] | None = None,
) -> Outcome:
    """Undo ``action``: re-enable the engine, or release the kill switch; audited only if something changed."""
    if action is Action.THROTTLE:
        changed, before = await set_engine_enabled(session, domain, True, reason=reason, actor=actor)
        after: dict[str, Any] = {"enabled": True, "reason": reason}
        name = "RELEASE_THROTTLE"
    else:
        changed, before = await set_kill_switch(session, False, reason=reason, actor=actor, source=source.value)
        after = {"kill_switch_engaged": False, "reason": reason}
        name = "RELEASE_KILL_SWITCH"
    if not changed:
        return Outcome(name, False, None)
    entry = audit.record(
        session, kind=audit.Kind.RELEASE, source=source, action=name, actor=actor, reason=reason, domain=domain,
        metric=metric, engine=domain if action is Action.THROTTLE else None, before=before, after=after,
        detail=detail,
    )
    await session.flush()
    return Outcome(name, True, entry.id)
