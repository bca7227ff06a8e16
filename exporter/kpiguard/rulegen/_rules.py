"""Policies to Prometheus rule groups, as plain dicts: recording rules for every pair, two alerts per policy.

Recording rules follow the ``level:metric:operations`` convention; the level is ``domain_metric`` because every
rule keeps exactly those two labels. They are written once, for every exported (domain, metric) pair, rather than
once per policy: the dashboards want them for every KPI, and Prometheus' duplicate-rule lint refuses the same
recording rule in several groups. Everything sits in one group so that the alerts, evaluated after the
recording rules, always compare figures of the same evaluation.

The count-window alert of a ``guard: none`` policy is the seed's plain rule in PromQL, on the windows kpiguard
exports. A guard cannot be computed in PromQL (``evidence`` needs likelihood-ratio and Welch tests of the
windows' counts and sums of squares, ``sequential`` and ``combined`` a CUSUM folded event by event with state),
so for a guarded policy the alert reads the evaluator's verdict, ``kpiguard_regression_firing``, and Alertmanager
acts on the same decision as the native evaluator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kpiguard.rulegen._options import RuleOptions, duration
from kpiguard.tripwire import Action, Aggregation, Guard, Policy

LEVEL = "domain_metric"
EVENTS = "kpiguard_kpi_events_total"
# The value histogram has no _sum (its buckets go below 0, so the client library omits it); kpiguard
# exports the sum as two counters instead: positive values and the magnitudes of negative ones.
VALUE_POSITIVE = "kpiguard_kpi_event_value_positive_total"
VALUE_NEGATIVE = "kpiguard_kpi_event_value_negative_total"
VALUE_COUNT = "kpiguard_kpi_event_value_count"
DROP = "kpiguard_regression_drop_ratio"
CURRENT = "kpiguard_regression_current"
BASELINE = "kpiguard_regression_baseline"
WINDOW_EVENTS = "kpiguard_regression_window_events"
FIRING = "kpiguard_regression_firing"

GROUP_NAME = "kpiguard.tripwire"
COUNT_WINDOW_ALERT = "KpiguardCountWindowRegression"
TIME_WINDOW_ALERT = "KpiguardTimeWindowRegression"
DASHBOARD_PATH = "/d/kpiguard-tripwire/kpiguard-regression-tripwire"

# KILL_SWITCH halts every PROD_EXEC request: a person must look now. THROTTLE stops one engine gracefully.
SEVERITY = {Action.KILL_SWITCH: "critical", Action.THROTTLE: "warning"}
DRY_RUN_SEVERITY = "info"

_EFFECT = {
    Action.THROTTLE: (
        "disables the {domain} risk policy, so new {domain} work is denied with reason policy_disabled "
        "until a person re-enables the policy"
    ),
    Action.KILL_SWITCH: (
        "engages the global kill switch, so every PROD_EXEC request is refused with 403 "
        "until a person releases it"
    ),
}


# --- names -------------------------------------------------------------------------------------------------


def events_rate_name(window: str) -> str:
    """Recorded rate of KPI events per second over ``window`` (``5m``, ``1h``, ``7d_offset1h``)."""
    return f"{LEVEL}:kpiguard_kpi_events:rate{window}"


def events_increase_name(window: str) -> str:
    """Recorded number of KPI events in ``window``: the traffic guard of the time-window alert."""
    return f"{LEVEL}:kpiguard_kpi_events:increase{window}"


def success_ratio_name(window: str) -> str:
    """Recorded share of successful KPI events over ``window``."""
    return f"{LEVEL}:kpiguard_kpi_success:ratio_rate{window}"


def value_mean_name(window: str) -> str:
    """Recorded mean of the events' value over ``window``."""
    return f"{LEVEL}:kpiguard_kpi_event_value:mean{window}"


def value_count_increase_name(window: str) -> str:
    """Recorded number of events carrying a value in ``window``: the traffic guard of mean_value policies."""
    return f"{LEVEL}:kpiguard_kpi_event_value_count:increase{window}"


def window_labels(options: RuleOptions) -> tuple[str, ...]:
    """Every recorded window as it appears in rule names: the short windows, then the baseline."""
    return (*(duration(w) for w in options.short_windows), options.baseline_label)


