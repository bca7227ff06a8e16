"""guard: sequential in the policies YAML and the rule generator (which cannot run a CUSUM)."""

from __future__ import annotations

import dataclasses

import pytest

from kpiguard.errors import SpecError
from kpiguard.rulegen import generate_files, rule_groups
from kpiguard.tripwire import SEED_POLICIES, Guard, dump_policies, parse_policies

SEQUENTIAL = [dataclasses.replace(p, enabled=True, guard=Guard.SEQUENTIAL) for p in SEED_POLICIES]


def test_yaml_reads_and_writes_the_sequential_guard() -> None:
    """guard: sequential is read from the YAML and written back unchanged."""
    text = "policies:\n  - domain: WHOLESALE\n    metric: contract_rate\n    guard: sequential\n    guard_alpha: 1.0e-5\n"
    (policy,) = parse_policies(text, "p.yaml")
    assert policy.guard is Guard.SEQUENTIAL and policy.guard_alpha == 1e-5
    assert "\n  guard: sequential\n" in dump_policies([policy])
    assert parse_policies(dump_policies(SEQUENTIAL), "export.yaml") == SEQUENTIAL


def test_yaml_refuses_an_unknown_guard_listing_the_choices() -> None:
    """An unknown guard is a SpecError naming the field and every valid guard."""
    text = "policies:\n  - domain: WHOLESALE\n    metric: contract_rate\n    guard: cusum\n"
    with pytest.raises(SpecError) as caught:
        parse_policies(text, "p.yaml")
    assert caught.value.field == "policies[0].guard"
    assert "'cusum' is not one of none, evidence, sequential (line 4)" in str(caught.value)


def test_rules_are_the_plain_rule_whatever_the_guard() -> None:
    """PromQL has no per-event state: the generated rules of sequential and evidence policies are the same."""
    evidence = [dataclasses.replace(p, guard=Guard.EVIDENCE) for p in SEQUENTIAL]
    assert rule_groups(SEQUENTIAL) == rule_groups(evidence)
    assert generate_files(SEQUENTIAL) == generate_files(evidence)
