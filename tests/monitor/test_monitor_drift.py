"""End to end over the pure domain: a synthetic normal week, then a day that drifts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest

from kpiguard.monitor import (
    AlertType,
    ChangeKind,
    DailyAggregate,
    Severity,
    Thresholds,
    compute_baseline,
    detect,
    evaluate,
    reconcile,
)

DayBuilder = Callable[..., DailyAggregate]
CHECKED = date(2026, 2, 21)
# A normal day: 1000 events, 2% errors, 5% fallbacks, no replays, ~400 ms typical latency.
NORMAL = dict(events=1000, failures=20, fallbacks=50, duplicates=0, latency_ms=400.0)


@pytest.fixture
def normal_week(day_aggregate: DayBuilder) -> list[DailyAggregate]:
    """Seven normal days before the checked day."""
    return [day_aggregate(CHECKED - timedelta(days=n), **NORMAL) for n in range(7, 0, -1)]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {}),
        ({"fallbacks": 150}, {AlertType.FALLBACK_SPIKE: Severity.HIGH}),  # 3x the fallback rate
        ({"failures": 32}, {AlertType.ERROR_SPIKE: Severity.LOW}),  # 1.6x the errors
        ({"failures": 40}, {AlertType.ERROR_SPIKE: Severity.MEDIUM}),
        ({"fallbacks": 250}, {AlertType.FALLBACK_SPIKE: Severity.CRITICAL}),
        ({"latency_ms": 700.0}, {AlertType.LATENCY_SPIKE: Severity.LOW}),  # 1.75x every latency
        ({"latency_ms": 1000.0}, {AlertType.LATENCY_SPIKE: Severity.MEDIUM}),  # 2.5x
        ({"duplicates": 30}, {AlertType.DUPLICATE_SPIKE: Severity.MEDIUM}),  # 30/1030 = 2.9x the 1% floor
        ({"duplicates": 32}, {AlertType.DUPLICATE_SPIKE: Severity.HIGH}),  # 32/1032 = 3.1x
        # success 55%, fallbacks 25%: health 27.5 + 0 + 20 = 47.5
        ({"failures": 450, "fallbacks": 250},
         {AlertType.HEALTH_DECLINE: Severity.HIGH, AlertType.ERROR_SPIKE: Severity.CRITICAL,
          AlertType.FALLBACK_SPIKE: Severity.CRITICAL}),
    ],
)
def test_a_drifting_day_raises_the_expected_alerts(
    day_aggregate: DayBuilder, normal_week: list[DailyAggregate], changes: dict[str, float],
    expected: dict[AlertType, Severity],
) -> None:
    """From raw records to alerts: the checked day is compared with the week before it, never itself."""
    checked = day_aggregate(CHECKED, **{**NORMAL, **changes})
    baseline = compute_baseline("default", [*normal_week, checked], CHECKED)
    assert baseline.days_used == 7
    assert baseline.fallback_rate == pytest.approx(0.05) and baseline.error_rate == pytest.approx(0.02)
    findings = detect(checked.aggregate, baseline, Thresholds())
    assert {f.type: f.severity for f in findings} == expected
    health = next((f for f in findings if f.type is AlertType.HEALTH_DECLINE), None)
    if health is not None:
        assert health.current_value == pytest.approx(47.5)
        assert health.current_value == checked.aggregate.health_score


def test_a_week_of_checks_opens_once_updates_then_resolves(
    day_aggregate: DayBuilder, normal_week: list[DailyAggregate],
) -> None:
    """A spike on two days opens one alert then updates it; a normal third day auto-resolves it."""
    from kpiguard.monitor import ActiveAlert, AlertStatus

    thresholds = Thresholds(auto_resolve=True)
    history = list(normal_week)
    alerts: dict[int, ActiveAlert] = {}
    kinds: list[list[tuple[ChangeKind, AlertType, Severity | None]]] = []
    for offset, fallbacks in enumerate([150, 250, 50]):
        day = CHECKED + timedelta(days=offset)
        today = day_aggregate(day, **{**NORMAL, "fallbacks": fallbacks})
        baseline = compute_baseline("default", history, day)
        changes = reconcile(evaluate(today.aggregate, baseline, thresholds), alerts.values(), thresholds)
        kinds.append([(c.kind, c.finding.type, c.finding.severity) for c in changes])
        for change in changes:
            if change.kind is ChangeKind.CREATE:
                alerts[len(alerts) + 1] = ActiveAlert(len(alerts) + 1, change.finding.type, change.finding.scope,
                                                      change.finding.severity, AlertStatus.OPEN)  # type: ignore[arg-type]
            elif change.kind is ChangeKind.RESOLVE:
                del alerts[change.alert_id]  # type: ignore[arg-type]
        history.append(today)
    assert kinds[0] == [(ChangeKind.CREATE, AlertType.FALLBACK_SPIKE, Severity.HIGH)]
    # Day two's baseline includes day one's spike, so 25% over a higher baseline: still a spike, updated in place.
    assert [(k, t) for k, t, _ in kinds[1]] == [(ChangeKind.UPDATE, AlertType.FALLBACK_SPIKE)]
    assert kinds[2] == [(ChangeKind.RESOLVE, AlertType.FALLBACK_SPIKE, None)]
    assert alerts == {}
