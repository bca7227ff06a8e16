"""Drift detection against a baseline, the alerts it opens, updates or resolves, and the alert lifecycle.

Severities by deviation ratio (current / max(baseline, floor)), every one configurable in :class:`Thresholds`:
LOW >= 1.5x, MEDIUM >= 2x, HIGH >= 3x as the seed says. The seed also gives CRITICAL >= 3x, which would make
HIGH unreachable; CRITICAL is >= 5x here, so that it stays a function of the ratio alone (one number, one
severity, the same rule in the Prometheus alerting rules) and means "an order of magnitude worse than HIGH's
lower edge", not "HIGH plus a coincidence".

health_decline does not compare with the baseline: it fires when the health score of the checked bucket is
below ``health_decline_below`` (50, the seed's), as HIGH, and as CRITICAL below ``health_critical_below`` (25).

A baseline of zero never divides by zero: each signal has a floor (a minimum absolute baseline), and the
ratio is ``current / max(baseline, floor)``. With the default 1% floor a zero-fallback week followed by a
day at 1.5% fallbacks is LOW, at 5% CRITICAL, and a day at 0.5% nothing: noise under the floor is ignored.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from typing import Self, TypeVar

from kpiguard.errors import ConfigError, Conflict, ValidationFailed
from kpiguard.monitor._aggregate import Aggregate
from kpiguard.monitor._baseline import Baseline

GLOBAL_SCOPE = "global"
# Who resolved an alert that resolved itself; stored in resolved_by.
AUTO_RESOLVER = "kpiguard"
# A ratio within one part in a billion of a threshold reaches it: 0.15 / 0.05 is 2.9999999999999996 in
# binary floating point and must be HIGH's 3x, not MEDIUM.
_RATIO_TOLERANCE = 1e-9


_E = TypeVar("_E", bound=enum.StrEnum)


def _parse_choice(cls: type[_E], value: str, field: str) -> _E:
    """Turn a query or body value into the enum member, or a 422 naming the field and the choices."""
    try:
        return cls(value.strip().lower())
    except ValueError:
        choices = [member.value for member in cls]
        raise ValidationFailed(
            f"{field} must be one of {', '.join(choices)}, got {value!r}", field=field, choices=choices
        ) from None


class Severity(enum.StrEnum):
    """How far a signal is from its baseline; ordered LOW < MEDIUM < HIGH < CRITICAL."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for LOW up to 3 for CRITICAL."""
        return _SEVERITY_ORDER.index(self)

    # str's own comparisons are alphabetical ("critical" < "high"); severities compare by rank.
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank

    @classmethod
    def parse(cls, value: str, field: str = "threshold") -> Self:
        """Read a severity given by a client (case-insensitive), or raise a 422 naming ``field``."""
        return _parse_choice(cls, value, field)


_SEVERITY_ORDER = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


class AlertType(enum.StrEnum):
    """The seed's five alert types."""

    FALLBACK_SPIKE = "fallback_spike"
    ERROR_SPIKE = "error_spike"
    LATENCY_SPIKE = "latency_spike"
    DUPLICATE_SPIKE = "duplicate_spike"
    HEALTH_DECLINE = "health_decline"


