"""The Regression Tripwire dashboard: per policy the count windows, the time windows, enforcement, governance."""

from __future__ import annotations

from kpiguard.dashboards._model import Annotation, Dashboard, Kind, Mapping, Panel, Query, Row, Step, Variable
from kpiguard.dashboards._promql import increase, rate, sel, sum_by, var

UID = "kpiguard-tripwire"  # rulegen's alerts link here (DASHBOARD_PATH): never change it
TITLE = "kpiguard Regression Tripwire"

PM = ('domain' + var("domain"), 'metric' + var("metric"))
_LEGEND = "{{domain}}.{{metric}}"
_TRIGGERED = (Mapping("0", "ok", "green"), Mapping("1", "TRIGGERED", "red"))
_ENABLED = (Mapping("0", "THROTTLED", "orange"), Mapping("1", "enabled", "green"))
_KILL = (Mapping("0", "released", "green"), Mapping("1", "ENGAGED", "red"))
_RED_FROM_1 = (Step(None, "green"), Step(1, "red"))


def _rule(name: str) -> str:
    """A recording rule of rules/kpiguard.rules.yml for the selected domains and metrics."""
    return sel(f"domain_metric:{name}", *PM)


def _status() -> Row:
    return Row("Now", (
        Panel("Triggered policies", Kind.STAT, (Query(f"sum({sel('kpiguard_regression_triggered', *PM)})"),),
              "Policies whose count-window tripwire is triggered now.", width=6, height=5, steps=_RED_FROM_1),
        Panel("Kill switch", Kind.STAT, (Query("max(kpiguard_kill_switch_engaged)"),),
              "The global kill switch: ENGAGED refuses every PROD_EXEC request until a person releases it.",
              width=6, height=5, mappings=_KILL, steps=_RED_FROM_1),
        Panel("Throttled engines", Kind.STAT,
              (Query("count(kpiguard_risk_policy_enabled == 0) or vector(0)"),),
              "Engines whose risk policy is disabled (THROTTLE): their new work is denied.",
              width=6, height=5, steps=(Step(None, "green"), Step(1, "orange"))),
        Panel("Enforcement actions in range", Kind.STAT,
              (Query(sum_by("action", increase("kpiguard_enforcement_actions_total")), "{{action}}", instant=True),),
              "THROTTLE and KILL_SWITCH actions executed in the dashboard's time range, by the evaluator or Alertmanager.",
              width=6, height=5, decimals=0, steps=_RED_FROM_1),
    ))


def _count_windows() -> Row:
    return Row("Count windows (kpiguard's evaluator)", (
        Panel("Current vs baseline", Kind.TIMESERIES, (
            Query(sel("kpiguard_regression_current", *PM), f"{_LEGEND} current"),
            Query(sel("kpiguard_regression_baseline", *PM), f"{_LEGEND} baseline"),
        ), "Aggregate of the newest window_events events (success ratio or mean value) and of the "
           "baseline_events before them.", unit="none", dashed=".*baseline$"),
        Panel("Drop vs threshold", Kind.TIMESERIES, (
            Query(sel("kpiguard_regression_drop_ratio", *PM), f"{_LEGEND} drop"),
            Query(sel("kpiguard_regression_threshold_ratio", *PM), f"{_LEGEND} threshold"),
        ), "(baseline - current) / |baseline| against the policy's max_drop_fraction: at or above it "
           "(with enough events) the policy triggers.", unit="percentunit", dashed=".*threshold$"),
        Panel("Triggered", Kind.STATE_TIMELINE, (Query(sel("kpiguard_regression_triggered", *PM), _LEGEND),),
              "1 while the policy's tripwire is triggered.", width=12, mappings=_TRIGGERED, steps=_RED_FROM_1),
        Panel("Events in each window vs min_events_to_enforce", Kind.TIMESERIES, (
            Query(sel("kpiguard_regression_window_events", *PM), f"{_LEGEND} {{{{window}}}}"),
            Query(sel("kpiguard_regression_min_events", *PM), f"{_LEGEND} min_events"),
        ), "A window with fewer events than min_events_to_enforce cannot trigger (the evidence guard).",
            dashed=".*min_events$"),
        Panel("Policies now", Kind.TABLE, (
            Query(sel("kpiguard_regression_current", *PM), "current", instant=True),
            Query(sel("kpiguard_regression_baseline", *PM), "baseline", instant=True),
            Query(sel("kpiguard_regression_drop_ratio", *PM), "drop", instant=True),
            Query(sel("kpiguard_regression_threshold_ratio", *PM), "threshold", instant=True),
            Query(sel("kpiguard_regression_triggered", *PM), "triggered", instant=True),
        ), "Every policy's count windows at the end of the time range.", width=24, height=7),
    ))


