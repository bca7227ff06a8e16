"""The generated drift rules: checked in as generated, valid for promtool, and their unit tests pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kpiguard.monitor import RULES_PATH, TESTS_PATH, Severity, Thresholds, classify, monitor_rule_files
from kpiguard.monitor._rules import GENERATED_HEADER, _levels

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")
CUSTOM = Thresholds(low=1.2, medium=1.8, high=2.6, critical=4.0, health_decline_below=60.0,
                    health_critical_below=30.0, min_fallback_rate=0.02, min_baseline_days=5)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False)


def test_checked_in_files_equal_the_generator_output():
    """rules/kpiguard-monitor.rules.yml and its test file are exactly what monitor_rule_files(Thresholds()) writes."""
    files = monitor_rule_files(Thresholds())
    assert set(files) == {"rules/kpiguard-monitor.rules.yml", "rules/tests/kpiguard-monitor_test.yml"}
    for path, text in files.items():
        assert text.startswith(GENERATED_HEADER + "\n"), path
        assert (REPO / path).read_text() == text, f"{path} is stale: regenerate it with monitor_rule_files"


@needs_promtool
def test_promtool_checks_and_tests_the_checked_in_rules():
    """promtool check rules and promtool test rules pass on the checked-in files."""
    check = _promtool("check", "rules", str(REPO / RULES_PATH))
    assert check.returncode == 0, check.stdout + check.stderr
    test = _promtool("test", "rules", str(REPO / TESTS_PATH))
    assert test.returncode == 0, test.stdout + test.stderr


@needs_promtool
def test_other_thresholds_generate_rules_whose_tests_pass(tmp_path):
    """Thresholds are not hard-coded: other values move the bands, and the regenerated tests still pass."""
    for path, text in monitor_rule_files(CUSTOM, min_events_per_hour=10).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    rules_text = (tmp_path / RULES_PATH).read_text()
    assert '{signal="fallback"}) >= 1.2 < 1.8\n' in rules_text
    assert '{signal="fallback"}) >= 2.6 < 4\n' in rules_text and '{signal="fallback"}) >= 4\n' in rules_text
    assert "< 60 >= 30\n" in rules_text and "health_score{granularity=\"day\"}) < 30\n" in rules_text
    assert "scope=\"global\"}), 0.02)" in rules_text  # the fallback floor
    assert "* 3600 >= 10\n" in rules_text and ">= 5" in rules_text  # traffic guard, min_baseline_days
    test = _promtool("test", "rules", str(tmp_path / TESTS_PATH))
    assert test.returncode == 0, test.stdout + test.stderr


def test_a_broken_expectation_makes_promtool_fail(tmp_path):
    """The promtool tests can fail: one expected severity changed is reported."""
    if PROMTOOL is None:
        pytest.skip("promtool is not installed")
    for path, text in monitor_rule_files(Thresholds()).items():
        if path == TESTS_PATH:
            doc = yaml.safe_load(text)
            doc["tests"] = doc["tests"][:1]  # the daily fallback bands: enough to see a failure, and fast
            checks = doc["tests"][0]["alert_rule_test"]
            medium = next(c for c in checks if c["exp_alerts"] and
                          c["exp_alerts"][0]["exp_labels"]["severity"] == "medium")
            medium["exp_alerts"][0]["exp_labels"]["severity"] = "high"
            text = yaml.safe_dump(doc, sort_keys=False)
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    test = _promtool("test", "rules", str(tmp_path / TESTS_PATH))
    assert test.returncode != 0 and "FAILED" in test.stdout + test.stderr


@pytest.mark.parametrize("thresholds", [Thresholds(), CUSTOM], ids=["default", "custom"])
def test_every_alert_carries_severity_type_and_annotations(thresholds):
    """Each alert has a monitor severity, alert_type and signal labels, and summary/description/runbook_url."""
    doc = yaml.safe_load(monitor_rule_files(thresholds)[RULES_PATH])
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    names = {a["alert"] for a in alerts}
    assert names == {
        "KpiguardMonitorFallbackSpike", "KpiguardMonitorErrorSpike", "KpiguardMonitorLatencySpike",
        "KpiguardMonitorDuplicateSpike", "KpiguardMonitorHealthDecline", "KpiguardMonitorFallbackSpikeHourly",
        "KpiguardMonitorErrorSpikeHourly", "KpiguardMonitorLatencySpikeHourly", "KpiguardMonitorDuplicateSpikeHourly",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in {s.value for s in Severity}
        assert {"alert_type", "signal", "source"} <= set(alert["labels"])
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
        assert alert["annotations"]["runbook_url"].endswith("#" + alert["labels"]["alert_type"])
    for name in names - {"KpiguardMonitorHealthDecline"}:
        assert sorted(a["labels"]["severity"] for a in alerts if a["alert"] == name) == sorted(
            s.value for s in Severity), name
    records = [r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r]
    assert len(records) == len(set(records)) == 10


@pytest.mark.parametrize("thresholds", [Thresholds(), CUSTOM], ids=["default", "custom"])
def test_the_test_levels_agree_with_the_native_classification(thresholds):
    """The value each promtool test puts in a band is what kpiguard itself classifies with that severity."""
    for severity, ratio in _levels(thresholds):
        assert classify(ratio, thresholds) == severity, ratio


def test_min_events_per_hour_must_be_positive():
    """A zero traffic guard is refused."""
    with pytest.raises(ValueError, match="min_events_per_hour"):
        monitor_rule_files(Thresholds(), min_events_per_hour=0)
