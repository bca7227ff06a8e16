"""The declarative policies YAML file: parsed and checked into policies, and written back.

The format (``version`` is optional; every policy key but ``domain`` and ``metric`` has the seed's default)::

    version: 1
    policies:
      - domain: WHOLESALE
        metric: contract_rate
        window_events: 50
        baseline_events: 200
        min_events_to_enforce: 50
        max_drop_fraction: 0.2
        action: THROTTLE            # or KILL_SWITCH
        aggregation: success_rate   # or mean_value
        enabled: true
        dry_run: false
        guard: evidence             # or combined (evidence + a CUSUM backstop), sequential (a CUSUM), none; DETECTION.md
        guard_confidence: 0.95      # optional guard parameters
        changed_by: bryan           # optional
        reason: seed policy         # optional

Every error is a :class:`~kpiguard.errors.SpecError` naming the file and the field, e.g.
``policies[2].max_drop_fraction``, with the line in the reason where the YAML gives one.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from kpiguard.errors import SpecError
from kpiguard.names import NAME_PATTERN, is_valid_name
from kpiguard.tripwire._policy import Action, Aggregation, Guard, Policy
from kpiguard.tripwire._validate import policy_problems

SPEC_VERSION = 1
_TOP_KEYS = ("version", "policies")
# The keys of a policy in the order they are written; the YAML is the API's upsert body without the audit-only keys.
POLICY_KEYS = (
    "domain",
    "metric",
    "window_events",
    "baseline_events",
    "min_events_to_enforce",
    "max_drop_fraction",
    "action",
    "aggregation",
    "enabled",
    "dry_run",
    "guard",
    "guard_confidence",
    "guard_alpha",
    "changed_by",
    "reason",
)
_REQUIRED = ("domain", "metric")
_DEFAULTS = Policy("X", "x")


def load_policies(path: Path) -> list[Policy]:
    """Read a policies YAML file and return its policies, or raise SpecError naming the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), None, f"cannot read the file: {exc}") from exc
    return parse_policies(text, str(path))


def parse_policies(text: str, file: str) -> list[Policy]:
    """Parse and check the text of a policies YAML file; ``file`` is the name used in errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise SpecError(file, None, f"not valid YAML: {exc}") from exc
    if root is None:
        raise SpecError(file, None, "the file is empty; expected a mapping with a 'policies' list")
    top = _mapping(root, file, "", _TOP_KEYS)
    if "version" in top:
        version = _scalar(top["version"], file, "version")
        if type(version) is not int or version != SPEC_VERSION:
            raise SpecError(
                file, "version",
                f"unsupported version {version!r}; this kpiguard reads version {SPEC_VERSION}" + _line(top["version"]),
            )
    if "policies" not in top:
        raise SpecError(file, "policies", "missing; expected a list of policies" + _line(root))
    items = top["policies"]
    if not isinstance(items, yaml.SequenceNode):
        raise SpecError(file, "policies", "expected a list of policies" + _line(items))
    policies: list[Policy] = []
    first_seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items.value):
        where = f"policies[{index}]"
        policy = _policy(item, file, where)
        if policy.key in first_seen:
            raise SpecError(
                file, where,
                f"duplicate policy for ({policy.domain}, {policy.metric}); policies[{first_seen[policy.key]}] "
                "already defines it" + _line(item),
            )
        first_seen[policy.key] = index
        policies.append(policy)
    return policies


def dump_policies(policies: Iterable[Policy]) -> str:
    """Write policies as a policies YAML file that :func:`parse_policies` reads back to the same policies."""
    entries = []
    for policy in policies:
        entry: dict[str, Any] = {}
        for key in POLICY_KEYS:
            value = getattr(policy, key)
            if value is None:
                continue
            entry[key] = value.value if isinstance(value, enum.Enum) else value
        entries.append(entry)
    body = yaml.safe_dump(
        {"version": SPEC_VERSION, "policies": entries}, sort_keys=False, default_flow_style=False, allow_unicode=True,
    )
    return "# kpiguard regression policies; apply with `kpiguard policies apply FILE`.\n" + body


# --- checking, one node at a time ---------------------------------------------------------------------------


def _line(node: yaml.Node) -> str:
    """Where the node starts, as a suffix for an error reason."""
    return f" (line {node.start_mark.line + 1})"


def _join(where: str, key: str) -> str:
    """The dotted field name of ``key`` inside ``where``."""
    return f"{where}.{key}" if where else key


def _mapping(node: yaml.Node, file: str, where: str, allowed: Sequence[str]) -> dict[str, yaml.Node]:
    """The keys and value nodes of a mapping node, refusing unknown and repeated keys."""
    if not isinstance(node, yaml.MappingNode):
        raise SpecError(file, where or None, "expected a mapping" + _line(node))
    result: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or key_node.tag != "tag:yaml.org,2002:str":
            raise SpecError(file, where or None, f"keys must be strings, got {key!r}" + _line(key_node))
        field = _join(where, key)
        if key not in allowed:
            raise SpecError(file, field, f"unknown key; the valid keys are {', '.join(allowed)}" + _line(key_node))
        if key in result:
            # PyYAML would silently keep the last one; a repeated key is almost always a mistake.
            raise SpecError(file, field, "repeated key" + _line(key_node))
        result[key] = value_node
    return result


def _scalar(node: yaml.Node, file: str, field: str) -> Any:
    """The Python value of a scalar node, as PyYAML's safe loader would build it."""
    if not isinstance(node, yaml.ScalarNode):
        raise SpecError(file, field, "expected a single value, not a list or mapping" + _line(node))
    return yaml.constructor.SafeConstructor().construct_object(node)


