"""Reading dashboards back: every PromQL expression with its variables filled in, and the metric names it uses."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# Grafana's built-in interval variables, replaced by a window that holds several scrapes of any sane setup.
BUILT_INS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")


def substitute(expr: str, value: str = ".+", built_ins: Mapping[str, str] = BUILT_INS) -> str:
    """Replace Grafana variables: built-in intervals by durations, every template variable by ``value``."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return built_ins.get(name, value)

    return _VARIABLE.sub(replace, expr)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def raw_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL as written) of every panel target and Prometheus annotation, in dashboard order."""
    found = []
    for panel in _panels(list(dashboard.get("panels", []))):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append((panel.get("title", ""), target["expr"]))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            found.append((f"annotation: {annotation.get('name', '')}", annotation["expr"]))
    return found


def dashboard_queries(
    dashboard_json: Mapping[str, Any], value: str = ".+", built_ins: Mapping[str, str] = BUILT_INS,
) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query, template variables replaced by ``value`` so that it runs as is."""
    return [(title, substitute(expr, value, built_ins)) for title, expr in raw_queries(dashboard_json)]


def variable_queries(dashboard_json: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(variable name, label_values(...) query) of every query template variable."""
    found = []
    for variable in dashboard_json.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            found.append((variable["name"], query["query"] if isinstance(query, dict) else query))
    return found


# --- metric names in an expression ------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless",
    "atan2", "inf", "nan",
})


def metric_names(expr: str) -> set[str]:
    """Metric and recording-rule names an expression selects (not functions, keywords, labels or durations)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"#[^\n]*", "", text)
    text = _BRACES.sub("{}", text)
    text = _BRACKETS.sub("[]", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names