class AlertStatus(enum.StrEnum):
    """Where an alert is in its lifecycle."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"

    @classmethod
    def parse(cls, value: str, field: str = "status") -> Self:
        """Read a status given by a client (case-insensitive), or raise a 422 naming ``field``."""
        return _parse_choice(cls, value, field)


class AlertAction(enum.StrEnum):
    """What a person (or the auto-resolver) does to an alert."""

    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


# An alert in one of these is "the" alert of its (type, scope): re-checks update it instead of adding a row.
ACTIVE_STATUSES = frozenset({AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED})

_TRANSITIONS: dict[AlertStatus, dict[AlertAction, AlertStatus]] = {
    AlertStatus.OPEN: {AlertAction.ACKNOWLEDGE: AlertStatus.ACKNOWLEDGED, AlertAction.RESOLVE: AlertStatus.RESOLVED},
    AlertStatus.ACKNOWLEDGED: {AlertAction.RESOLVE: AlertStatus.RESOLVED},
    AlertStatus.RESOLVED: {},
}


def allowed_actions(status: AlertStatus | str) -> tuple[AlertAction, ...]:
    """The actions an alert in ``status`` accepts."""
    return tuple(_TRANSITIONS[AlertStatus(status)])


def transition(status: AlertStatus | str, action: AlertAction | str) -> AlertStatus:
    """Return the status after ``action``, or raise Conflict (409) naming the actions that are allowed."""
    status, action = AlertStatus(status), AlertAction(action)
    allowed = _TRANSITIONS[status]
    if action in allowed:
        return allowed[action]
    choices = [a.value for a in allowed]
    why = f"allowed: {', '.join(choices)}" if choices else "a resolved alert is final"
    raise Conflict(f"cannot {action.value} an alert that is {status.value}; {why}", field="status", choices=choices)


@dataclasses.dataclass(frozen=True, slots=True)
class Thresholds:
    """Every number detection uses; defaults are the seed's, CRITICAL and the floors are kpiguard's."""

    low: float = 1.5
    medium: float = 2.0
    high: float = 3.0
    critical: float = 5.0
    health_decline_below: float = 50.0
    health_critical_below: float = 25.0
    # Floors: the smallest baseline a ratio is taken against (rates are fractions, latency milliseconds).
    min_fallback_rate: float = 0.01
    min_error_rate: float = 0.01
    min_duplicate_rate: float = 0.01
    min_latency_p95_ms: float = 100.0
    # A baseline of fewer days with traffic is too thin to compare with; spikes are not checked.
    min_baseline_days: int = 3
    # A bucket with fewer events (received events, for duplicates) is not checked at all.
    min_events: int = 1
    auto_resolve: bool = False

    def __post_init__(self) -> None:
        """Refuse thresholds that would make a severity unreachable or a ratio meaningless."""
        if not 1.0 < self.low:
            raise ConfigError("monitor.thresholds.low", f"must be greater than 1, got {self.low}")
        for lower, upper in (("low", "medium"), ("medium", "high"), ("high", "critical")):
            if not getattr(self, lower) < getattr(self, upper):
                raise ConfigError(
                    f"monitor.thresholds.{upper}",
                    f"must be greater than {lower} ({getattr(self, lower)}), got {getattr(self, upper)}",
                )
        if not 0.0 < self.health_decline_below <= 100.0:
            raise ConfigError(
                "monitor.thresholds.health_decline_below", f"must be in (0, 100], got {self.health_decline_below}"
            )
        if not 0.0 <= self.health_critical_below < self.health_decline_below:
            raise ConfigError(
                "monitor.thresholds.health_critical_below",
                f"must be >= 0 and below health_decline_below ({self.health_decline_below}), "
                f"got {self.health_critical_below}",
            )
        for name in ("min_fallback_rate", "min_error_rate", "min_duplicate_rate", "min_latency_p95_ms"):
            if not getattr(self, name) > 0.0:
                raise ConfigError(f"monitor.thresholds.{name}", f"must be greater than 0, got {getattr(self, name)}")
        for name in ("min_baseline_days", "min_events"):
            if getattr(self, name) < 1:
                raise ConfigError(f"monitor.thresholds.{name}", f"must be at least 1, got {getattr(self, name)}")

    def ratio_threshold(self, severity: Severity) -> float:
        """The deviation ratio at which ``severity`` starts."""
        return {
            Severity.LOW: self.low,
            Severity.MEDIUM: self.medium,
            Severity.HIGH: self.high,
            Severity.CRITICAL: self.critical,
        }[severity]


def deviation_ratio(current: float, baseline: float, floor: float) -> float:
    """Return current / max(baseline, floor): how many times the (floored) baseline the current value is."""
    if not floor > 0.0:
        raise ValueError(f"floor must be greater than 0, got {floor}")
    return current / max(baseline, floor)


def classify(ratio: float, thresholds: Thresholds) -> Severity | None:
    """The highest severity whose ratio threshold ``ratio`` reaches, or None under LOW."""
    for severity in reversed(_SEVERITY_ORDER):
        if ratio >= thresholds.ratio_threshold(severity) * (1.0 - _RATIO_TOLERANCE):
            return severity
    return None


def classify_health(score: float, thresholds: Thresholds) -> Severity | None:
    """HIGH below health_decline_below, CRITICAL below health_critical_below, else None."""
    if score < thresholds.health_critical_below:
        return Severity.CRITICAL
    if score < thresholds.health_decline_below:
        return Severity.HIGH
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One checked signal of one scope; ``severity`` None means it was checked and is under LOW."""

    type: AlertType
    scope: str
    severity: Severity | None
    current_value: float
    baseline_value: float | None
    # current / max(baseline, floor); None for health_decline, which compares with a fixed score.
    ratio: float | None
    message: str

    @property
    def firing(self) -> bool:
        """Whether the signal is at LOW or above (health: under its threshold)."""
        return self.severity is not None


# (alert type, attribute of Aggregate and Baseline, Thresholds floor, unit for messages)
_SPIKES: tuple[tuple[AlertType, str, str, str], ...] = (
    (AlertType.FALLBACK_SPIKE, "fallback_rate", "min_fallback_rate", ""),
    (AlertType.ERROR_SPIKE, "error_rate", "min_error_rate", ""),
    (AlertType.LATENCY_SPIKE, "latency_p95", "min_latency_p95_ms", " ms"),
    (AlertType.DUPLICATE_SPIKE, "duplicate_rate", "min_duplicate_rate", ""),
)


def _spike_message(metric: str, unit: str, current: float, base: float, ratio: float, severity: Severity | None,
                   thresholds: Thresholds) -> str:
    """Say what was compared and which threshold it reached."""
    fmt = "{:.1f}" if unit else "{:.4f}"
    head = f"{metric} {fmt.format(current)}{unit} is {ratio:.2f}x the baseline {fmt.format(base)}{unit}"
    if severity is None:
        return f"{head}, under {Severity.LOW.value.upper()} ({thresholds.low}x)"
    return f"{head}: {severity.value.upper()} (>= {thresholds.ratio_threshold(severity)}x)"