def recording_rule_names(options: RuleOptions = RuleOptions()) -> tuple[str, ...]:
    """The names of the recording rules, in file order."""
    return tuple(rule["record"] for rule in recording_rules(options))


# --- PromQL ------------------------------------------------------------------------------------------------


def selector(policy: Policy, **extra: str) -> str:
    """The label matchers of the policy's series; names are checked against NAME_PATTERN, so no escaping."""
    pairs = {"domain": policy.domain, "metric": policy.metric, **extra}
    return "{" + ",".join(f'{key}="{value}"' for key, value in pairs.items()) + "}"


def _windows(options: RuleOptions) -> list[tuple[str, str]]:
    """(name label, range suffix) of every recorded window: ``[5m]``, ..., and ``[7d] offset 1h``."""
    result = [(duration(w), f"[{duration(w)}]") for w in options.short_windows]
    baseline = f"[{duration(options.baseline_window)}] offset {duration(options.baseline_offset)}"
    result.append((options.baseline_label, baseline))
    return result


def _guard_windows(options: RuleOptions) -> list[tuple[str, str]]:
    """The compared short window and the baseline, the two the traffic guard counts events in."""
    return _windows(options)[-2:]


def _sum(function: str, metric: str, rng: str, matchers: str = "") -> str:
    """``sum by (domain, metric) (function(metric{matchers}rng))``."""
    return f"sum by (domain, metric) ({function}({metric}{matchers}{rng}))"


def recording_rules(options: RuleOptions = RuleOptions()) -> list[dict[str, Any]]:
    """Recording rules for every exported (domain, metric): event rates and counts, success ratios, mean values."""
    rules: list[dict[str, Any]] = []
    for label, rng in _windows(options):
        rules.append({"record": events_rate_name(label), "expr": _sum("rate", EVENTS, rng)})
    for label, rng in _guard_windows(options):
        # A count, not a rate: "at least 50 events" must not hang on the rounding of 50 × (1/3600) × 3600.
        rules.append({"record": events_increase_name(label), "expr": _sum("increase", EVENTS, rng)})
    for label, rng in _windows(options):
        total = _sum("rate", EVENTS, rng)
        success = _sum("rate", EVENTS, rng, '{outcome="success"}')
        expr = (
            "# `or ... * 0`: a success series appears only with the first success; a ratio of 0 must not vanish.\n"
            f"(\n  {success}\n  or\n  {total} * 0\n)\n/\n{total}"
        )
        rules.append({"record": success_ratio_name(label), "expr": expr})
    for label, rng in _guard_windows(options):
        rules.append({"record": value_count_increase_name(label), "expr": _sum("increase", VALUE_COUNT, rng)})
    for label, rng in _windows(options):
        expr = (
            "# sum of values / count over the window: the sum is exported as two counters (positive values,\n"
            "# magnitudes of negative ones), so that restarts read as counter resets.\n"
            f"(\n  {_sum('increase', VALUE_POSITIVE, rng)}\n  -\n  {_sum('increase', VALUE_NEGATIVE, rng)}\n)\n"
            f"/\n{_sum('increase', VALUE_COUNT, rng)}"
        )
        rules.append({"record": value_mean_name(label), "expr": expr})
    return rules


def _count_window_expr(policy: Policy) -> str:
    """The plain rule on kpiguard's count windows, or for a guarded policy the evaluator's verdict (its value: the drop)."""
    if policy.guard is not Guard.NONE:
        return (
            f"max by (domain, metric) ({DROP}{selector(policy)})\n"
            f"and on (domain, metric)\n"
            f"max by (domain, metric) ({FIRING}{selector(policy)}) == 1"
        )
    return (
        f"max by (domain, metric) ({DROP}{selector(policy)}) >= {policy.max_drop_fraction!r}\n"
        f"and on (domain, metric)\n"
        f"max by (domain, metric) ({WINDOW_EVENTS}{selector(policy, window='recent')})"
        f" >= {policy.min_events_to_enforce}\n"
        f"and on (domain, metric)\n"
        f"max by (domain, metric) ({WINDOW_EVENTS}{selector(policy, window='baseline')})"
        f" >= {policy.min_events_to_enforce}"
    )


