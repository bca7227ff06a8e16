"""The rules a policy must satisfy, in one place for the API, the YAML file and the CLI."""

from __future__ import annotations

from kpiguard.names import is_valid_name
from kpiguard.tripwire._policy import Policy


def policy_problems(policy: Policy) -> list[tuple[str, str]]:
    """Every (field, reason) the policy breaks; empty when it is valid."""
    problems: list[tuple[str, str]] = []
    for field in ("domain", "metric"):
        if not is_valid_name(getattr(policy, field)):
            problems.append((field, "must match ^[A-Za-z][A-Za-z0-9_]{0,63}$"))
    for field in ("window_events", "baseline_events", "min_events_to_enforce"):
        value = getattr(policy, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append((field, "must be a positive integer"))
    if not problems and policy.min_events_to_enforce > policy.window_events:
        problems.append(("min_events_to_enforce", f"must be at most window_events ({policy.window_events})"))
    if not 0 < policy.max_drop_fraction < 1:
        problems.append(("max_drop_fraction", "must be greater than 0 and less than 1"))
    if not 0.5 <= policy.guard_confidence < 1:
        problems.append(("guard_confidence", "must be at least 0.5 and less than 1"))
    if not 0 < policy.guard_alpha < 1:
        problems.append(("guard_alpha", "must be greater than 0 and less than 1"))
    return problems
