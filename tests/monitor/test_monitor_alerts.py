"""Severities, thresholds, zero baselines, reconciliation and the alert lifecycle."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest

from kpiguard.errors import ConfigError, Conflict, ValidationFailed
from kpiguard.monitor import (
    ActiveAlert,
    Aggregate,
    AlertAction,
    AlertChange,
    AlertStatus,
    AlertType,
    Baseline,
    ChangeKind,
    Finding,
    Severity,
    Thresholds,
    allowed_actions,
    at_least,
    classify,
    classify_health,
    detect,
    deviation_ratio,
    evaluate,
    reconcile,
    severities_at_least,
    transition,
)

DEFAULT = Thresholds()


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        (0.0, None),
        (1.0, None),
        (1.49, None),
        (1.4999, None),
        (1.5, Severity.LOW),
        (1.6, Severity.LOW),
        (1.99, Severity.LOW),
        (2.0, Severity.MEDIUM),
        (2.99, Severity.MEDIUM),
        (3.0, Severity.HIGH),
        (0.15 / 0.05, Severity.HIGH),  # 2.9999999999999996 in binary floating point
        (0.015 / 0.01, Severity.LOW),  # 1.4999999999999998
        (4.99, Severity.HIGH),
        (5.0, Severity.CRITICAL),
        (100.0, Severity.CRITICAL),
        (float("inf"), Severity.CRITICAL),
    ],
)
def test_classify_at_the_boundaries(ratio: float, expected: Severity | None) -> None:
    """LOW from 1.5x, MEDIUM from 2x, HIGH from 3x, CRITICAL from 5x; each boundary belongs to the higher severity."""
    assert classify(ratio, DEFAULT) is expected


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(1.19, None), (1.2, Severity.LOW), (1.3, Severity.MEDIUM), (2.5, Severity.HIGH), (4.0, Severity.CRITICAL)],
)
def test_classify_uses_configured_thresholds(ratio: float, expected: Severity | None) -> None:
    """Every ratio threshold is configurable."""
    assert classify(ratio, Thresholds(low=1.2, medium=1.3, high=2.5, critical=4.0)) is expected


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"low": 1.0}, "monitor.thresholds.low"),
        ({"medium": 1.5}, "monitor.thresholds.medium"),
        ({"high": 1.9}, "monitor.thresholds.high"),
        ({"critical": 3.0}, "monitor.thresholds.critical"),  # the seed's CRITICAL = HIGH is refused
        ({"health_decline_below": 0}, "monitor.thresholds.health_decline_below"),
        ({"health_decline_below": 101}, "monitor.thresholds.health_decline_below"),
        ({"health_critical_below": 50}, "monitor.thresholds.health_critical_below"),
        ({"min_fallback_rate": 0.0}, "monitor.thresholds.min_fallback_rate"),
        ({"min_latency_p95_ms": -1.0}, "monitor.thresholds.min_latency_p95_ms"),
        ({"min_baseline_days": 0}, "monitor.thresholds.min_baseline_days"),
        ({"min_events": 0}, "monitor.thresholds.min_events"),
    ],
)
def test_thresholds_refuse_unreachable_or_meaningless_values(changes: dict[str, Any], setting: str) -> None:
    """Thresholds that would merge two severities or divide by zero stop start-up naming the setting."""
    with pytest.raises(ConfigError) as caught:
        Thresholds(**changes)
    assert caught.value.setting == setting


@pytest.mark.parametrize(
    ("score", "expected"),
    [(100.0, None), (50.0, None), (49.99, Severity.HIGH), (25.0, Severity.HIGH), (24.99, Severity.CRITICAL),
     (0.0, Severity.CRITICAL)],
)
def test_classify_health(score: float, expected: Severity | None) -> None:
    """Health under 50 is HIGH, under 25 CRITICAL; exactly 50 is healthy."""
    assert classify_health(score, DEFAULT) is expected


def test_severities_are_ordered_by_rank_not_alphabet() -> None:
    """LOW < MEDIUM < HIGH < CRITICAL, although 'critical' < 'high' as strings."""
    assert sorted([Severity.CRITICAL, Severity.LOW, Severity.HIGH, Severity.MEDIUM]) == [
        Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
    assert Severity.CRITICAL > Severity.HIGH and max(Severity) is Severity.CRITICAL
    assert at_least(Severity.HIGH, Severity.MEDIUM) and not at_least(Severity.LOW, Severity.MEDIUM)
    assert severities_at_least(Severity.MEDIUM) == (Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


@pytest.mark.parametrize(("text", "expected"), [("medium", Severity.MEDIUM), ("HIGH", Severity.HIGH),
                                               (" low ", Severity.LOW)])
def test_severity_parse(text: str, expected: Severity) -> None:
    """A client's threshold is read case-insensitively."""
    assert Severity.parse(text) is expected


