"""The drift monitor dashboard: reliability rates against their baselines, latency, health score, open alerts."""

from __future__ import annotations

from kpiguard.dashboards._model import Dashboard, Kind, Panel, Query, Row, Step, Variable
from kpiguard.dashboards._promql import quantile, rate, ratio, sel, sum_by, var

UID = "kpiguard-drift"
TITLE = "kpiguard Drift Monitor"

BUCKET = ("granularity" + var("granularity"), "scope" + var("scope"))
BASELINE = ("baseline" + var("baseline"), "scope" + var("scope"))
BACKEND = "backend" + var("backend")
EVENTS = "kpiguard_telemetry_events_total"
DURATION = "kpiguard_telemetry_request_duration_seconds"
_HEALTH_STEPS = (Step(None, "red"), Step(50, "orange"), Step(80, "green"))


def _live(part: str) -> str:
    """A live ratio of telemetry counters over the rate interval (not the monitor's computed buckets)."""
    return ratio(rate(part), rate(sel(EVENTS, BACKEND)))


def _versus(title: str, signal: str, live: str, description: str) -> Panel:
    """A rate of the newest bucket against its rolling baseline, and the same rate live from the counters."""
    return Panel(title, Kind.TIMESERIES, (
        Query(sel(f"kpiguard_monitor_{signal}_ratio", *BUCKET), "{{granularity}} bucket {{scope}}"),
        Query(sel(f"kpiguard_monitor_baseline_{signal}_ratio", *BASELINE), "baseline {{baseline}} {{scope}}"),
        Query(live, "live"),
    ), description, width=8, unit="percentunit", dashed="^baseline.*")


def _status() -> Row:
    return Row("Now", (
        Panel("Health score", Kind.STAT, (Query(sel("kpiguard_monitor_health_score", *BUCKET),
                                                "{{granularity}} {{scope}}"),),
              "0..100 = success × 50 + (1 - min(1, fallback × 5)) × 30 + (1 - min(1, duplicate × 3)) × 20 of the "
              "newest bucket; health_decline fires under 50.", width=6, height=5, unit="none", min=0, max=100,
              decimals=1, steps=_HEALTH_STEPS),
        Panel("Baseline health score", Kind.STAT, (Query(sel("kpiguard_monitor_baseline_health_score", *BASELINE),
                                                         "{{baseline}} {{scope}}"),),
              "Health score of the rolling baseline.", width=6, height=5, unit="none", min=0, max=100, decimals=1,
              steps=_HEALTH_STEPS),
        Panel("Open alerts by severity", Kind.STAT,
              (Query(sum_by("severity", 'kpiguard_monitor_alerts_active{status="open"}'), "{{severity}}"),),
              "Drift alerts open now (not yet acknowledged or resolved).", width=6, height=5, decimals=0,
              steps=(Step(None, "green"), Step(1, "red"))),
        Panel("Events in the newest bucket", Kind.STAT,
              (Query(sel("kpiguard_monitor_events", *BUCKET), "{{granularity}} {{scope}}"),),
              "Traffic events counted in the newest computed hour and day.", width=6, height=5, decimals=0),
    ))


def _reliability() -> Row:
    return Row("Reliability against the baseline", (
        _versus("Fallback rate", "fallback", _live(sel("kpiguard_telemetry_fallbacks_total", BACKEND)),
                "fallback_events / total_events; fallback_spike fires at 1.5×, 2× and 3× the baseline."),
        _versus("Error rate", "error", _live(sel(EVENTS, 'outcome="failure"', BACKEND)),
                "failed_events / total_events; error_spike fires at 1.5×, 2× and 3× the baseline."),
        Panel("Duplicate rate", Kind.TIMESERIES, (
            Query(sel("kpiguard_monitor_duplicate_ratio", *BUCKET), "{{granularity}} bucket {{scope}}"),
            Query(sel("kpiguard_monitor_baseline_duplicate_ratio", *BASELINE), "baseline {{baseline}} {{scope}}"),
        ), "duplicate_events / received events (replays and retries); duplicate_spike fires at 1.5×, 2× and 3× "
           "the baseline.", width=8, unit="percentunit", dashed="^baseline.*"),
        Panel("Health score over time", Kind.TIMESERIES, (
            Query(sel("kpiguard_monitor_health_score", *BUCKET), "{{granularity}} {{scope}}"),
            Query(sel("kpiguard_monitor_baseline_health_score", *BASELINE), "baseline {{baseline}} {{scope}}"),
        ), "The newest bucket's health score against the baseline's.", width=12, unit="none", min=0, max=100,
            dashed="^baseline.*"),
        Panel("Success rate", Kind.TIMESERIES, (
            Query(sel("kpiguard_monitor_success_ratio", *BUCKET), "{{granularity}} bucket {{scope}}"),
        ), "Success rate of the newest bucket.", width=12, unit="percentunit", min=0, max=1),
    ))