def _time_windows() -> Row:
    return Row("Time windows (Prometheus recording rules)", (
        Panel("Success ratio: 5m, 1h and the 7d baseline", Kind.TIMESERIES, (
            Query(_rule("kpiguard_kpi_success:ratio_rate5m"), f"{_LEGEND} 5m"),
            Query(_rule("kpiguard_kpi_success:ratio_rate1h"), f"{_LEGEND} 1h"),
            Query(_rule("kpiguard_kpi_success:ratio_rate7d_offset1h"), f"{_LEGEND} 7d baseline"),
        ), "What KpiguardTimeWindowRegression compares: the last hour against the week before it.",
            unit="percentunit", min=0, max=1, dashed=".*baseline$"),
        Panel("Time-window drop of the success ratio", Kind.TIMESERIES, (
            Query(f"({_rule('kpiguard_kpi_success:ratio_rate7d_offset1h')}"
                  f" - {_rule('kpiguard_kpi_success:ratio_rate1h')})"
                  f" / (abs({_rule('kpiguard_kpi_success:ratio_rate7d_offset1h')}) > 0)", f"{_LEGEND} drop"),
            Query(sel("kpiguard_regression_threshold_ratio", *PM), f"{_LEGEND} threshold"),
        ), "(7d baseline - last hour) / baseline against the policy's threshold; the alert also needs "
           "min_events_to_enforce events in each window and holds for 10m.", unit="percentunit",
            dashed=".*threshold$"),
        Panel("Mean value: 1h and the 7d baseline", Kind.TIMESERIES, (
            Query(_rule("kpiguard_kpi_event_value:mean1h"), f"{_LEGEND} 1h"),
            Query(_rule("kpiguard_kpi_event_value:mean7d_offset1h"), f"{_LEGEND} 7d baseline"),
        ), "Mean of the events' value, for mean_value policies (CAPITAL.roi_event).", unit="none",
            dashed=".*baseline$"),
        Panel("KPI events per second", Kind.TIMESERIES, (
            Query(_rule("kpiguard_kpi_events:rate5m"), _LEGEND),
        ), "Event rate over 5 minutes, per domain and metric.", unit="reqps"),
    ))


def _enforcement() -> Row:
    denied = sel("kpiguard_risk_checks_total", 'outcome="denied"')
    return Row("Enforcement", (
        Panel("Risk denials by engine and reason", Kind.TIMESERIES,
              (Query(sum_by("engine, reason", rate(denied)), "{{engine}} {{reason}}"),),
              "Risk checks denied per second: policy_disabled while throttled, kill_switch while killed, "
              "and the daily exposure limits.", unit="reqps"),
        Panel("Risk denials in range", Kind.TABLE,
              (Query(sum_by("engine, reason", increase(denied)) + " > 0", "denials", instant=True),),
              "Denied risk checks in the dashboard's time range, by engine and reason.", decimals=0,
              no_value="no denials"),
        Panel("Risk policy by engine", Kind.STATE_TIMELINE,
              (Query("kpiguard_risk_policy_enabled", "{{engine}}"),),
              "Enabled, or THROTTLED by the tripwire until a person re-enables it.",
              mappings=_ENABLED, steps=(Step(None, "orange"), Step(1, "green"))),
        Panel("Kill switch over time", Kind.STATE_TIMELINE,
              (Query("max(kpiguard_kill_switch_engaged)", "kill switch"),),
              "The global kill switch.", mappings=_KILL, steps=_RED_FROM_1),
        Panel("Enforcement actions", Kind.TIMESERIES,
              (Query(sum_by("action, source", increase("kpiguard_enforcement_actions_total", "5m")),
                     "{{action}} by {{source}}"),),
              "Actions executed over 5 minutes, by action and by who executed them (evaluator, alertmanager, api).",
              decimals=0),
        Panel("Alertmanager webhook", Kind.TIMESERIES,
              (Query(sum_by("status, result", increase("kpiguard_webhook_alerts_total", "5m")),
                     "{{status}} {{result}}"),),
              "Alerts received from Alertmanager over 5 minutes, by status and what kpiguard did.", decimals=0),
    ))


def _governance() -> Row:
    triggers = "kpiguard_governance_triggers"
    return Row("Weekly governance", (
        Panel("Tripwire triggers this week", Kind.STAT,
              (Query(sum_by("action", triggers), "{{action}}"),),
              "Triggers per week by action, from the audit trail.", width=6, height=5, decimals=0,
              steps=(Step(None, "green"), Step(1, "orange"))),
        Panel("THROTTLE : KILL_SWITCH", Kind.STAT,
              (Query(f'sum({triggers}{{action="THROTTLE"}}) / (sum({triggers}{{action="KILL_SWITCH"}}) > 0)'),),
              "Throttles per kill switch this week: mostly throttles is the healthy shape.",
              width=6, height=5, unit="none", decimals=1, no_value="no KILL_SWITCH"),
        Panel("MTTR", Kind.STAT, (Query("max(kpiguard_governance_mttr_seconds)"),),
              "Mean time from a trigger to the re-enable. Above 4 h: lower the thresholds to fail faster.",
              width=6, height=5, unit="s", steps=(Step(None, "green"), Step(4 * 3600, "red"))),
        Panel("False-positive rate", Kind.STAT, (Query("max(kpiguard_governance_false_positive_ratio)"),),
              "Triggers marked false positive at re-enable. Above 10%: raise max_drop_fraction.",
              width=6, height=5, unit="percentunit", steps=(Step(None, "green"), Step(0.1, "red"))),
    ))


def tripwire_dashboard() -> Dashboard:
    """The Regression Tripwire dashboard."""
    return Dashboard(
        uid=UID,
        title=TITLE,
        description="Regression Tripwire: each policy's current and baseline windows, the drop against its "
                    "threshold, triggered state, risk denials, the kill switch, enforcement actions and the "
                    "weekly governance figures.",
        tags=("kpiguard", "tripwire"),
        variables=(
            Variable("domain", "Domain", "label_values(kpiguard_kpi_events_total, domain)"),
            Variable("metric", "Metric", 'label_values(kpiguard_kpi_events_total{domain=~"$domain"}, metric)'),
        ),
        rows=(_status(), _count_windows(), _time_windows(), _enforcement(), _governance()),
        annotations=(Annotation(
            name="Enforcement actions",
            # A counter series is born at 1 with its first action, which changes() cannot see: a series that did
            # not exist 2m ago counts as a change too.
            expr="sum by (action, source) (changes(kpiguard_enforcement_actions_total[2m]) > 0"
                 " or (kpiguard_enforcement_actions_total unless kpiguard_enforcement_actions_total offset 2m))",
            title="{{action}}", text="executed by {{source}}", tags=("action", "source"),
        ),),
    )
