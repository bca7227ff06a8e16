"""The current week's governance figures as Prometheus gauges, from the last computed snapshot.

A collector, not client gauges: a figure that is undefined (no remediation yet, so no MTTR) is
absent from the exposition instead of a misleading 0, and a policy that no longer triggers this
week disappears with the week.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kpiguard.governance._weekly import KILL_SWITCH, THROTTLE, WeeklyFigures


class WeeklyCollector(Collector):
    """Exports the last :class:`WeeklyFigures` handed to :meth:`update`."""

    def __init__(self) -> None:
        self._figures: WeeklyFigures | None = None
        self._refreshed: datetime | None = None

    def update(self, figures: WeeklyFigures, at: datetime) -> None:
        """Replace the snapshot (the current week's figures, computed at ``at``)."""
        self._figures = figures
        self._refreshed = at

    @property
    def figures(self) -> WeeklyFigures | None:
        """The snapshot exported now."""
        return self._figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges; nothing until the first snapshot."""
        f = self._figures
        if f is None or self._refreshed is None:
            return
        o = f.overall
        week_start = GaugeMetricFamily("kpiguard_governance_week_start_timestamp_seconds",
                                       "Start (Monday 00:00 UTC) of the ISO week the governance figures cover.",
                                       labels=["week"])
        week_start.add_metric([str(f.week)], f.week.start.timestamp())
        refreshed = GaugeMetricFamily("kpiguard_governance_refreshed_timestamp_seconds",
                                      "When the governance figures were last computed from the audit trail.")
        refreshed.add_metric([], self._refreshed.timestamp())
        triggers = GaugeMetricFamily("kpiguard_governance_triggers",
                                     "Tripwire triggers this ISO week, by action.", labels=["action"])
        triggers.add_metric([THROTTLE], o.throttle)
        triggers.add_metric([KILL_SWITCH], o.kill_switch)
        open_ = GaugeMetricFamily("kpiguard_governance_open_triggers",
                                  "This week's triggers not remediated yet.")
        open_.add_metric([], o.open)
        repeats = GaugeMetricFamily("kpiguard_governance_repeat_triggers",
                                    "Repeated triggers of an episode already open (not counted as triggers).")
        repeats.add_metric([], o.repeats)
        mttr = GaugeMetricFamily("kpiguard_governance_mttr_seconds",
                                 "Mean time from a trigger this week to its remediation.")
        fp = GaugeMetricFamily("kpiguard_governance_false_positive_ratio",
                               "This week's released triggers marked false positive, as a fraction.")
        if o.mttr_seconds is not None:
            mttr.add_metric([], o.mttr_seconds)
        if o.false_positive_ratio is not None:
            fp.add_metric([], o.false_positive_ratio)
        pm = ["domain", "metric"]
        p_triggers = GaugeMetricFamily("kpiguard_governance_policy_triggers",
                                       "Tripwire triggers this ISO week, per policy and action.",
                                       labels=[*pm, "action"])
        p_mttr = GaugeMetricFamily("kpiguard_governance_policy_mttr_seconds",
                                   "Mean time to remediate this week's triggers, per policy.", labels=pm)
        p_fp = GaugeMetricFamily("kpiguard_governance_policy_false_positive_ratio",
                                 "This week's false-positive fraction, per policy.", labels=pm)
        recs = GaugeMetricFamily("kpiguard_governance_recommendation",
                                 "1 for each piece of the seed's advice this week's figures call for.",
                                 labels=[*pm, "code"])
        for p in f.policies:
            labels = [p.domain or p.policy, p.metric or ""]
            for action, n in ((THROTTLE, p.figures.throttle), (KILL_SWITCH, p.figures.kill_switch)):
                if n:
                    p_triggers.add_metric([*labels, action], n)
            if p.figures.mttr_seconds is not None:
                p_mttr.add_metric(labels, p.figures.mttr_seconds)
            if p.figures.false_positive_ratio is not None:
                p_fp.add_metric(labels, p.figures.false_positive_ratio)
        for r in f.recommendations:
            p = next((q for q in f.policies if q.policy == r.policy), None)
            labels = [p.domain or p.policy, p.metric or ""] if p is not None else ["", ""]
            recs.add_metric([*labels, r.code], 1)
        yield from (week_start, refreshed, triggers, open_, repeats, mttr, fp, p_triggers, p_mttr, p_fp, recs)