def _policy(node: yaml.Node, file: str, where: str) -> Policy:
    """One policy from its mapping node, every field checked."""
    fields = _mapping(node, file, where, POLICY_KEYS)
    for key in _REQUIRED:
        if key not in fields:
            raise SpecError(file, _join(where, key), "missing; every policy names its domain and metric" + _line(node))
    values: dict[str, Any] = {}
    for key, value_node in fields.items():
        field = _join(where, key)
        check = _CHECKS[key]
        values[key] = check(_scalar(value_node, file, field), file, field, value_node)
    policy = dataclasses.replace(_DEFAULTS, **values)
    # The rules that relate fields (and the guard's ranges) are the API's too: one checker for both.
    problems = policy_problems(policy)
    if problems:
        key, reason = problems[0]
        raise SpecError(file, _join(where, key), reason + _line(fields.get(key, node)))
    return policy


def _name(value: Any, file: str, field: str, node: yaml.Node) -> str:
    """A domain or metric name."""
    if not isinstance(value, str) or not is_valid_name(value):
        raise SpecError(file, field, f"{value!r} is not a valid name; names match {NAME_PATTERN}" + _line(node))
    return value


def _positive_int(value: Any, file: str, field: str, node: yaml.Node) -> int:
    """A whole number of events, at least 1."""
    # bool is an int in Python; `true` is never a count.
    if type(value) is not int or value < 1:
        raise SpecError(file, field, f"{value!r} is not a positive whole number of events" + _line(node))
    return value


def _fraction(value: Any, file: str, field: str, node: yaml.Node) -> float:
    """A fraction strictly between 0 and 1."""
    if type(value) not in (int, float) or not 0 < value < 1:
        raise SpecError(file, field, f"{value!r} must be a number with 0 < value < 1 (0.2 is a 20% drop)" + _line(node))
    return float(value)


def _boolean(value: Any, file: str, field: str, node: yaml.Node) -> bool:
    """A YAML boolean."""
    if not isinstance(value, bool):
        raise SpecError(file, field, f"{value!r} is not a boolean; write true or false" + _line(node))
    return value


def _optional_text(value: Any, file: str, field: str, node: yaml.Node) -> str | None:
    """A free text, or null."""
    if value is not None and not isinstance(value, str):
        raise SpecError(file, field, f"{value!r} is not a text; quote it" + _line(node))
    return value


def _choice(enum_type: type[enum.StrEnum]) -> Callable[[Any, str, str, yaml.Node], Any]:
    """A checker for one member of ``enum_type``, listing the valid choices when the value is not one."""

    def check(value: Any, file: str, field: str, node: yaml.Node) -> enum.StrEnum:
        choices = [member.value for member in enum_type]
        if not isinstance(value, str) or value not in choices:
            raise SpecError(file, field, f"{value!r} is not one of {', '.join(choices)}" + _line(node))
        return enum_type(value)

    return check


_CHECKS: dict[str, Callable[[Any, str, str, yaml.Node], Any]] = {
    "domain": _name,
    "metric": _name,
    "window_events": _positive_int,
    "baseline_events": _positive_int,
    "min_events_to_enforce": _positive_int,
    "max_drop_fraction": _fraction,
    "action": _choice(Action),
    "aggregation": _choice(Aggregation),
    "guard": _choice(Guard),
    "guard_confidence": _fraction,
    "guard_alpha": _fraction,
    "enabled": _boolean,
    "dry_run": _boolean,
    "changed_by": _optional_text,
    "reason": _optional_text,
}