_GUARD_WORDS = {
    Guard.EVIDENCE: "the drop reached the policy's max_drop_fraction of {threshold}, significant at p <= {alpha:g} "
                    "and at least the threshold with confidence {confidence:g} (guard: evidence)",
    Guard.SEQUENTIAL: "its CUSUM of drops against the policy's max_drop_fraction of {threshold} crossed the boundary "
                      "set by guard_alpha {alpha:g} (guard: sequential)",
    Guard.COMBINED: "the drop reached the policy's max_drop_fraction of {threshold}, significant at p <= {alpha:g} "
                    "and at least the threshold with confidence {confidence:g}, or its CUSUM backstop crossed its "
                    "boundary (guard: combined)",
}


def _figure_names(policy: Policy, options: RuleOptions) -> tuple[str, str, str, str]:
    """(current, baseline, current traffic, baseline traffic) recorded series of the time-window comparison."""
    short, base = duration(options.compare_window), options.baseline_label
    if policy.aggregation is Aggregation.MEAN_VALUE:
        return (value_mean_name(short), value_mean_name(base),
                value_count_increase_name(short), value_count_increase_name(base))
    return success_ratio_name(short), success_ratio_name(base), events_increase_name(short), events_increase_name(base)


def _time_window_expr(policy: Policy, options: RuleOptions) -> str:
    """Relative drop of the compared short window against the baseline, guarded by traffic in both."""
    current, baseline, current_count, baseline_count = _figure_names(policy, options)
    sel = selector(policy)
    n = policy.min_events_to_enforce
    return (
        "# (abs(baseline) > 0) filters out a baseline of 0, which has no relative drop.\n"
        f"(\n  {baseline}{sel}\n  - {current}{sel}\n)\n"
        f"/ (abs({baseline}{sel}) > 0)\n"
        f">= {policy.max_drop_fraction!r}\n"
        "# At least min_events_to_enforce events in each window: a quiet hour cannot fire.\n"
        f"and on (domain, metric) {current_count}{sel} >= {n}\n"
        f"and on (domain, metric) {baseline_count}{sel} >= {n}"
    )


def _query(expr: str, fmt: str) -> str:
    """A Go template that formats the first value of ``expr``; backquotes keep the PromQL's own quotes."""
    return f"{{{{ with query `{expr}` }}}}{{{{ . | first | value | {fmt} }}}}{{{{ end }}}}"


def number_format(policy: Policy) -> str:
    """The template function that prints the policy's aggregate: percentages for ratios, 4 digits for means."""
    return "humanizePercentage" if policy.aggregation is Aggregation.SUCCESS_RATE else 'printf "%.4g"'


def percent(fraction: float) -> str:
    """A fraction as a short percentage: 0.2 → ``20%``, 0.125 → ``12.5%``."""
    return f"{fraction * 100:.4g}%"


def _what(policy: Policy) -> str:
    """The aggregate in words."""
    if policy.aggregation is Aggregation.SUCCESS_RATE:
        return f"{policy.domain}.{policy.metric} success ratio"
    return f"{policy.domain}.{policy.metric} mean value"


def alert_labels(policy: Policy) -> dict[str, str]:
    """The labels every alert of the policy carries; Alertmanager routes on ``action``."""
    labels = {
        "domain": policy.domain,
        "metric": policy.metric,
        "action": policy.action.value,
        "severity": DRY_RUN_SEVERITY if policy.dry_run else SEVERITY[policy.action],
    }
    if policy.dry_run:
        labels["dry_run"] = "true"
    return labels


def _links(policy: Policy, options: RuleOptions) -> dict[str, str]:
    """runbook_url and dashboard_url annotations."""
    anchor = policy.action.value.lower().replace("_", "-")
    return {
        "runbook_url": f"{options.runbook_base_url}/regression-tripwire#{anchor}",
        "dashboard_url": (
            f"{options.dashboard_base_url}{DASHBOARD_PATH}?var-domain={policy.domain}&var-metric={policy.metric}"
        ),
    }


def _consequence(policy: Policy) -> str:
    """What happens when the alert reaches kpiguard's webhook."""
    if policy.dry_run:
        return f"The policy is a dry run: this alert is reported to people and never executes {policy.action.value}."
    effect = _EFFECT[policy.action].format(domain=policy.domain)
    return f"Routed to kpiguard's webhook, it executes {policy.action.value}: it {effect}."


