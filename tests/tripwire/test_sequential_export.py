"""guard: sequential and combined in the policies YAML and the rule generator (which cannot run a CUSUM)."""

from __future__ import annotations

import dataclasses

import pytest

from kpiguard.errors import SpecError
from kpiguard.rulegen import generate_files, rule_groups
from kpiguard.tripwire import SEED_POLICIES, Guard, dump_policies, parse_policies

SEQUENTIAL = [dataclasses.replace(p, enabled=True, guard=Guard.SEQUENTIAL) for p in SEED_POLICIES]
COMBINED = [dataclasses.replace(p, guard=Guard.COMBINED) for p in SEQUENTIAL]


def test_yaml_reads_and_writes_the_sequential_guard() -> None:
    """guard: sequential is read from the YAML and written back unchanged."""
    text = "policies:\n  - domain: WHOLESALE\n    metric: contract_rate\n    guard: sequential\n    guard_alpha: 1.0e-5\n"
    (policy,) = parse_policies(text, "p.yaml")
    assert policy.guard is Guard.SEQUENTIAL and policy.guard_alpha == 1e-5
    assert "\n  guard: sequential\n" in dump_policies([policy])
    assert parse_policies(dump_policies(SEQUENTIAL), "export.yaml") == SEQUENTIAL


def test_yaml_reads_and_writes_the_combined_guard() -> None:
    """guard: combined is read from the YAML with its window-test parameters and written back unchanged."""
    text = ("policies:\n  - domain: BUYER_MATCH\n    metric: match_success\n    guard: combined\n"
            "    guard_confidence: 0.96\n")
    (policy,) = parse_policies(text, "p.yaml")
    assert policy.guard is Guard.COMBINED and policy.guard_confidence == 0.96
    assert "\n  guard: combined\n" in dump_policies([policy])
    assert parse_policies(dump_policies(COMBINED), "export.yaml") == COMBINED


def test_yaml_refuses_an_unknown_guard_listing_the_choices() -> None:
    """An unknown guard is a SpecError naming the field and every valid guard."""
    text = "policies:\n  - domain: WHOLESALE\n    metric: contract_rate\n    guard: cusum\n"
    with pytest.raises(SpecError) as caught:
        parse_policies(text, "p.yaml")
    assert caught.value.field == "policies[0].guard"
    assert "'cusum' is not one of none, evidence, sequential, combined (line 4)" in str(caught.value)


def test_a_guarded_count_window_alert_reads_the_evaluators_verdict() -> None:
    """PromQL has no CUSUM: a sequential, combined (or evidence) policy's count-window alert reads the verdict."""
    evidence = [dataclasses.replace(p, guard=Guard.EVIDENCE) for p in SEQUENTIAL]
    plain = [dataclasses.replace(p, guard=Guard.NONE) for p in SEQUENTIAL]

    def exprs(policies: list) -> list[str]:
        return [rule["expr"] for rule in rule_groups(policies)[0]["rules"] if rule.get("alert")]

    assert exprs(SEQUENTIAL) == exprs(evidence) == exprs(COMBINED)
    assert all("kpiguard_regression_firing" not in e for e in exprs(plain))
    counted = [e for e in exprs(SEQUENTIAL) if "kpiguard_regression_firing" in e]
    assert len(counted) == len(SEQUENTIAL)
    assert "guard: sequential" in generate_files(SEQUENTIAL)["kpiguard.rules.yml"]
    words = " ".join(generate_files(COMBINED)["kpiguard.rules.yml"].split())  # YAML folds the long description
    assert "or its CUSUM backstop crossed its boundary (guard: combined)" in words
