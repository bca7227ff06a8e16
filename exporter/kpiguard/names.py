"""Validation of the names that become Prometheus label values and database keys."""

import re

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)


def is_valid_name(value: str) -> bool:
    """Say whether ``value`` is a valid domain, metric or engine name."""
    return bool(_NAME_RE.fullmatch(value))
