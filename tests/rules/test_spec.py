"""The policies YAML format: every bad field refused with the file and the field named, and a lossless round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kpiguard.errors import SpecError
from kpiguard.tripwire import SEED_POLICIES, Action, Aggregation, Policy, dump_policies, load_policies, parse_policies

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
version: 1
policies:
  - domain: WHOLESALE
    metric: contract_rate
  - domain: CAPITAL
    metric: roi_event
    window_events: 40
    baseline_events: 100
    min_events_to_enforce: 30
    max_drop_fraction: 0.3
    action: KILL_SWITCH
    aggregation: mean_value
    enabled: false
    dry_run: true
    changed_by: bryan
    reason: seed
"""


def test_parses_a_good_file_with_defaults_for_missing_keys() -> None:
    """Keys left out take the seed's defaults; every given key lands in the policy."""
    policies = parse_policies(GOOD, "p.yaml")
    assert policies == [
        Policy("WHOLESALE", "contract_rate"),
        Policy(
            "CAPITAL", "roi_event", window_events=40, baseline_events=100, min_events_to_enforce=30,
            max_drop_fraction=0.3, action=Action.KILL_SWITCH, aggregation=Aggregation.MEAN_VALUE,
            enabled=False, dry_run=True, changed_by="bryan", reason="seed",
        ),
    ]


def _one(**fields: object) -> str:
    """A file with one policy whose keys are ``fields`` on top of a valid domain and metric."""
    body = {"domain": "WHOLESALE", "metric": "contract_rate", **fields}
    lines = "".join(f"    {key}: {value}\n" for key, value in body.items())
    return f"policies:\n  - domain: A\n    metric: ok\n  -\n{lines}"


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (_one(max_drop_fraction=1), "policies[1].max_drop_fraction", "0 < value < 1"),
        (_one(max_drop_fraction=0), "policies[1].max_drop_fraction", "0 < value < 1"),
        (_one(max_drop_fraction=-0.1), "policies[1].max_drop_fraction", "0 < value < 1"),
        (_one(max_drop_fraction=".nan"), "policies[1].max_drop_fraction", "0 < value < 1"),
        (_one(max_drop_fraction="'0.2'"), "policies[1].max_drop_fraction", "0 < value < 1"),
        (_one(window_events=0), "policies[1].window_events", "positive whole number"),
        (_one(baseline_events=-5), "policies[1].baseline_events", "positive whole number"),
        (_one(baseline_events=2.5), "policies[1].baseline_events", "positive whole number"),
        (_one(window_events="true"), "policies[1].window_events", "positive whole number"),
        (_one(min_events_to_enforce=0), "policies[1].min_events_to_enforce", "positive whole number"),
        (_one(window_events=10), "policies[1].min_events_to_enforce", "more than window_events (10)"),
        (_one(min_events_to_enforce=51), "policies[1].min_events_to_enforce", "more than window_events (50)"),
        (_one(action="STOP"), "policies[1].action", "one of THROTTLE, KILL_SWITCH"),
        (_one(action="throttle"), "policies[1].action", "one of THROTTLE, KILL_SWITCH"),
        (_one(aggregation="median"), "policies[1].aggregation", "one of success_rate, mean_value"),
        (_one(enabled="yes please"), "policies[1].enabled", "not a boolean"),
        (_one(dry_run=1), "policies[1].dry_run", "not a boolean"),
        (_one(reason="[a, b]"), "policies[1].reason", "single value"),
        (_one(changed_by=12), "policies[1].changed_by", "not a text"),
        (_one(domain="'1WHOLESALE'"), "policies[1].domain", "not a valid name"),
        (_one(metric="'contract-rate'"), "policies[1].metric", "not a valid name"),
        (_one(metric="''"), "policies[1].metric", "not a valid name"),
        (_one(treshold=0.2), "policies[1].treshold", "unknown key"),
        (_one(domain="WHOLESALE\n    domain: CAPITAL"), "policies[1].domain", "repeated key"),
        ("policies:\n  - metric: x\n", "policies[0].domain", "missing"),
        ("policies:\n  - domain: A\n", "policies[0].metric", "missing"),
        ("policies:\n  - domain: A\n    metric: b\n  - domain: A\n    metric: b\n", "policies[1]", "duplicate"),
        ("policies:\n  - just a string\n", "policies[0]", "expected a mapping"),
        ("policies: {domain: A}\n", "policies", "expected a list"),
        ("version: 1\n", "policies", "missing"),
        ("version: 2\npolicies: []\n", "version", "unsupported version"),
        ("policies: []\nrules: []\n", "rules", "unknown key"),
        ("- domain: A\n", None, "expected a mapping"),
        ("", None, "empty"),
        ("policies: [\n", None, "not valid YAML"),
    ],
)
def test_bad_files_name_the_file_and_the_field(text: str, field: str | None, reason: str) -> None:
    """Each invalid input raises SpecError naming the file, the exact field and why."""
    with pytest.raises(SpecError) as caught:
        parse_policies(text, "conf/policies.yaml")
    error = caught.value
    assert error.file == "conf/policies.yaml"
    assert error.field == field
    assert reason in error.reason
    assert str(error).startswith("conf/policies.yaml")


def test_errors_give_the_line() -> None:
    """The reason carries the line of the offending value, so that long files are easy to fix."""
    with pytest.raises(SpecError) as caught:
        parse_policies(_one(action="STOP"), "p.yaml")
    assert caught.value.reason.endswith("(line 7)")


def test_the_valid_choices_are_listed() -> None:
    """An unknown action or aggregation lists every valid choice."""
    with pytest.raises(SpecError) as caught:
        parse_policies(_one(aggregation="p99"), "p.yaml")
    assert all(choice.value in caught.value.reason for choice in Aggregation)


def test_load_names_a_missing_file() -> None:
    """A file that cannot be read is a SpecError naming it."""
    with pytest.raises(SpecError) as caught:
        load_policies(Path("/nonexistent/policies.yaml"))
    assert caught.value.file == "/nonexistent/policies.yaml"


ROUND_TRIP = [
    list(SEED_POLICIES),
    [],
    [Policy("A", "b", window_events=7, baseline_events=1, min_events_to_enforce=7, max_drop_fraction=0.125,
            changed_by="it's: \"quoted\"", reason="line one\nline two")],
    [Policy("CAPITAL", "roi_event", max_drop_fraction=0.999999, action=Action.KILL_SWITCH,
            aggregation=Aggregation.MEAN_VALUE, dry_run=True, reason="")],
]


@pytest.mark.parametrize("policies", ROUND_TRIP)
def test_dump_then_parse_gives_the_same_policies(policies: list[Policy]) -> None:
    """dump_policies writes a file that parse_policies reads back to equal policies."""
    assert parse_policies(dump_policies(policies), "export.yaml") == policies


def test_the_sample_file_is_the_seed_table_enabled() -> None:
    """rules/policies.yaml holds exactly the seed's four policies, enabled so that their alerts are generated."""
    sample = load_policies(ROOT / "rules" / "policies.yaml")
    assert sample == [dataclasses.replace(p, enabled=True) for p in SEED_POLICIES]
