"""Enforcement: the risk guard, the go-live kill switch, and the actions that change them."""

from kpiguard.enforcement._actions import Outcome, enforce, kill_reason, release, throttle_reason
from kpiguard.enforcement._golive import GoLive, read_state, set_kill_switch
from kpiguard.enforcement._risk import (
    Reason,
    RiskCheck,
    check_and_reserve,
    ledger_today,
    list_risk_policies,
    risk_policy_json,
    set_engine_enabled,
    today_utc,
)

__all__ = [
    "GoLive", "Outcome", "Reason", "RiskCheck", "check_and_reserve", "enforce", "kill_reason", "ledger_today",
    "list_risk_policies", "read_state", "release", "risk_policy_json", "set_engine_enabled", "set_kill_switch",
    "throttle_reason", "today_utc",
]
