"""The Regression Tripwire: policies, count-window evaluation and the decision to enforce."""

from kpiguard.tripwire._policy import SEED_POLICIES, Action, Aggregation, Policy

__all__ = ["SEED_POLICIES", "Action", "Aggregation", "Policy"]