def evaluate(
    current: Aggregate,
    baseline: Baseline | None,
    thresholds: Thresholds,
    scope: str = GLOBAL_SCOPE,
) -> list[Finding]:
    """Check every signal that can be checked, firing or not; a signal lacking data yields no finding."""
    findings: list[Finding] = []
    baseline_ready = baseline is not None and baseline.days_used >= thresholds.min_baseline_days
    for alert_type, metric, floor_name, unit in _SPIKES:
        events = current.received_events if alert_type is AlertType.DUPLICATE_SPIKE else current.total_events
        value = getattr(current, metric)
        base = getattr(baseline, metric) if baseline is not None else None
        if events < thresholds.min_events or value is None or not baseline_ready or base is None:
            continue
        ratio = deviation_ratio(value, base, getattr(thresholds, floor_name))
        severity = classify(ratio, thresholds)
        findings.append(Finding(
            alert_type, scope, severity, value, base, ratio,
            _spike_message(metric, unit, value, base, ratio, severity, thresholds),
        ))
    if current.health_score is not None and current.total_events >= thresholds.min_events:
        score = current.health_score
        severity = classify_health(score, thresholds)
        edge = thresholds.health_critical_below if severity is Severity.CRITICAL else thresholds.health_decline_below
        relation = f"below {edge}" if severity is not None else f"at or above {thresholds.health_decline_below}"
        label = f": {severity.value.upper()}" if severity is not None else ""
        findings.append(Finding(
            AlertType.HEALTH_DECLINE, scope, severity, score,
            baseline.health_score if baseline is not None else None, None,
            f"health score {score:.1f} is {relation}{label}",
        ))
    return findings


def detect(
    current: Aggregate,
    baseline: Baseline | None,
    thresholds: Thresholds,
    scope: str = GLOBAL_SCOPE,
) -> list[Finding]:
    """The findings at LOW or above: the alerts this check raises."""
    return [finding for finding in evaluate(current, baseline, thresholds, scope) if finding.firing]


@dataclasses.dataclass(frozen=True, slots=True)
class ActiveAlert:
    """An alert as stored, reduced to what reconciliation needs."""

    id: int
    type: AlertType
    scope: str
    severity: Severity
    status: AlertStatus


class ChangeKind(enum.StrEnum):
    """What to do to the alerts table."""

    CREATE = "create"
    UPDATE = "update"
    RESOLVE = "resolve"


@dataclasses.dataclass(frozen=True, slots=True)
class AlertChange:
    """One write: create an alert from ``finding``, or update/resolve alert ``alert_id`` with it."""

    kind: ChangeKind
    finding: Finding
    alert_id: int | None = None


def reconcile(
    findings: Iterable[Finding],
    alerts: Iterable[ActiveAlert],
    thresholds: Thresholds,
) -> list[AlertChange]:
    """Turn a check's findings (from :func:`evaluate`) into creates, updates and auto-resolutions.

    One active (open or acknowledged) alert per (type, scope): a firing finding updates it (severity and
    values, status kept) or creates it; a quiet finding resolves it when ``auto_resolve`` is on. Alerts
    whose signal was not checked (no finding) are left alone. Pass :func:`evaluate`'s output, not
    :func:`detect`'s, or nothing can auto-resolve.
    """
    active: dict[tuple[AlertType, str], ActiveAlert] = {}
    # Should the store ever hold two active alerts for one key, the oldest is the one kept up to date.
    for alert in sorted(alerts, key=lambda a: a.id):
        if AlertStatus(alert.status) in ACTIVE_STATUSES:
            active.setdefault((AlertType(alert.type), alert.scope), alert)

    changes: list[AlertChange] = []
    seen: set[tuple[AlertType, str]] = set()
    for finding in findings:
        key = (finding.type, finding.scope)
        if key in seen:
            raise ValueError(f"two findings for {finding.type.value} in scope {finding.scope!r}")
        seen.add(key)
        existing = active.get(key)
        if finding.firing:
            if existing is None:
                changes.append(AlertChange(ChangeKind.CREATE, finding))
            else:
                changes.append(AlertChange(ChangeKind.UPDATE, finding, existing.id))
        elif existing is not None and thresholds.auto_resolve:
            changes.append(AlertChange(ChangeKind.RESOLVE, finding, existing.id))
    return changes


def at_least(severity: Severity, threshold: Severity) -> bool:
    """Whether an alert of ``severity`` is shown by a ``?threshold=`` filter (the lowest severity shown)."""
    return severity >= threshold


def severities_at_least(threshold: Severity) -> tuple[Severity, ...]:
    """The severities a ``?threshold=`` filter shows, for a SQL ``IN``."""
    return _SEVERITY_ORDER[threshold.rank:]

