"""Generated files: the rules and their unit tests as texts, written to or compared with a rules directory."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from kpiguard._generated import sync_command
from kpiguard.errors import SpecError
from kpiguard.monitor import Thresholds, monitor_rule_files
from kpiguard.rulegen._options import RuleOptions
from kpiguard.rulegen._promtool import test_document, test_file_name
from kpiguard.rulegen._rules import COUNT_WINDOW_ALERT, TIME_WINDOW_ALERT, rule_groups
from kpiguard.rulegen._yaml import GENERATED_HEADER, to_yaml
from kpiguard.tripwire import Policy
from kpiguard.tripwire._spec import load_policies

RULES_FILE = "kpiguard.rules.yml"
_REGENERATE = "Regenerate with: kpiguard rules generate --policies rules/policies.yaml --out rules/"


def generate_files(
    policies: Iterable[Policy], options: RuleOptions = RuleOptions(), monitor: Thresholds | None = None,
) -> dict[str, str]:
    """Every generated file, relative path → content: the tripwire's rule file, one promtool test file per
    enabled policy, and the drift monitor's rules and tests for ``monitor`` thresholds (default: the defaults)."""
    drift = monitor_rule_files(monitor if monitor is not None else Thresholds())
    ordered = sorted(policies, key=lambda p: p.key)
    files = {
        RULES_FILE: to_yaml(
            {"groups": rule_groups(ordered, options)},
            comments=(
                _REGENERATE,
                "",
                "One group per regression policy: recording rules for its (domain, metric), then, if the policy is",
                f"enabled, two alerts. {COUNT_WINDOW_ALERT} fires on kpiguard's own count windows (the same",
                f"decision as the native evaluator); {TIME_WINDOW_ALERT} compares the last hour with the week",
                "before it. Both carry domain, metric, action (THROTTLE or KILL_SWITCH) and severity (critical for",
                "KILL_SWITCH, warning for THROTTLE, info for a dry run, which also carries dry_run=\"true\").",
            ),
        )
    }
    for policy in ordered:
        if policy.enabled:
            files[test_file_name(policy)] = to_yaml(
                test_document(policy, RULES_FILE, options),
                comments=(
                    _REGENERATE,
                    "",
                    f"promtool unit tests of {policy.domain}.{policy.metric}: synthetic event sequences, the series",
                    "kpiguard would export for them, and the alerts and recorded values the generator's model",
                    "expects. Run: promtool test rules rules/tests/*.test.yml",
                ),
            )
    # monitor_rule_files names paths from the repository root; here they are relative to the rules folder
    files.update({path.removeprefix("rules/"): text for path, text in drift.items()})
    return files


def _generated_on_disk(out_dir: Path) -> set[str]:
    """Relative paths of the YAML files under ``out_dir`` that carry the generated header."""
    found = set()
    for path in out_dir.rglob("*.y*ml"):
        try:
            with path.open(encoding="utf-8") as handle:
                first = handle.readline().rstrip("\n")
        except (OSError, UnicodeDecodeError):
            continue
        if first == GENERATED_HEADER:
            found.add(path.relative_to(out_dir).as_posix())
    return found


def diff_files(out_dir: Path, files: Mapping[str, str]) -> list[str]:
    """Relative paths whose file is missing or different, and generated files no longer generated; sorted."""
    differing = set()
    for relative, content in files.items():
        path = out_dir / relative
        try:
            if path.read_text(encoding="utf-8") != content:
                differing.add(relative)
        except (OSError, UnicodeDecodeError):
            differing.add(relative)
    if out_dir.is_dir():
        differing |= _generated_on_disk(out_dir) - set(files)
    return sorted(differing)


def write_files(out_dir: Path, files: Mapping[str, str]) -> list[str]:
    """Write the files under ``out_dir`` and delete generated files no longer generated; return what changed."""
    changed = diff_files(out_dir, files)
    for relative in changed:
        path = out_dir / relative
        if relative in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[relative], encoding="utf-8")
        else:
            path.unlink()  # only files that carry the generated header are ever deleted
    return changed


def generate_command(
    policies_file: Path, out_dir: Path, check: bool, options: RuleOptions = RuleOptions(),
    monitor: Thresholds | None = None,
) -> int:
    """``kpiguard rules generate``: write the rules for a policies file, or with ``check`` only compare; exit code."""
    try:
        policies = load_policies(policies_file)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = generate_files(policies, options, monitor)
    return sync_command(
        out_dir, files, check, diff=diff_files, write=write_files,
        mismatch=f"{out_dir} does not match {policies_file}; run kpiguard rules generate",
        up_to_date=f"{out_dir} is up to date ({len(files)} files from {len(policies)} policies)",
    )
