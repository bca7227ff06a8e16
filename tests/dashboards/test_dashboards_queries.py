"""Every dashboard query parses (promtool), names only recording rules that exist and metrics that are exported."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from kpiguard.dashboards import (
    PLANNED_METRICS,
    dashboard_queries,
    exposed_names,
    generate_files,
    metric_names,
    substitute,
    variable_queries,
)
from kpiguard.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = {name: json.loads(text) for name, text in generate_files().items()}
ALL_QUERIES = [(name, title, expr) for name, d in DASHBOARDS.items() for title, expr in dashboard_queries(d)]


@functools.cache
def _rule_exprs() -> dict[str, str]:
    """Recording rule name -> expression, over rules/*.yml."""
    exprs = {}
    for path in (REPO / "rules").glob("*.yml"):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in document.get("groups", []) if isinstance(document, dict) else []:
            exprs.update((rule["record"], rule["expr"]) for rule in group.get("rules", []) if "record" in rule)
    return exprs


def _recording_rules() -> frozenset[str]:
    return frozenset(_rule_exprs())


@functools.cache
def _declared() -> frozenset[str]:
    """Sample names kpiguard's exposition really writes, plus the documented names of other parts."""
    metrics = Metrics(CollectorRegistry())
    return frozenset(exposed_names(metrics.registry, vars(metrics).values()) | set(PLANNED_METRICS))


def _unknown(expr: str, declared: frozenset[str], rules: frozenset[str]) -> set[str]:
    """Names in ``expr`` that are neither a recording rule of rules/ nor a declared metric."""
    return {n for n in metric_names(expr) if n not in (rules if ":" in n else declared)}


def _label_values_selector(query: str) -> str:
    """The series selector inside label_values(selector, label)."""
    match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
    assert match, query
    return match.group(1)


@pytest.mark.parametrize("expr, names", [
    ('sum by (domain, metric) (rate(kpiguard_kpi_events_total{outcome="success"}[5m]))',
     {"kpiguard_kpi_events_total"}),
    ("histogram_quantile(0.99, sum by (le, route) (rate(kpiguard_http_request_duration_seconds_bucket[5m])))",
     {"kpiguard_http_request_duration_seconds_bucket"}),
    ("count(kpiguard_risk_policy_enabled == 0) or vector(0)", {"kpiguard_risk_policy_enabled"}),
    ("a_total / on (domain) group_left (engine) b_ratio > bool 0.5", {"a_total", "b_ratio"}),
    ('x{route=~"kpiguard_not_a_metric"} unless y offset 1h', {"x", "y"}),
    ("domain_metric:kpiguard_kpi_success:ratio_rate7d_offset1h - 1e3", {"domain_metric:kpiguard_kpi_success:ratio_rate7d_offset1h"}),
    ("max without (instance) (up) + Inf", {"up"}),
])
def test_metric_names_finds_selected_names_only(expr, names):
    """Metric names are found; functions, keywords, labels, strings, durations and numbers are not."""
    assert metric_names(expr) == names


@pytest.mark.parametrize("expr, expected", [
    ('x{d=~"$domain"}', 'x{d=~".+"}'),
    ('x{d=~"${domain}"}', 'x{d=~".+"}'),
    ('x{d=~"${domain:regex}"}', 'x{d=~".+"}'),
    ('x{d=~"[[domain]]"}', 'x{d=~".+"}'),
    ("rate(x[$__rate_interval])", "rate(x[5m])"),
    ("increase(x[$__range])", "increase(x[1h])"),
])
def test_substitute_fills_in_every_variable_syntax(expr, expected):
    """Grafana's $v, ${v}, ${v:fmt} and [[v]] become the value; built-in intervals become durations."""
    assert substitute(expr) == expected


def test_a_typo_in_a_metric_or_rule_name_is_caught():
    """The name check rejects a misspelt metric and a recording rule that rules/ does not define."""
    declared, rules = _declared(), _recording_rules()
    assert _unknown("rate(kpiguard_kpi_event_total[5m])", declared, rules) == {"kpiguard_kpi_event_total"}
    assert _unknown("domain_metric:kpiguard_kpi_success:ratio_rate2h", declared, rules) == {
        "domain_metric:kpiguard_kpi_success:ratio_rate2h"}
    assert _unknown("rate(kpiguard_kpi_events_total[5m])", declared, rules) == set()
    # Declared yet never written: the client drops a histogram's _sum once a bucket is negative.
    assert _unknown("kpiguard_kpi_event_value_sum", declared, rules) == {"kpiguard_kpi_event_value_sum"}


USED_RULES = sorted({n for _, _, expr in ALL_QUERIES for n in metric_names(expr) if ":" in n})


@pytest.mark.parametrize("rule", USED_RULES)
def test_recording_rules_the_panels_use_read_exported_series(rule):
    """A recording rule a panel shows reads only series kpiguard exports, so that the panel can have data."""
    exprs, seen, todo, inputs = _rule_exprs(), set(), [rule], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for used in metric_names(exprs[name]):
            if used in exprs:
                todo.append(used)  # a rule built on another rule: follow it to the exported series
            else:
                inputs.add(used)
    assert inputs and inputs <= _declared(), sorted(inputs - _declared())


@pytest.mark.parametrize("name, title, expr", ALL_QUERIES, ids=[f"{n}:{t}" for n, t, _ in ALL_QUERIES])
def test_every_name_a_panel_uses_exists(name, title, expr):
    """Each query selects only recording rules of rules/*.yml and metrics kpiguard declares (or documents)."""
    assert metric_names(expr), f"{title} selects nothing"
    assert _unknown(expr, _declared(), _recording_rules()) == set()


def test_variable_queries_select_declared_metrics():
    """label_values() of every template variable reads a declared metric."""
    declared = _declared()
    for dashboard in DASHBOARDS.values():
        for variable, query in variable_queries(dashboard):
            assert metric_names(_label_values_selector(query)) <= declared, variable


def test_dashboards_use_the_recording_rules():
    """Panels read the Tripwire's recording rules rather than recomputing them."""
    used = {n for _, _, expr in ALL_QUERIES for n in metric_names(expr) if ":" in n}
    assert {"domain_metric:kpiguard_kpi_success:ratio_rate5m", "domain_metric:kpiguard_kpi_success:ratio_rate1h",
            "domain_metric:kpiguard_kpi_success:ratio_rate7d_offset1h",
            "domain_metric:kpiguard_kpi_events:rate5m"} <= used


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (tests/run.sh installs it)")
def test_every_expression_parses_with_promtool(tmp_path):
    """All panel, annotation and variable expressions, variables filled in, pass `promtool check rules`."""
    exprs = [expr for _, _, expr in ALL_QUERIES]
    exprs += [substitute(_label_values_selector(q)) for d in DASHBOARDS.values() for _, q in variable_queries(d)]
    rules = [{"record": f"dashboard:query_{i}:check", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (tests/run.sh installs it)")
def test_promtool_rejects_a_broken_expression(tmp_path):
    """The promtool check above can fail: an unbalanced expression is refused."""
    path = tmp_path / "broken.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [
        {"record": "dashboard:broken", "expr": substitute('sum(rate(x{d=~"$domain"}[$__rate_interval])')}]}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