@pytest.mark.parametrize(("parse", "field"), [(Severity.parse, "threshold"), (AlertStatus.parse, "status")])
def test_parse_refuses_unknown_names_with_choices(parse: Any, field: str) -> None:
    """An unknown value is a 422 naming the field and listing the choices."""
    with pytest.raises(ValidationFailed) as caught:
        parse("severe")
    assert caught.value.field == field
    assert caught.value.status == 422
    assert caught.value.choices and "severe" not in caught.value.choices


@pytest.mark.parametrize(
    ("current", "baseline", "floor", "expected"),
    [
        (0.15, 0.05, 0.01, 3.0),
        (0.015, 0.0, 0.01, 1.5),  # zero baseline: the floor
        (0.0, 0.0, 0.01, 0.0),
        (0.005, 0.001, 0.01, 0.5),  # a tiny baseline is raised to the floor
        (900.0, 0.0, 100.0, 9.0),
    ],
)
def test_deviation_ratio_never_divides_by_zero(current: float, baseline: float, floor: float, expected: float) -> None:
    """ratio = current / max(baseline, floor)."""
    assert deviation_ratio(current, baseline, floor) == pytest.approx(expected)


@pytest.mark.parametrize("floor", [0.0, -0.01])
def test_deviation_ratio_refuses_a_non_positive_floor(floor: float) -> None:
    """A floor of zero would reintroduce the division by zero it exists to prevent."""
    with pytest.raises(ValueError):
        deviation_ratio(1.0, 0.0, floor)


def _baseline(**fields: Any) -> Baseline:
    """A 7-day baseline of 5% fallbacks, 2% errors, no duplicates, 800 ms p95, with ``fields`` changed."""
    values: dict[str, Any] = dict(
        name="default", window_days=7, start=date(2026, 2, 14), end=date(2026, 2, 20), days_used=7,
        total_events=7000, duplicate_events=0, fallback_rate=0.05, error_rate=0.02, duplicate_rate=0.0,
        success_rate=0.98, latency_p95=800.0, latency_avg=400.0, health_score=88.0,
    )
    values.update(fields)
    return Baseline(**values)


def _current(**fields: Any) -> Aggregate:
    """A day like the baseline, with ``fields`` changed."""
    values: dict[str, Any] = dict(
        total_events=1000, fallback_rate=0.05, error_rate=0.02, duplicate_rate=0.0, success_rate=0.98,
        latency_p95=800.0, latency_count=1000, health_score=88.0,
    )
    values.update(fields)
    return Aggregate(**values)


@pytest.mark.parametrize(
    ("current", "baseline", "expected"),
    [
        ({}, {}, {}),
        ({"fallback_rate": 0.15}, {}, {AlertType.FALLBACK_SPIKE: Severity.HIGH}),
        ({"error_rate": 0.032}, {}, {AlertType.ERROR_SPIKE: Severity.LOW}),
        ({"latency_p95": 1700.0}, {}, {AlertType.LATENCY_SPIKE: Severity.MEDIUM}),
        ({"duplicate_rate": 0.06}, {}, {AlertType.DUPLICATE_SPIKE: Severity.CRITICAL}),  # 0.06 / floor 0.01
        ({"duplicate_rate": 0.009}, {}, {}),  # under the floor: noise
        ({"health_score": 40.0}, {}, {AlertType.HEALTH_DECLINE: Severity.HIGH}),
        ({"health_score": 10.0}, {}, {AlertType.HEALTH_DECLINE: Severity.CRITICAL}),
        ({"fallback_rate": 0.02}, {"fallback_rate": 0.0}, {AlertType.FALLBACK_SPIKE: Severity.MEDIUM}),
        ({"fallback_rate": 0.0}, {"fallback_rate": 0.0}, {}),
        ({"latency_p95": 250.0}, {"latency_p95": 0.0}, {AlertType.LATENCY_SPIKE: Severity.MEDIUM}),
        ({"fallback_rate": 0.15, "error_rate": 0.10},
         {}, {AlertType.FALLBACK_SPIKE: Severity.HIGH, AlertType.ERROR_SPIKE: Severity.CRITICAL}),
    ],
)
def test_detect(current: dict[str, Any], baseline: dict[str, Any], expected: dict[AlertType, Severity]) -> None:
    """Each signal fires at the severity its ratio (or the health score) reaches, zero baselines included."""
    findings = detect(_current(**current), _baseline(**baseline), DEFAULT, scope="global")
    assert {f.type: f.severity for f in findings} == expected
    assert all(f.scope == "global" and f.firing for f in findings)


