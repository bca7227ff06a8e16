"""The Regression Tripwire: policies, count-window evaluation and the decision to enforce."""

from kpiguard.tripwire._evaluate import Evaluation, drop_fraction, evaluate
from kpiguard.tripwire._policy import SEED_POLICIES, Action, Aggregation, Guard, Policy
from kpiguard.tripwire._spec import dump_policies, load_policies, parse_policies
from kpiguard.tripwire._window import WindowStats, event_value, split_windows

__all__ = [
    "SEED_POLICIES",
    "Action",
    "Aggregation",
    "Evaluation",
    "Guard",
    "Policy",
    "WindowStats",
    "drop_fraction",
    "dump_policies",
    "evaluate",
    "event_value",
    "load_policies",
    "parse_policies",
    "split_windows",
]
