"""The regression policy as plain data: what the evaluator, the API, the YAML file and the rule generator share."""

from __future__ import annotations

import dataclasses
import enum


class Action(enum.StrEnum):
    """What a triggered policy does."""

    THROTTLE = "THROTTLE"
    KILL_SWITCH = "KILL_SWITCH"


class Guard(enum.StrEnum):
    """What evidence a triggered drop needs besides reaching max_drop_fraction."""

    NONE = "none"  # the seed's plain rule: the point drop alone decides
    # A significant drop (p_value <= guard_alpha) that is, with guard_confidence, at least
    # max_drop_fraction: likelihood-ratio tests for success rates, Welch for means (_guard.py).
    EVIDENCE = "evidence"
    # Page's CUSUM of the per-event log-likelihood ratio against a reference frozen while it is positive;
    # triggers when it reaches ln(1 / guard_alpha) + slack (_sequential.py). Carries state between evaluations.
    SEQUENTIAL = "sequential"
    # The evidence guard's window test, or a CUSUM backstop with a high boundary whose reference is re-taken
    # only on evidence that the stream has not dropped (_sequential.py): fast on clear drops, quiet on
    # sub-threshold ones, and a sustained drop past the threshold is caught even when no window shows it.
    COMBINED = "combined"


# The guards that carry a CUSUM from one evaluation to the next.
CUSUM_GUARDS = frozenset({Guard.SEQUENTIAL, Guard.COMBINED})


class Aggregation(enum.StrEnum):
    """How a window of KPI events becomes one number."""

    SUCCESS_RATE = "success_rate"  # share of events with success=true
    MEAN_VALUE = "mean_value"  # arithmetic mean of the events' value


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """A regression policy for one (domain, metric); defaults are the seed's."""

    domain: str
    metric: str
    window_events: int = 50
    baseline_events: int = 200
    min_events_to_enforce: int = 50
    max_drop_fraction: float = 0.20
    action: Action = Action.THROTTLE
    aggregation: Aggregation = Aggregation.SUCCESS_RATE
    enabled: bool = True
    dry_run: bool = False
    # The evidence guard's window test, or its CUSUM backstop: every detection target of DETECTION.md
    # the evidence guard meets, and the sustained drops past the threshold that no one window shows.
    guard: Guard = Guard.COMBINED
    # Confidence that the true drop is at least max_drop_fraction (0.5 <= c < 1). 0.95 keeps the
    # seed's scenario 2 (a real but sub-threshold drop) under 5% of runs; see DETECTION.md.
    guard_confidence: float = 0.95
    # Largest one-sided p-value of "no drop at all" (0 < alpha < 1). Small because the service
    # evaluates after every event: 3e-6 bounds false triggers on a stable stream by 0.7 per
    # 100,000 events at any rate (exact enumeration in DETECTION.md).
    guard_alpha: float = 3e-6
    changed_by: str | None = None
    reason: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The (domain, metric) pair the policy watches."""
        return (self.domain, self.metric)


# The seed's table: all disabled, the safest start.
SEED_POLICIES: tuple[Policy, ...] = (
    Policy("WHOLESALE", "contract_rate", max_drop_fraction=0.20, enabled=False),
    Policy("WHOLESALE", "offer_accept_rate", max_drop_fraction=0.15, enabled=False),
    Policy("BUYER_MATCH", "match_success", max_drop_fraction=0.25, enabled=False),
    Policy(
        "CAPITAL",
        "roi_event",
        max_drop_fraction=0.30,
        action=Action.KILL_SWITCH,
        aggregation=Aggregation.MEAN_VALUE,
        enabled=False,
    ),
)
