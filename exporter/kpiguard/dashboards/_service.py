"""The dashboard of kpiguard itself: ingest, HTTP latency and errors, evaluation time, label cardinality."""

from __future__ import annotations

from kpiguard.dashboards._model import Dashboard, Kind, Panel, Query, Row, Step, Variable
from kpiguard.dashboards._promql import increase, quantile, rate, ratio, sel, sum_by, var

UID = "kpiguard-service"
TITLE = "kpiguard Service"

PM = ("domain" + var("domain"), "metric" + var("metric"))
ROUTE = "route" + var("route")
REQUESTS = "kpiguard_http_requests_total"
HTTP_DURATION = "kpiguard_http_request_duration_seconds"


def _status() -> Row:
    return Row("Now", (
        Panel("Version", Kind.STAT, (Query("max by (version, python) (kpiguard_build_info)",
                                           "{{version}} (Python {{python}})"),),
              "The running build.", width=6, height=4, unit="none", text_mode="name"),
        Panel("KPI events per second", Kind.STAT,
              (Query(f"sum({sel('domain_metric:kpiguard_kpi_events:rate5m', *PM)})"),),
              "All selected KPI events over 5 minutes.", width=6, height=4, unit="reqps"),
        Panel("Label pairs used", Kind.STAT, (Query("max(kpiguard_label_pairs) / max(kpiguard_label_pairs_cap)"),),
              "Exported (domain, metric) pairs as a share of max_label_pairs; past the cap new pairs are stored but "
              "not exported.", width=6, height=4, unit="percentunit", min=0, max=1,
              steps=(Step(None, "green"), Step(0.8, "orange"), Step(1, "red"))),
        Panel("Dropped samples in range", Kind.STAT,
              (Query(f"sum({increase('kpiguard_series_dropped_total')})", instant=True),),
              "KPI samples not exported because the label cap was reached (the events are stored).",
              width=6, height=4, decimals=0, steps=(Step(None, "green"), Step(1, "red"))),
    ))


def _ingest() -> Row:
    return Row("Ingest", (
        Panel("KPI events by domain and metric", Kind.TIMESERIES,
              (Query(sel("domain_metric:kpiguard_kpi_events:rate5m", *PM), "{{domain}}.{{metric}}"),),
              "Events stored per second over 5 minutes (recording rule).", width=8, unit="reqps"),
        Panel("KPI events by outcome", Kind.TIMESERIES,
              (Query(sum_by("outcome", rate(sel("kpiguard_kpi_events_total", *PM))), "{{outcome}}"),),
              "Success and failure events per second.", width=8, unit="reqps"),
        Panel("Duplicates by kind", Kind.TIMESERIES,
              (Query(sum_by("kind", rate("kpiguard_ingest_duplicates_total")), "{{kind}}"),),
              "Events or requests not stored again because their id or idempotency key was seen.",
              width=8, unit="reqps"),
        Panel("Batch size", Kind.TIMESERIES, (
            Query(quantile(0.5, "kpiguard_ingest_batch_size_events", "endpoint"), "p50 {{endpoint}}"),
            Query(quantile(0.99, "kpiguard_ingest_batch_size_events", "endpoint"), "p99 {{endpoint}}"),
        ), "Events per accepted ingest request.", unit="none"),
        Panel("Label pairs vs cap", Kind.TIMESERIES, (
            Query("max(kpiguard_label_pairs)", "pairs"),
            Query("max(kpiguard_label_pairs_cap)", "cap"),
            Query(f"sum({rate('kpiguard_series_dropped_total')})", "dropped samples/s"),
        ), "Distinct (domain, metric) pairs exported, the cap, and samples dropped past it.", dashed="^cap$"),
    ))


def _http() -> Row:
    requests = sel(REQUESTS, ROUTE)
    return Row("HTTP", (
        Panel("Requests by route", Kind.TIMESERIES,
              (Query(sum_by("route", rate(requests)), "{{route}}"),), "Requests answered per second.",
              width=12, unit="reqps"),
        Panel("Requests by status code", Kind.TIMESERIES,
              (Query(sum_by("code", rate(requests)), "{{code}}"),), "Requests answered per second, by status.",
              width=12, unit="reqps"),
        Panel("Latency p50 by route", Kind.TIMESERIES,
              (Query(quantile(0.5, HTTP_DURATION, "route", ROUTE), "{{route}}"),), "Median time to answer.",
              width=8, unit="s"),
        Panel("Latency p99 by route", Kind.TIMESERIES,
              (Query(quantile(0.99, HTTP_DURATION, "route", ROUTE), "{{route}}"),), "99th percentile time to answer.",
              width=8, unit="s"),
        Panel("Error ratio by route", Kind.TIMESERIES, (
            Query(ratio(rate(sel(REQUESTS, ROUTE, 'code=~"5.."')), rate(requests), "route"), "5xx {{route}}"),
            Query(ratio(rate(sel(REQUESTS, ROUTE, 'code=~"4.."')), rate(requests), "route"), "4xx {{route}}"),
        ), "Share of requests answered 5xx (kpiguard's fault) and 4xx (the client's).", width=8,
            unit="percentunit", dashed="^4xx.*"),
    ))


def _evaluation() -> Row:
    return Row("Evaluation and Alertmanager", (
        Panel("Evaluation time", Kind.TIMESERIES, (
            Query(quantile(0.5, "kpiguard_evaluation_duration_seconds", "trigger"), "p50 {{trigger}}"),
            Query(quantile(0.99, "kpiguard_evaluation_duration_seconds", "trigger"), "p99 {{trigger}}"),
        ), "Time to evaluate one round of policies, by what triggered it.", width=8, unit="s"),
        Panel("Evaluations by result", Kind.TIMESERIES,
              (Query(sum_by("result", rate("kpiguard_evaluations_total")), "{{result}}"),),
              "Policy evaluations per second: ok, held, insufficient_data, triggered, rearming.", width=8,
              unit="reqps"),
        Panel("Webhook alerts by result", Kind.TIMESERIES,
              (Query(sum_by("status, result", rate("kpiguard_webhook_alerts_total")), "{{status}} {{result}}"),),
              "Alertmanager alerts received per second, by status and what was done.", width=8, unit="reqps"),
    ))


def service_dashboard() -> Dashboard:
    """The dashboard of kpiguard itself."""
    return Dashboard(
        uid=UID,
        title=TITLE,
        description="kpiguard itself: ingest rate, HTTP latency p50/p99 and error ratio by route, evaluation "
                    "time, dropped series and label pairs against the cap.",
        tags=("kpiguard", "service"),
        variables=(
            Variable("domain", "Domain", "label_values(kpiguard_kpi_events_total, domain)"),
            Variable("metric", "Metric", 'label_values(kpiguard_kpi_events_total{domain=~"$domain"}, metric)'),
            Variable("route", "Route", "label_values(kpiguard_http_requests_total, route)"),
        ),
        rows=(_status(), _ingest(), _http(), _evaluation()),
        time_from="now-1h",
    )
