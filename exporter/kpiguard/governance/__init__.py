"""Governance: the Monday control plane and the seed's weekly figures, computed from the audit trail."""

from kpiguard.governance._decide import Decision, Situation, decide
from kpiguard.governance._prometheus import WeeklyCollector
from kpiguard.governance._render import duration, render_report
from kpiguard.governance._week import IsoWeek, parse_week, week_of
from kpiguard.governance._weekly import (
    FALSE_POSITIVE_LIMIT,
    MTTR_LIMIT_SECONDS,
    AuditRecord,
    Figures,
    PolicyFigures,
    Recommendation,
    Trigger,
    WeeklyFigures,
    figures_of,
    overall_recommendations,
    policy_recommendations,
    triggers_from,
    weekly_figures,
)

__all__ = [
    "FALSE_POSITIVE_LIMIT", "MTTR_LIMIT_SECONDS", "AuditRecord", "Decision", "Figures", "IsoWeek", "PolicyFigures",
    "Recommendation", "Situation", "Trigger", "WeeklyCollector", "WeeklyFigures", "decide", "duration",
    "figures_of", "overall_recommendations", "parse_week", "policy_recommendations", "render_report",
    "triggers_from", "week_of", "weekly_figures",
]
