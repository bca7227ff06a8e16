"""The Regression Tripwire: policies, count-window evaluation and the decision to enforce."""

from kpiguard.tripwire._policy import SEED_POLICIES, Action, Aggregation, Policy
from kpiguard.tripwire._spec import dump_policies, load_policies, parse_policies

__all__ = ["SEED_POLICIES", "Action", "Aggregation", "Policy", "dump_policies", "load_policies", "parse_policies"]