VALUE_TEMPLATE = "{{ $value | humanizePercentage }}"


def count_window_summary(policy: Policy, drop: str, baseline: str, current: str) -> str:
    """The count-window alert's summary with the drop, baseline and current given as text or as templates."""
    return (
        f"{_what(policy)} dropped {drop} (from {baseline} to {current}) over the last {policy.window_events} "
        f"events; threshold {percent(policy.max_drop_fraction)}, action {policy.action.value}"
    )


def time_window_summary(policy: Policy, options: RuleOptions, drop: str, baseline: str, current: str) -> str:
    """The time-window alert's summary with the drop, baseline and current given as text or as templates."""
    return (
        f"{_what(policy)} over the last {duration(options.compare_window)} is {drop} below its "
        f"{duration(options.baseline_window)} baseline (from {baseline} to {current}); "
        f"threshold {percent(policy.max_drop_fraction)}, action {policy.action.value}"
    )


def count_window_alert(policy: Policy, options: RuleOptions = RuleOptions()) -> dict[str, Any]:
    """The alert on kpiguard's own count windows: the first signal, the same decision as the native evaluator."""
    fmt = number_format(policy)
    threshold = percent(policy.max_drop_fraction)
    summary = count_window_summary(
        policy, VALUE_TEMPLATE,
        _query(f"max({BASELINE}{selector(policy)})", fmt), _query(f"max({CURRENT}{selector(policy)})", fmt),
    )
    description = (
        f"kpiguard compared the newest {policy.window_events} events of {policy.domain}.{policy.metric} with the "
        f"{policy.baseline_events} before them, each window holding at least {policy.min_events_to_enforce} "
        f"events, and the drop reached the policy's max_drop_fraction of {threshold}. {_consequence(policy)}"
    )
    if policy.guard is not Guard.NONE:
        verdict = _GUARD_WORDS[policy.guard].format(
            threshold=threshold, alpha=policy.guard_alpha, confidence=policy.guard_confidence)
        description = (
            f"kpiguard's evaluator compared the newest {policy.window_events} events of "
            f"{policy.domain}.{policy.metric} with the {policy.baseline_events} before them, each window holding at "
            f"least {policy.min_events_to_enforce} events, and {verdict}. {_consequence(policy)}"
        )
    return {
        "alert": COUNT_WINDOW_ALERT,
        "expr": _count_window_expr(policy),
        "for": duration(options.count_window_for),
        "labels": alert_labels(policy),
        "annotations": {"summary": summary, "description": description, **_links(policy, options)},
    }


def time_window_alert(policy: Policy, options: RuleOptions = RuleOptions()) -> dict[str, Any]:
    """The alert on Prometheus' time windows: the short window against the baseline, the second signal."""
    current_name, baseline_name, _, _ = _figure_names(policy, options)
    fmt = number_format(policy)
    sel = selector(policy)
    short, long_ = duration(options.compare_window), duration(options.baseline_window)
    threshold = percent(policy.max_drop_fraction)
    summary = time_window_summary(
        policy, options, VALUE_TEMPLATE, _query(baseline_name + sel, fmt), _query(current_name + sel, fmt),
    )
    description = (
        f"Over the last {short}, {_what(policy)} stayed at least {threshold} below its level in the {long_} before, "
        f"for {duration(options.time_window_for)}, with at least {policy.min_events_to_enforce} events in each "
        f"window. This is the time-window signal; kpiguard's count window ({COUNT_WINDOW_ALERT}) is the first. "
        f"{_consequence(policy)}"
    )
    return {
        "alert": TIME_WINDOW_ALERT,
        "expr": _time_window_expr(policy, options),
        "for": duration(options.time_window_for),
        "labels": alert_labels(policy),
        "annotations": {"summary": summary, "description": description, **_links(policy, options)},
    }


def rule_groups(policies: Iterable[Policy], options: RuleOptions = RuleOptions()) -> list[dict[str, Any]]:
    """One group: the recording rules, then two alerts per enabled policy, sorted by (domain, metric)."""
    rules = recording_rules(options)
    for policy in sorted(policies, key=lambda p: p.key):
        if policy.enabled:
            rules += [count_window_alert(policy, options), time_window_alert(policy, options)]
    return [{"name": GROUP_NAME, "rules": rules}]
