"""Applying a declarative policies file to the database: idempotent, with a diff, optionally dry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpiguard import audit
from kpiguard.tripwire._policy import Policy
from kpiguard.tripwire._store import POLICY_FIELDS, list_policies, policy_from_row, upsert_policy

# Fields a file sets; who and why are taken from the file when given, never diffed.
_DIFFED = tuple(f for f in POLICY_FIELDS if f not in ("domain", "metric", "changed_by", "reason"))


@dataclass(frozen=True)
class PolicyChange:
    """What applying one policy does: create, update (with the fields) or nothing."""

    domain: str
    metric: str
    kind: str  # "create" | "update" | "unchanged"
    fields: dict[str, tuple[Any, Any]]

    def describe(self) -> str:
        """One line, or several, for a person reading the diff."""
        head = {"create": "+", "update": "~", "unchanged": "="}[self.kind]
        line = f"{head} {self.domain}.{self.metric}"
        if self.kind == "create":
            return line + " (new)"
        if self.kind == "unchanged":
            return line + " unchanged"
        return line + "".join(f"\n    {k}: {_show(b)} -> {_show(a)}" for k, (b, a) in self.fields.items())


def _show(value: Any) -> str:
    return str(getattr(value, "value", value))


def plan(current: Sequence[Policy], wanted: Sequence[Policy]) -> list[PolicyChange]:
    """The changes that turn ``current`` into ``wanted`` for the policies the file names (pure)."""
    by_key = {p.key: p for p in current}
    changes = []
    for p in wanted:
        now = by_key.get(p.key)
        if now is None:
            changes.append(PolicyChange(p.domain, p.metric, "create", {}))
            continue
        diff = {f: (getattr(now, f), getattr(p, f)) for f in _DIFFED if getattr(now, f) != getattr(p, f)}
        changes.append(PolicyChange(p.domain, p.metric, "update" if diff else "unchanged", diff))
    return changes


async def apply_policies(
    sessions: async_sessionmaker[AsyncSession], wanted: Sequence[Policy], *, dry_run: bool, actor: str | None,
) -> list[PolicyChange]:
    """Apply the file's policies in one transaction (rolled back for a dry run); returns the plan."""
    async with sessions() as session:
        async with session.begin():
            current = [policy_from_row(r) for r in await list_policies(session)]
            changes = plan(current, wanted)
            by_key = {p.key: p for p in wanted}
            for change in changes:
                if change.kind == "unchanged":
                    continue
                policy = by_key[(change.domain, change.metric)]
                fields = (
                    {f: getattr(policy, f) for f in _DIFFED}
                    if change.kind == "create" else {f: after for f, (_, after) in change.fields.items()}
                )
                fields["changed_by"] = policy.changed_by or actor
                if policy.reason is not None:
                    fields["reason"] = policy.reason
                await upsert_policy(session, policy.domain, policy.metric, fields, source=audit.Source.CLI)
            if dry_run:
                await session.rollback()
    return changes


def export_policies_from(rows: Sequence[Any]) -> list[Policy]:
    """Policies from database rows, for ``kpiguard policies export``."""
    return [policy_from_row(r) for r in rows]
