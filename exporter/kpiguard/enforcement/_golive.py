"""The global go-live state and its kill switch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kpiguard.db._types import utcnow
from kpiguard.db.models import GoLiveState


@dataclass(frozen=True, slots=True)
class GoLive:
    """A snapshot of the go-live state."""

    kill_switch_engaged: bool
    reason: str | None
    changed_by: str | None
    source: str | None
    changed_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        return {
            "kill_switch_engaged": self.kill_switch_engaged, "reason": self.reason,
            "changed_by": self.changed_by, "source": self.source, "changed_at": self.changed_at,
        }


async def _row(session: AsyncSession, *, lock: bool = False) -> GoLiveState:
    stmt = select(GoLiveState).where(GoLiveState.id == 1)
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:  # the migration inserts it; recreate it if someone deleted it
        row = GoLiveState(id=1, kill_switch_engaged=False)
        session.add(row)
        await session.flush()
    return row


async def read_state(session: AsyncSession) -> GoLive:
    """The current go-live state."""
    row = await _row(session)
    return GoLive(row.kill_switch_engaged, row.reason, row.changed_by, row.source, row.changed_at)


async def set_kill_switch(
    session: AsyncSession, engaged: bool, *, reason: str, actor: str | None, source: str,
) -> tuple[bool, dict[str, Any]]:
    """Engage or release the kill switch; returns (changed, state before). The caller audits."""
    row = await _row(session, lock=True)
    before = {"kill_switch_engaged": row.kill_switch_engaged, "reason": row.reason}
    if row.kill_switch_engaged == engaged:
        return False, before
    row.kill_switch_engaged = engaged
    row.reason = reason
    row.changed_by = actor
    row.source = source
    row.changed_at = utcnow()
    await session.flush()
    return True, before
