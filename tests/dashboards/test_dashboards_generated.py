"""The checked-in dashboards are the generator's output, and their structure is what Grafana and the e2e test need."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kpiguard.cli import main
from kpiguard.dashboards import (
    DATASOURCE,
    GENERATED_KEY,
    BUILT_INS,
    dashboard_queries,
    generate_files,
    raw_queries,
    variable_queries,
)
from kpiguard.rulegen._rules import DASHBOARD_PATH

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "grafana" / "dashboards"
EXPECTED_UIDS = {
    "kpiguard-tripwire.json": "kpiguard-tripwire",
    "kpiguard-drift.json": "kpiguard-drift",
    "kpiguard-service.json": "kpiguard-service",
}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "state-timeline"}


def _load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_checked_in_files_are_the_generators_output():
    """grafana/dashboards holds exactly the generated files, byte for byte: regenerate after changing the code."""
    files = generate_files()
    on_disk = {p.name for p in DASHBOARDS.glob("*.json")}
    assert on_disk == set(files)
    for name, content in files.items():
        assert (DASHBOARDS / name).read_text(encoding="utf-8") == content, f"{name} is out of date"


def test_generation_is_deterministic():
    """Two runs of the generator give the same texts."""
    assert generate_files() == generate_files()


def test_cli_check_passes_on_the_repository(capsys):
    """`kpiguard dashboards generate --check` exits 0 on the checked-in directory."""
    assert main(["dashboards", "generate", "--out", str(DASHBOARDS), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_writes_then_check_detects_an_edit_and_a_stale_file(tmp_path, capsys):
    """Generate writes every file; an edited file and a stale generated file fail --check; a rerun repairs both."""
    out = tmp_path / "dashboards"
    assert main(["dashboards", "generate", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == sorted(EXPECTED_UIDS)
    edited = out / "kpiguard-drift.json"
    edited.write_text(edited.read_text().replace("Health score", "Health"), encoding="utf-8")
    (out / "old.json").write_text(json.dumps({GENERATED_KEY: "x", "uid": "old"}), encoding="utf-8")
    (out / "mine.json").write_text(json.dumps({"uid": "hand-made"}), encoding="utf-8")
    capsys.readouterr()
    assert main(["dashboards", "generate", "--out", str(out), "--check"]) == 1
    printed = capsys.readouterr().out
    assert "kpiguard-drift.json" in printed and "old.json" in printed and "mine.json" not in printed
    assert main(["dashboards", "generate", "--out", str(out)]) == 0
    assert not (out / "old.json").exists() and (out / "mine.json").exists()
    assert main(["dashboards", "generate", "--out", str(out), "--check"]) == 0


@pytest.mark.parametrize("name, uid", sorted(EXPECTED_UIDS.items()))
def test_uid_is_stable_and_the_file_says_it_is_generated(name, uid):
    """Each file keeps its uid (links depend on it) and tells a reader, in fields Grafana ignores, not to edit it."""
    dashboard = _load(name)
    assert dashboard["uid"] == uid
    assert "kpiguard dashboards generate" in dashboard[GENERATED_KEY]
    assert "do not edit" in dashboard["description"]
    assert dashboard["schemaVersion"] == 39


def test_uids_and_titles_are_unique():
    """No two dashboards share a uid or a title."""
    dashboards = [_load(n) for n in EXPECTED_UIDS]
    assert len({d["uid"] for d in dashboards}) == len({d["title"] for d in dashboards}) == len(dashboards)


def test_alert_dashboard_links_point_at_the_tripwire_dashboard():
    """The generated alerts' dashboard_url (/d/<uid>/<slug>) names the Tripwire dashboard's uid and slug."""
    dashboard = _load("kpiguard-tripwire.json")
    slug = re.sub(r"[^a-z0-9]+", "-", dashboard["title"].lower()).strip("-")
    assert DASHBOARD_PATH == f"/d/{dashboard['uid']}/{slug}"


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_every_panel_and_target_uses_the_datasource_variable(name):
    """Panels, targets, query variables and Prometheus annotations all name ${datasource}, never a fixed uid."""
    dashboard = _load(name)
    templating = dashboard["templating"]["list"]
    assert templating[0] == {**templating[0], "name": "datasource", "type": "datasource", "query": "prometheus"}
    for panel in _panels(dashboard):
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in templating[1:]:
        assert variable["datasource"] == DATASOURCE, variable["name"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == DATASOURCE


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_panel_ids_are_unique_and_panels_do_not_overlap(name):
    """Ids are unique and no two panels share a grid cell; every panel fits in the 24 columns."""
    panels = _load(name)["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells.get((x, y))}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_template_variables_are_defined_and_matched_as_regexes(name):
    """Every variable an expression uses is defined, and used as =~"$var" so that All (.+) and multi-values work."""
    dashboard = _load(name)
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    for title, expr in raw_queries(dashboard) + variable_queries(dashboard):
        for used in re.findall(r"\$\{?(\w+)", expr):
            assert used in defined or used in BUILT_INS, f"{title}: ${used} is not defined"
            if used not in BUILT_INS:
                assert re.search(rf'=~"\${used}"', expr), f"{title}: ${used} not used as =~\"${used}\""
    for variable in dashboard["templating"]["list"][1:]:
        assert variable["allValue"] == ".+" and variable["multi"] and variable["includeAll"]


@pytest.mark.parametrize("name", ["kpiguard-tripwire.json", "kpiguard-service.json"])
def test_domain_and_metric_variables_come_from_the_kpi_counter(name):
    """The KPI dashboards offer domain and metric from kpiguard_kpi_events_total, metric narrowed by domain."""
    queries = dict(variable_queries(_load(name)))
    assert queries["domain"] == "label_values(kpiguard_kpi_events_total, domain)"
    assert queries["metric"] == 'label_values(kpiguard_kpi_events_total{domain=~"$domain"}, metric)'


def test_dashboard_queries_fill_in_variables_and_cover_every_target():
    """dashboard_queries returns one (title, PromQL) per target and annotation, with no Grafana variable left."""
    for name in EXPECTED_UIDS:
        dashboard = _load(name)
        queries = dashboard_queries(dashboard)
        targets = sum(len(p["targets"]) for p in _panels(dashboard))
        annotations = sum(1 for a in dashboard["annotations"]["list"] if "expr" in a)
        assert len(queries) == targets + annotations
        for title, expr in queries:
            assert "$" not in expr and "[[" not in expr, f"{title}: {expr}"
    tripwire = dict(dashboard_queries(_load("kpiguard-tripwire.json")))
    assert tripwire["Triggered policies"] == 'sum(kpiguard_regression_triggered{domain=~".+",metric=~".+"})'
    assert "annotation: Enforcement actions" in tripwire


@pytest.mark.parametrize("name, wanted", [
    ("kpiguard-tripwire.json", {"Current vs baseline", "Drop vs threshold", "Triggered", "Kill switch",
                                "Risk denials by engine and reason", "MTTR", "False-positive rate",
                                "Tripwire triggers this week"}),
    ("kpiguard-drift.json", {"Fallback rate", "Error rate", "Duplicate rate", "Health score",
                             "Latency percentiles (live, from the histogram)", "Open alerts by severity"}),
    ("kpiguard-service.json", {"KPI events by domain and metric", "Latency p50 by route", "Latency p99 by route",
                               "Error ratio by route", "Evaluation time", "Label pairs vs cap",
                               "Dropped samples in range"}),
])
def test_each_dashboard_has_the_panels_the_issue_asks_for(name, wanted):
    """The panels issue 7 lists are on their dashboard."""
    titles = {p["title"] for p in _panels(_load(name))}
    assert wanted <= titles, wanted - titles


def test_drift_latency_percentiles_come_from_the_histogram():
    """Latency percentiles are histogram_quantile over the telemetry histogram's buckets."""
    queries = [q for t, q in dashboard_queries(_load("kpiguard-drift.json")) if t.startswith("Latency percentiles")]
    quantiles = [q for q in queries if q.startswith("histogram_quantile(")]
    assert {float(q.split("(")[1].split(",")[0]) for q in quantiles} == {0.5, 0.75, 0.9, 0.95, 0.99}
    assert all("kpiguard_telemetry_request_duration_seconds_bucket" in q for q in quantiles)


def test_enforcement_actions_are_annotations_on_the_tripwire_dashboard():
    """Changes of kpiguard_enforcement_actions_total mark the time axis, titled by action."""
    annotations = [a for a in _load("kpiguard-tripwire.json")["annotations"]["list"] if "expr" in a]
    assert len(annotations) == 1
    assert "kpiguard_enforcement_actions_total" in annotations[0]["expr"]
    assert annotations[0]["titleFormat"] == "{{action}}"
