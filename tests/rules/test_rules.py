"""The rule generator: rule names and labels, generated files, the write/check layer, and the checked-in rules/."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from kpiguard.rulegen import (
    COUNT_WINDOW_ALERT,
    GENERATED_HEADER,
    RULES_FILE,
    TIME_WINDOW_ALERT,
    RuleOptions,
    diff_files,
    duration,
    generate_command,
    generate_files,
    outcome,
    recording_rule_names,
    rule_groups,
    scenarios_for,
    simulate,
    write_files,
)
from kpiguard.tripwire import SEED_POLICIES, Action, Guard, Policy, load_policies

ROOT = Path(__file__).resolve().parents[2]
ENABLED = [dataclasses.replace(p, enabled=True) for p in SEED_POLICIES]
WHOLESALE, OFFERS, BUYER_MATCH, CAPITAL = ENABLED


def _alerts(policies: list[Policy]) -> list[dict]:
    """The alerting rules generated for the policies."""
    return [rule for group in rule_groups(policies) for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (300, "5m"), (3600, "1h"), (5400, "90m"), (604800, "7d")],
)
def test_durations_in_prometheus_form(seconds: int, text: str) -> None:
    """Seconds become the largest exact Prometheus unit."""
    assert duration(seconds) == text


def test_recording_rule_names_follow_level_metric_operations() -> None:
    """The names the dashboards use, for the default windows, in file order."""
    assert recording_rule_names() == (
        "domain_metric:kpiguard_kpi_events:rate5m",
        "domain_metric:kpiguard_kpi_events:rate1h",
        "domain_metric:kpiguard_kpi_events:rate7d_offset1h",
        "domain_metric:kpiguard_kpi_events:increase1h",
        "domain_metric:kpiguard_kpi_events:increase7d_offset1h",
        "domain_metric:kpiguard_kpi_success:ratio_rate5m",
        "domain_metric:kpiguard_kpi_success:ratio_rate1h",
        "domain_metric:kpiguard_kpi_success:ratio_rate7d_offset1h",
        "domain_metric:kpiguard_kpi_event_value_count:increase1h",
        "domain_metric:kpiguard_kpi_event_value_count:increase7d_offset1h",
        "domain_metric:kpiguard_kpi_event_value:mean5m",
        "domain_metric:kpiguard_kpi_event_value:mean1h",
        "domain_metric:kpiguard_kpi_event_value:mean7d_offset1h",
    )


def test_windows_follow_the_options() -> None:
    """Other windows change the names and the ranges; the baseline always ends where the compared window starts."""
    options = RuleOptions(short_windows=(60, 1800), baseline_window=86400)
    names = recording_rule_names(options)
    assert "domain_metric:kpiguard_kpi_success:ratio_rate1d_offset30m" in names
    rules = {rule["record"]: rule["expr"] for rule in rule_groups([], options)[0]["rules"]}
    assert "[1d] offset 30m" in rules["domain_metric:kpiguard_kpi_events:rate1d_offset30m"]
    assert "[1m]" in rules["domain_metric:kpiguard_kpi_events:rate1m"]


def test_recording_rules_read_only_the_exported_metric_names() -> None:
    """The rules use exactly the names metrics.py declares, aggregated to (domain, metric)."""
    exprs = [rule["expr"] for rule in rule_groups([])[0]["rules"]]
    assert all("sum by (domain, metric)" in expr for expr in exprs)
    text = "\n".join(exprs)
    for name in ("kpiguard_kpi_events_total", "kpiguard_kpi_event_value_positive_total",
                 "kpiguard_kpi_event_value_negative_total", "kpiguard_kpi_event_value_count"):
        assert name in text
    assert 'outcome="success"' in text


def test_one_group_recording_rules_first_then_two_alerts_per_enabled_policy() -> None:
    """Alerts come after the recording rules they read, sorted by (domain, metric); disabled policies get none."""
    policies = [WHOLESALE, dataclasses.replace(OFFERS, enabled=False), CAPITAL, BUYER_MATCH]
    (group,) = rule_groups(policies)
    kinds = ["record" if "record" in rule else "alert" for rule in group["rules"]]
    assert kinds == sorted(kinds, key=lambda kind: kind != "record")
    alerts = [rule for rule in group["rules"] if "alert" in rule]
    assert [(a["alert"], a["labels"]["domain"], a["labels"]["metric"]) for a in alerts] == [
        (COUNT_WINDOW_ALERT, "BUYER_MATCH", "match_success"), (TIME_WINDOW_ALERT, "BUYER_MATCH", "match_success"),
        (COUNT_WINDOW_ALERT, "CAPITAL", "roi_event"), (TIME_WINDOW_ALERT, "CAPITAL", "roi_event"),
        (COUNT_WINDOW_ALERT, "WHOLESALE", "contract_rate"), (TIME_WINDOW_ALERT, "WHOLESALE", "contract_rate"),
    ]


@pytest.mark.parametrize(
    ("policy", "action", "severity"),
    [(WHOLESALE, "THROTTLE", "warning"), (CAPITAL, "KILL_SWITCH", "critical"),
     (dataclasses.replace(CAPITAL, dry_run=True), "KILL_SWITCH", "info")],
)
def test_alert_labels(policy: Policy, action: str, severity: str) -> None:
    """domain, metric, action and severity on both alerts; a dry run also says dry_run="true"."""
    for alert in _alerts([policy]):
        expected = {"domain": policy.domain, "metric": policy.metric, "action": action, "severity": severity}
        if policy.dry_run:
            expected["dry_run"] = "true"
        assert alert["labels"] == expected


def test_count_window_alert_uses_the_policy_threshold_and_minimum() -> None:
    """guard: none: drop_ratio >= max_drop_fraction, both windows >= min_events_to_enforce, no for: delay."""
    policy = dataclasses.replace(OFFERS, max_drop_fraction=0.15, min_events_to_enforce=42, guard=Guard.NONE)
    alert = next(a for a in _alerts([policy]) if a["alert"] == COUNT_WINDOW_ALERT)
    expr = alert["expr"]
    assert 'kpiguard_regression_drop_ratio{domain="WHOLESALE",metric="offer_accept_rate"}) >= 0.15' in expr
    assert 'window="recent"}) >= 42' in expr and 'window="baseline"}) >= 42' in expr
    assert alert["for"] == "0s"


def test_time_window_alert_compares_with_the_baseline_and_guards_traffic() -> None:
    """The hour against the 7d baseline, a count of at least min_events in each, held for 10m."""
    for policy, figure in ((WHOLESALE, "kpiguard_kpi_success:ratio_rate"), (CAPITAL, "kpiguard_kpi_event_value:mean")):
        alert = next(a for a in _alerts([policy]) if a["alert"] == TIME_WINDOW_ALERT)
        expr = alert["expr"]
        assert f"domain_metric:{figure}7d_offset1h" in expr and f"domain_metric:{figure}1h" in expr
        assert f">= {policy.max_drop_fraction!r}" in expr
        assert expr.count(f"increase1h{{") == 1 and expr.count("increase7d_offset1h{") == 1
        guards = [line for line in expr.splitlines() if line.startswith("and on (domain, metric)")]
        assert len(guards) == 2 and all(line.endswith(f"}} >= {policy.min_events_to_enforce}") for line in guards)
        assert alert["for"] == "10m"


def test_annotations_have_numbers_and_links() -> None:
    """summary with $value and the two figures, description, runbook and dashboard under the configured bases."""
    options = RuleOptions(runbook_base_url="https://wiki/rb", dashboard_base_url="https://grafana")
    for alert in [rule for group in rule_groups([CAPITAL], options) for rule in group["rules"] if "alert" in rule]:
        notes = alert["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url", "dashboard_url"}
        assert "{{ $value | humanizePercentage }}" in notes["summary"]
        assert notes["summary"].count("{{ with query") == 2 and "threshold 30%" in notes["summary"]
        assert "KILL_SWITCH" in notes["description"]
        assert notes["runbook_url"] == "https://wiki/rb/regression-tripwire#kill-switch"
        assert notes["dashboard_url"].startswith("https://grafana/d/kpiguard-tripwire/")
        assert notes["dashboard_url"].endswith("?var-domain=CAPITAL&var-metric=roi_event")


def test_generated_files_carry_the_header_and_parse() -> None:
    """The rule file, one test file per enabled policy and the drift monitor's pair, each YAML under the header."""
    files = generate_files([WHOLESALE, dataclasses.replace(CAPITAL, enabled=False)])
    assert set(files) == {RULES_FILE, "tests/WHOLESALE_contract_rate.test.yml",
                          "kpiguard-monitor.rules.yml", "tests/kpiguard-monitor_test.yml"}
    for content in files.values():
        assert content.startswith(GENERATED_HEADER + "\n")
        assert yaml.safe_load(content)
    tests = yaml.safe_load(files["tests/WHOLESALE_contract_rate.test.yml"])
    assert tests["rule_files"] == [f"../{RULES_FILE}"]
    assert len(tests["tests"]) == len(scenarios_for(WHOLESALE))