def test_finding_carries_values_ratio_and_message() -> None:
    """A spike finding records current, baseline, ratio and a message naming the severity."""
    (finding,) = detect(_current(fallback_rate=0.15), _baseline(), DEFAULT, scope="model:a")
    assert (finding.current_value, finding.baseline_value) == (0.15, 0.05)
    assert finding.ratio == pytest.approx(3.0)
    assert finding.scope == "model:a"
    assert "fallback_rate" in finding.message and "HIGH" in finding.message


def test_evaluate_reports_quiet_signals_too() -> None:
    """evaluate returns every checked signal, with severity None when it is under LOW."""
    findings = evaluate(_current(), _baseline(), DEFAULT)
    assert {f.type for f in findings} == set(AlertType)
    assert all(f.severity is None for f in findings)


@pytest.mark.parametrize(
    ("baseline", "thresholds"),
    [
        (None, DEFAULT),
        (_baseline(days_used=2), DEFAULT),
        (_baseline(fallback_rate=None, error_rate=None, duplicate_rate=None, latency_p95=None), DEFAULT),
    ],
)
def test_spikes_need_a_ready_baseline_but_health_does_not(baseline: Baseline | None, thresholds: Thresholds) -> None:
    """Without a baseline of enough days no spike is checked; health_decline still is."""
    findings = evaluate(_current(fallback_rate=0.5, health_score=30.0), baseline, thresholds)
    assert [(f.type, f.severity) for f in findings] == [(AlertType.HEALTH_DECLINE, Severity.HIGH)]


def test_buckets_under_min_events_are_not_checked() -> None:
    """A bucket with fewer events than min_events yields no findings at all."""
    current = _current(total_events=9, fallback_rate=0.5, health_score=10.0)
    assert evaluate(current, _baseline(), Thresholds(min_events=10)) == []
    assert evaluate(dataclasses.replace(current, total_events=10), _baseline(), Thresholds(min_events=10))


def _finding(kind: AlertType, severity: Severity | None, scope: str = "global") -> Finding:
    """A finding of ``kind`` at ``severity``."""
    return Finding(kind, scope, severity, 0.1, 0.05, 2.0, "test")


def _alert(
    alert_id: int, kind: AlertType, status: AlertStatus = AlertStatus.OPEN, scope: str = "global",
) -> ActiveAlert:
    """A stored alert."""
    return ActiveAlert(alert_id, kind, scope, Severity.LOW, status)


FALLBACK, ERROR = AlertType.FALLBACK_SPIKE, AlertType.ERROR_SPIKE
AUTO = Thresholds(auto_resolve=True)


