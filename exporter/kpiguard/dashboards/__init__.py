"""Grafana dashboards from code: the Regression Tripwire, the drift monitor and kpiguard itself."""

from kpiguard.dashboards._drift import drift_dashboard
from kpiguard.dashboards._files import dashboards, diff_files, generate_command, generate_files, to_json, write_files
from kpiguard.dashboards._grafana import DATASOURCE, DATASOURCE_VARIABLE, GENERATED_KEY, GENERATED_NOTE, render
from kpiguard.dashboards._model import Annotation, Dashboard, Kind, Mapping, Panel, Query, Row, Step, Variable
from kpiguard.dashboards._names import PLANNED_METRICS, exported_names, exposed_names, sample_names
from kpiguard.dashboards._queries import (
    BUILT_INS,
    dashboard_queries,
    metric_names,
    raw_queries,
    substitute,
    variable_queries,
)
from kpiguard.dashboards._service import service_dashboard
from kpiguard.dashboards._tripwire import tripwire_dashboard

__all__ = [
    "BUILT_INS",
    "DATASOURCE",
    "DATASOURCE_VARIABLE",
    "GENERATED_KEY",
    "GENERATED_NOTE",
    "PLANNED_METRICS",
    "Annotation",
    "Dashboard",
    "Kind",
    "Mapping",
    "Panel",
    "Query",
    "Row",
    "Step",
    "Variable",
    "dashboard_queries",
    "dashboards",
    "diff_files",
    "drift_dashboard",
    "exported_names",
    "exposed_names",
    "generate_command",
    "generate_files",
    "metric_names",
    "raw_queries",
    "render",
    "sample_names",
    "service_dashboard",
    "substitute",
    "to_json",
    "tripwire_dashboard",
    "variable_queries",
    "write_files",
]
