"""Executing Alertmanager notifications: THROTTLE and KILL_SWITCH through the same actions as the evaluator.

Idempotent on (fingerprint, startsAt): Alertmanager re-sends a group on every group and repeat
interval, and each alert acts at most once per firing episode. A resolved alert never executes an
action; it releases a THROTTLE only when ``auto_release_throttle`` is set, and a KILL_SWITCH never.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpiguard import audit, enforcement
from kpiguard.db._types import utcnow
from kpiguard.db.models import AlertDelivery
from kpiguard.errors import StorageError
from kpiguard.metrics import Metrics
from kpiguard.names import is_valid_name
from kpiguard.tripwire import Action
from kpiguard.tripwire._store import latch_trigger
from kpiguard.webhook._payload import Alert, Notification

log = logging.getLogger(__name__)


@dataclass
class Report:
    """What one notification did, alert by alert."""

    executed: list[dict[str, Any]] = field(default_factory=list)
    released: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    recorded: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self, total: int) -> dict[str, Any]:
        """The webhook's answer."""
        return {"alerts": total, "executed": self.executed, "released": self.released,
                "duplicates": self.duplicates, "recorded": self.recorded, "warnings": self.warnings}


class Receiver:
    """Handles notifications against the database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], metrics: Metrics, *,
                 auto_release_throttle: bool) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._auto_release = auto_release_throttle

    async def handle(self, note: Notification) -> Report:
        """Process every alert, each in its own transaction so one bad alert cannot undo another's action."""
        report = Report()
        if note.truncatedAlerts:
            msg = f"Alertmanager truncated {note.truncatedAlerts} alerts of group {note.groupKey!r}; raise max_alerts"
            log.warning(msg)
            report.warnings.append(msg)
        for alert in note.alerts:
            for attempt in (1, 2):
                try:
                    async with self._sessions() as session, session.begin():
                        await self._one(session, alert, note, report)
                    break
                except IntegrityError as exc:
                    # a concurrent delivery of the same alert won the insert: the retry sees it as a duplicate
                    if attempt == 2:
                        raise StorageError("the alert could not be recorded") from exc
                except (DBAPIError, OSError) as exc:
                    # a 5xx makes Alertmanager retry the whole notification; handled alerts are skipped then
                    raise StorageError(f"the database did not record the alert: {type(exc).__name__}") from exc
        return report

    async def _one(self, session: AsyncSession, alert: Alert, note: Notification, report: Report) -> None:
        labels = alert.labels
        action_label = labels.get("action")
        domain, metric = labels.get("domain"), labels.get("metric")
        seen = (await session.execute(select(AlertDelivery.id).where(
            AlertDelivery.fingerprint == alert.fingerprint, AlertDelivery.starts_at == alert.startsAt,
            AlertDelivery.status == alert.status,
        ))).first()
        if seen is not None:
            report.duplicates += 1
            self._metrics.webhook_alerts.labels(alert.status, "duplicate").inc()
            return
        detail = {"fingerprint": alert.fingerprint, "generatorURL": alert.generatorURL,
                  "startsAt": alert.startsAt.isoformat(), "alertname": labels.get("alertname"),
                  "receiver": note.receiver, "groupKey": note.groupKey}
        result = await self._decide(session, alert, action_label, domain, metric, detail, report)
        session.add(AlertDelivery(
            fingerprint=alert.fingerprint, starts_at=alert.startsAt, status=alert.status,
            alertname=labels.get("alertname"), action=action_label, domain=domain, metric=metric, result=result,
            generator_url=alert.generatorURL or None, received_at=utcnow(),
        ))
        await session.flush()
        self._metrics.webhook_alerts.labels(alert.status, result).inc()

    async def _decide(self, session: AsyncSession, alert: Alert, action_label: str | None, domain: str | None,
                      metric: str | None, detail: dict[str, Any], report: Report) -> str:
        valid = {a.value for a in Action}
        if action_label not in valid or (action_label == Action.THROTTLE and not (domain and is_valid_name(domain))):
            why = (f"alert {detail['alertname']!r} ({alert.fingerprint}) has action={action_label!r}"
                   f" domain={domain!r}: expected action in {sorted(valid)} and a valid domain; recorded, not executed")
            log.warning(why)
            report.warnings.append(why)
            audit.record(session, kind=audit.Kind.ALERT, source=audit.Source.ALERTMANAGER, action="UNKNOWN",
                         actor="alertmanager", reason=why, domain=domain, metric=metric, detail=detail)
            report.recorded += 1
            return "unknown_action"
        action = Action(action_label)
        summary = alert.annotations.get("summary")
        if alert.status == "resolved":
            return await self._resolved(session, action, alert, domain, metric, detail, summary, report)
        reason = summary or (
            enforcement.throttle_reason(domain or "?", metric or "?", None) if action is Action.THROTTLE
            else enforcement.kill_reason(domain or "?", metric or "?", None)
        )
        outcome = await enforcement.enforce(
            session, action, domain=domain or "", metric=metric or "", reason=f"Alertmanager: {reason}"[:1024],
            actor="alertmanager", source=audit.Source.ALERTMANAGER, detail=detail,
        )
        if domain and metric:
            await latch_trigger(session, domain, metric, utcnow())
        self._metrics.enforcement_actions.labels(action.value, audit.Source.ALERTMANAGER.value).inc()
        report.executed.append({"action": action.value, "domain": domain, "metric": metric,
                                "changed": outcome.changed, "fingerprint": alert.fingerprint})
        log.warning("alertmanager %s for %s.%s (%s)", action.value, domain, metric, alert.fingerprint)
        return "executed"

    async def _resolved(self, session: AsyncSession, action: Action, alert: Alert, domain: str | None,
                        metric: str | None, detail: dict[str, Any], summary: str | None, report: Report) -> str:
        if action is Action.THROTTLE and self._auto_release and domain:
            outcome = await enforcement.release(
                session, Action.THROTTLE, domain=domain, metric=metric, reason=f"Alertmanager resolved: {summary or ''}",
                actor="alertmanager", source=audit.Source.ALERTMANAGER, detail=detail,
            )
            if outcome.changed:
                report.released.append({"action": outcome.action, "engine": domain, "fingerprint": alert.fingerprint})
                return "released"
        audit.record(session, kind=audit.Kind.ALERT, source=audit.Source.ALERTMANAGER, action=f"RESOLVED_{action.value}",
                     actor="alertmanager", reason="alert resolved; a person releases the action", domain=domain,
                     metric=metric, detail=detail)
        report.recorded += 1
        return "recorded"