@pytest.mark.parametrize(
    ("findings", "alerts", "thresholds", "expected"),
    [
        # a new spike opens an alert
        ([_finding(FALLBACK, Severity.HIGH)], [], DEFAULT, [(ChangeKind.CREATE, None)]),
        # a re-check updates the open alert instead of adding a second row
        ([_finding(FALLBACK, Severity.HIGH)], [_alert(7, FALLBACK)], DEFAULT, [(ChangeKind.UPDATE, 7)]),
        # ... and the acknowledged one
        ([_finding(FALLBACK, Severity.LOW)], [_alert(7, FALLBACK, AlertStatus.ACKNOWLEDGED)], DEFAULT,
         [(ChangeKind.UPDATE, 7)]),
        # a resolved alert is history: a new spike opens a new one
        ([_finding(FALLBACK, Severity.LOW)], [_alert(7, FALLBACK, AlertStatus.RESOLVED)], DEFAULT,
         [(ChangeKind.CREATE, None)]),
        # another type or another scope is another alert
        ([_finding(FALLBACK, Severity.LOW, "model:b")], [_alert(7, FALLBACK), _alert(8, ERROR, scope="model:b")],
         DEFAULT, [(ChangeKind.CREATE, None)]),
        # back under LOW: resolved only with auto_resolve
        ([_finding(FALLBACK, None)], [_alert(7, FALLBACK)], AUTO, [(ChangeKind.RESOLVE, 7)]),
        ([_finding(FALLBACK, None)], [_alert(7, FALLBACK, AlertStatus.ACKNOWLEDGED)], AUTO, [(ChangeKind.RESOLVE, 7)]),
        ([_finding(FALLBACK, None)], [_alert(7, FALLBACK)], DEFAULT, []),
        # quiet and nothing open: nothing to do
        ([_finding(FALLBACK, None)], [], AUTO, []),
        # a signal not checked this time (no finding) leaves its alert alone, even with auto_resolve
        ([_finding(FALLBACK, None)], [_alert(7, FALLBACK), _alert(8, ERROR)], AUTO, [(ChangeKind.RESOLVE, 7)]),
        # should two active alerts exist for one key, the oldest is updated
        ([_finding(FALLBACK, Severity.MEDIUM)], [_alert(9, FALLBACK), _alert(4, FALLBACK)], DEFAULT,
         [(ChangeKind.UPDATE, 4)]),
    ],
)
def test_reconcile(
    findings: list[Finding], alerts: list[ActiveAlert], thresholds: Thresholds,
    expected: list[tuple[ChangeKind, int | None]],
) -> None:
    """One active alert per (type, scope): create, update in place, or auto-resolve when back under LOW."""
    changes = reconcile(findings, alerts, thresholds)
    assert [(c.kind, c.alert_id) for c in changes] == expected
    assert all(isinstance(c, AlertChange) and c.finding in findings for c in changes)


def test_reconcile_repeated_checks_are_stable() -> None:
    """Applying a check's changes and checking again updates the same alert rather than creating another."""
    baseline, current = _baseline(), _current(fallback_rate=0.15)
    alerts: list[ActiveAlert] = []
    for round_ in range(3):
        changes = reconcile(evaluate(current, baseline, AUTO), alerts, AUTO)
        assert [c.kind for c in changes] == ([ChangeKind.CREATE] if round_ == 0 else [ChangeKind.UPDATE])
        if changes[0].kind is ChangeKind.CREATE:
            alerts.append(ActiveAlert(1, FALLBACK, "global", changes[0].finding.severity, AlertStatus.OPEN))  # type: ignore[arg-type]
    changes = reconcile(evaluate(_current(fallback_rate=0.06), baseline, AUTO), alerts, AUTO)
    assert [(c.kind, c.alert_id) for c in changes] == [(ChangeKind.RESOLVE, 1)]


def test_reconcile_refuses_two_findings_for_one_key() -> None:
    """Two findings for the same (type, scope) in one check are a caller bug."""
    with pytest.raises(ValueError):
        reconcile([_finding(FALLBACK, Severity.LOW), _finding(FALLBACK, Severity.HIGH)], [], DEFAULT)


@pytest.mark.parametrize(
    ("status", "action", "expected"),
    [
        (AlertStatus.OPEN, AlertAction.ACKNOWLEDGE, AlertStatus.ACKNOWLEDGED),
        (AlertStatus.OPEN, AlertAction.RESOLVE, AlertStatus.RESOLVED),
        (AlertStatus.ACKNOWLEDGED, AlertAction.RESOLVE, AlertStatus.RESOLVED),
        ("open", "acknowledge", AlertStatus.ACKNOWLEDGED),
    ],
)
def test_lifecycle_allowed_transitions(status: AlertStatus, action: AlertAction, expected: AlertStatus) -> None:
    """open -> acknowledged -> resolved, and open -> resolved directly."""
    assert transition(status, action) is expected


@pytest.mark.parametrize(
    ("status", "action", "choices"),
    [
        (AlertStatus.ACKNOWLEDGED, AlertAction.ACKNOWLEDGE, ["resolve"]),
        (AlertStatus.RESOLVED, AlertAction.ACKNOWLEDGE, []),
        (AlertStatus.RESOLVED, AlertAction.RESOLVE, []),
    ],
)
def test_lifecycle_invalid_transitions_conflict(status: AlertStatus, action: AlertAction, choices: list[str]) -> None:
    """Acknowledging twice or touching a resolved alert is a 409 listing what is allowed."""
    with pytest.raises(Conflict) as caught:
        transition(status, action)
    assert caught.value.status == 409
    assert caught.value.choices == choices
    assert status.value in caught.value.message and action.value in caught.value.message
    assert [a.value for a in allowed_actions(status)] == choices