def _latency() -> Row:
    return Row("Latency", (
        Panel("Latency percentiles (live, from the histogram)", Kind.TIMESERIES, tuple(
            Query(quantile(q, DURATION, "", BACKEND), f"p{round(q * 100)}") for q in (0.5, 0.75, 0.9, 0.95, 0.99)
        ) + (Query(sel("kpiguard_monitor_baseline_latency_p95_seconds", *BASELINE), "baseline p95 {{baseline}}"),),
            "histogram_quantile of kpiguard_telemetry_request_duration_seconds, against the baseline's p95 "
            "(latency_spike fires at 1.5×, 2× and 3× it).", unit="s", dashed="^baseline.*"),
        Panel("Latency p95 by backend", Kind.TIMESERIES,
              (Query(quantile(0.95, DURATION, "backend", BACKEND), "{{backend}}"),),
              "Live p95 per backend.", unit="s"),
        Panel("Latency of the newest bucket", Kind.TIMESERIES,
              (Query(sel("kpiguard_monitor_latency_seconds", *BUCKET), "{{granularity}} {{stat}}"),),
              "p50, p75, p90, p95, p99, avg, min and max as the monitor computed them for the newest bucket.",
              width=24, unit="s"),
    ))


def _traffic() -> Row:
    return Row("Traffic and alerts", (
        Panel("Telemetry events by outcome", Kind.TIMESERIES,
              (Query(sum_by("outcome", rate(sel(EVENTS, BACKEND))), "{{outcome}}"),),
              "Events stored as traffic per second.", width=8, unit="reqps"),
        Panel("Telemetry events by model and backend", Kind.TIMESERIES,
              (Query(sum_by("model, backend", rate(sel(EVENTS, BACKEND))), "{{model}} on {{backend}}"),),
              "The model and backend distribution.", width=8, unit="reqps"),
        Panel("Fallbacks by model and backend", Kind.TIMESERIES,
              (Query(sum_by("model, backend", rate(sel("kpiguard_telemetry_fallbacks_total", BACKEND))),
                     "{{model}} on {{backend}}"),),
              "Events whose request chain fell back, per second.", width=8, unit="reqps"),
        Panel("Open and acknowledged alerts by severity", Kind.TIMESERIES,
              (Query(sum_by("severity", "kpiguard_monitor_alerts_active"), "{{severity}}"),),
              "Drift alerts not yet resolved.", decimals=0),
        Panel("Active alerts", Kind.TABLE,
              (Query(sum_by("type, severity, status", "kpiguard_monitor_alerts_active") + " > 0", "alerts",
                     instant=True),),
              "Drift alerts not yet resolved, by type (fallback_spike, error_spike, latency_spike, duplicate_spike, "
              "health_decline), severity and status.", decimals=0, no_value="no active alerts"),
    ))


def drift_dashboard() -> Dashboard:
    """The drift monitor dashboard."""
    return Dashboard(
        uid=UID,
        title=TITLE,
        description="Drift monitor: fallback, error and duplicate rates against their rolling baselines, latency "
                    "percentiles, the health score and the open drift alerts by severity.",
        tags=("kpiguard", "drift"),
        variables=(
            Variable("granularity", "Bucket", "label_values(kpiguard_monitor_health_score, granularity)"),
            Variable("scope", "Scope", "label_values(kpiguard_monitor_health_score, scope)"),
            Variable("baseline", "Baseline", "label_values(kpiguard_monitor_baseline_health_score, baseline)"),
            Variable("backend", "Backend", "label_values(kpiguard_telemetry_events_total, backend)"),
        ),
        rows=(_status(), _reliability(), _latency(), _traffic()),
    )