def test_generation_is_deterministic_and_order_free() -> None:
    """The same policies in any order give byte-identical files."""
    assert generate_files(ENABLED) == generate_files(list(reversed(ENABLED)))


def test_diff_and_write(tmp_path: Path) -> None:
    """diff_files lists missing, changed and stale generated files; write_files fixes them and leaves others alone."""
    files = generate_files([WHOLESALE])
    (tmp_path / "policies.yaml").write_text("hand written\n")
    assert diff_files(tmp_path, files) == sorted(files)
    assert write_files(tmp_path, files) == sorted(files)
    assert diff_files(tmp_path, files) == []
    (tmp_path / RULES_FILE).write_text(files[RULES_FILE] + "# edited\n")
    stale = tmp_path / "tests" / "OLD_policy.test.yml"
    stale.write_text(GENERATED_HEADER + "\n{}\n")
    assert diff_files(tmp_path, files) == [RULES_FILE, "tests/OLD_policy.test.yml"]
    assert write_files(tmp_path, files) == [RULES_FILE, "tests/OLD_policy.test.yml"]
    assert not stale.exists() and diff_files(tmp_path, files) == []
    assert (tmp_path / "policies.yaml").read_text() == "hand written\n"


def test_generate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Writes and says what it wrote; --check answers 1 when out of date and 0 when not; a bad spec answers 2."""
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies:\n  - {domain: WHOLESALE, metric: contract_rate}\n")
    out = tmp_path / "rules"
    assert generate_command(policies, out, check=True) == 1
    assert "out of date" in capsys.readouterr().out
    assert generate_command(policies, out, check=False) == 0
    assert f"wrote {out / RULES_FILE}" in capsys.readouterr().out
    assert generate_command(policies, out, check=True) == 0
    assert generate_command(policies, out, check=False) == 0
    assert f"unchanged {out / RULES_FILE}" in capsys.readouterr().out
    policies.write_text("policies:\n  - {domain: WHOLESALE, metric: contract_rate, action: HALT}\n")
    assert generate_command(policies, out, check=True) == 2
    assert f"{policies}: policies[0].action" in capsys.readouterr().err


def test_checked_in_rules_equal_the_generator_output() -> None:
    """rules/ is exactly what `kpiguard rules generate --policies rules/policies.yaml --out rules/` writes."""
    files = generate_files(load_policies(ROOT / "rules" / "policies.yaml"))
    assert diff_files(ROOT / "rules", files) == [], "rules/ is stale: run kpiguard rules generate"


# The brief's scenarios, as the model judges them; promtool then holds the rules to the same verdicts.
SEED_VERDICTS = [
    (WHOLESALE, "testing_flow_95_to_20", True, True),
    (WHOLESALE, "scenario1_95_to_60", True, True),
    (BUYER_MATCH, "scenario2_85_to_70", False, False),
    # 85% -> 70% is a 17.6% drop, over offer_accept_rate's 15%: the plain rule fires on one 50-event window,
    # the evidence guard holds it (not surely >= 15%).
    (OFFERS, "scenario2_85_to_70", False, False),
    (dataclasses.replace(OFFERS, guard=Guard.NONE), "scenario2_85_to_70", True, False),
    (CAPITAL, "scenario3_mean_flips_500_to_minus_300", True, True),
    *[(policy, "low_traffic", False, False) for policy in ENABLED],
    *[(policy, "quiet_hour", False, False) for policy in ENABLED],
]


@pytest.mark.parametrize(("policy", "name", "count_fires", "time_fires"), SEED_VERDICTS)
def test_seed_scenarios_fire_as_the_seed_says(policy: Policy, name: str, count_fires: bool, time_fires: bool) -> None:
    """Degradations beyond the threshold fire both alerts; scenario 2, quiet hours and low traffic fire none."""
    scenario = next(s for s in scenarios_for(policy) if s.name == name)
    options = RuleOptions()
    verdict = outcome(simulate(policy, scenario, options), options)
    assert (verdict.count_window, verdict.time_window) == (count_fires, time_fires)
    assert not verdict.count_window_before and not verdict.time_window_before


def test_fired_alerts_carry_the_action() -> None:
    """The testing flow's alerts say THROTTLE; scenario 3's say KILL_SWITCH, in the generated test expectations."""
    files = generate_files(ENABLED)
    for path, scenario, action in (
        ("tests/WHOLESALE_contract_rate.test.yml", "testing_flow_95_to_20", Action.THROTTLE),
        ("tests/CAPITAL_roi_event.test.yml", "scenario3_mean_flips_500_to_minus_300", Action.KILL_SWITCH),
    ):
        test = next(t for t in yaml.safe_load(files[path])["tests"] if scenario in t["name"])
        fired = [alert for case in test["alert_rule_test"] for alert in case["exp_alerts"]]
        assert len(fired) == 2 and {alert["exp_labels"]["action"] for alert in fired} == {action.value}


def test_every_metric_the_rules_read_is_one_the_service_exports() -> None:
    """Each kpiguard_* series name in the generated rules is a sample name metrics.py declares (a typo fails)."""
    import re

    from prometheus_client import CollectorRegistry

    from kpiguard.metrics import Metrics
    from kpiguard.tripwire import SEED_POLICIES

    registry = CollectorRegistry()
    Metrics(registry)
    declared = set()
    for family in registry.collect():
        declared.add(family.name)
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
        for suffix in suffixes.get(family.type, ()):
            declared.add(family.name + suffix)
    policies = [dataclasses.replace(p, enabled=True) for p in SEED_POLICIES]
    text = "\n".join(rule["expr"] for group in rule_groups(policies) for rule in group["rules"])
    used = set(re.findall(r"\b(kpiguard_[a-z_]+)(?=[{\[\s)]|$)", text, flags=re.M))
    assert used, "no metric names found"
    assert used <= declared, sorted(used - declared)
