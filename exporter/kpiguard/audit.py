"""The audit trail: every policy change and every enforcement action, with who, when, why and the states."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kpiguard.db._types import utcnow
from kpiguard.db.models import AuditEvent


class Source(enum.StrEnum):
    """Where a change came from."""

    API = "api"
    EVALUATOR = "evaluator"
    ALERTMANAGER = "alertmanager"
    CLI = "cli"
    MIGRATION = "migration"  # a schema migration that changed data (the seed policies' default guard)


class Kind(enum.StrEnum):
    """What sort of entry it is."""

    POLICY_CHANGE = "policy_change"
    RISK_POLICY_CHANGE = "risk_policy_change"
    ENFORCEMENT = "enforcement"
    RELEASE = "release"
    ALERT = "alert"


def record(
    session: AsyncSession,
    *,
    kind: Kind,
    source: Source,
    action: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
    domain: str | None = None,
    metric: str | None = None,
    engine: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one audit entry to the session's transaction, so it commits or rolls back with the change."""
    entry = AuditEvent(
        created_at=utcnow(), kind=kind.value, source=source.value, action=action, actor=actor, reason=reason,
        domain=domain, metric=metric, engine=engine, before=before, after=after, detail=detail,
    )
    session.add(entry)
    return entry


def to_json(entry: AuditEvent) -> dict[str, Any]:
    """An audit entry as a JSON object."""
    return {c: getattr(entry, c) for c in (
        "id", "created_at", "kind", "action", "source", "actor", "reason", "domain", "metric", "engine",
        "before", "after", "detail",
    )}
