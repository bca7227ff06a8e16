"""Prometheus rules from regression policies: recording rules, alerts and their promtool unit tests."""

from kpiguard.rulegen._files import RULES_FILE, diff_files, generate_command, generate_files, write_files
from kpiguard.rulegen._options import RuleOptions, duration
from kpiguard.rulegen._promtool import Scenario, outcome, scenarios_for, series_notation, simulate, unit_test
from kpiguard.rulegen._rules import (
    COUNT_WINDOW_ALERT,
    SEVERITY,
    TIME_WINDOW_ALERT,
    alert_labels,
    count_window_alert,
    recording_rule_names,
    recording_rules,
    rule_groups,
    time_window_alert,
)
from kpiguard.rulegen._sequences import (
    CountWindows,
    Event,
    Phase,
    count_window_fires,
    count_windows,
    events_of,
    phase_events,
)
from kpiguard.rulegen._yaml import GENERATED_HEADER, to_yaml

__all__ = [
    "COUNT_WINDOW_ALERT",
    "GENERATED_HEADER",
    "RULES_FILE",
    "SEVERITY",
    "TIME_WINDOW_ALERT",
    "CountWindows",
    "Event",
    "Phase",
    "RuleOptions",
    "Scenario",
    "alert_labels",
    "count_window_alert",
    "count_window_fires",
    "count_windows",
    "diff_files",
    "duration",
    "events_of",
    "generate_command",
    "generate_files",
    "outcome",
    "phase_events",
    "recording_rule_names",
    "recording_rules",
    "rule_groups",
    "scenarios_for",
    "series_notation",
    "simulate",
    "time_window_alert",
    "to_yaml",
    "unit_test",
    "write_files",
]
