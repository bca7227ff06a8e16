"""The weekly governance figures and the Monday decisions as pure functions over plain audit records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kpiguard.governance import (
    AuditRecord,
    IsoWeek,
    Situation,
    WeeklyCollector,
    decide,
    duration,
    parse_week,
    render_report,
    triggers_from,
    week_of,
    weekly_figures,
)

W47 = IsoWeek(2026, 47)
MON = datetime(2026, 11, 16, tzinfo=UTC)


def at(hours: float, day: int = 0) -> datetime:
    """A time in week 2026-W47: Monday plus ``day`` days and ``hours`` hours."""
    return MON + timedelta(days=day, hours=hours)


def enf(i: int, when: datetime, action: str, domain: str | None, metric: str | None,
        source: str = "evaluator") -> AuditRecord:
    """An enforcement entry as the evaluator, Alertmanager or a person writes it."""
    engine = domain if action == "THROTTLE" else None
    return AuditRecord(i, when, "enforcement", action, source, domain, metric, engine, {"changed": True})


def rel(i: int, when: datetime, action: str, domain: str | None = None, metric: str | None = None,
        fp: bool = False, engine: str | None = None) -> AuditRecord:
    """A release entry: RELEASE_THROTTLE, RELEASE_KILL_SWITCH or REARM."""
    if engine is None and action == "RELEASE_THROTTLE":
        engine = domain
    detail = {"false_positive": fp} if metric else None
    return AuditRecord(i, when, "release", action, "api", domain, metric, engine, detail)


# The fixture: 3 triggers, THROTTLE 2 : KILL_SWITCH 1, MTTR 2 h 30 min, 1 false positive of 3.
HISTORY = (
    enf(1, at(10, day=-3), "THROTTLE", "WHOLESALE", "contract_rate"),          # previous week
    rel(2, at(11, day=-3), "RELEASE_THROTTLE", "WHOLESALE", "contract_rate"),
    enf(3, at(10), "THROTTLE", "WHOLESALE", "contract_rate"),                   # 1 h to remediate
    AuditRecord(4, at(10.5), "policy_change", "UPDATE", "api", "WHOLESALE", "contract_rate"),
    rel(5, at(11), "RELEASE_THROTTLE", "WHOLESALE", "contract_rate"),
    enf(6, at(12), "THROTTLE", "BUYER_MATCH", "match_success", source="alertmanager"),  # 3 h, false positive
    enf(7, at(12.1), "THROTTLE", "BUYER_MATCH", "match_success", source="alertmanager"),  # a repeat
    enf(8, at(13), "KILL_SWITCH", "CAPITAL", "roi_event"),                      # 3 h 30 min
    rel(9, at(14), "REARM", "CAPITAL", "roi_event"),                            # reviewed, switch still on
    rel(10, at(15), "RELEASE_THROTTLE", "BUYER_MATCH", "match_success", fp=True),
    rel(11, at(16.5), "RELEASE_KILL_SWITCH"),
    enf(12, at(17), "KILL_SWITCH", None, None, source="api"),                   # by hand: not a trigger
    rel(13, at(18), "RELEASE_KILL_SWITCH"),
)


@pytest.mark.parametrize(("field", "expected"), [
    ("triggers", 3),
    ("throttle", 2),
    ("kill_switch", 1),
    ("throttle_to_kill", 2.0),
    ("repeats", 1),
    ("remediated", 3),
    ("open", 0),
    ("released", 3),
    ("false_positives", 1),
    ("mttr_seconds", 2.5 * 3600),
    ("false_positive_ratio", pytest.approx(1 / 3)),
])
def test_fixture_history_overall_figures(field, expected):
    """The fixture history gives the known overall answers for week 2026-W47."""
    figures = weekly_figures(HISTORY, W47)
    assert getattr(figures.overall, field) == expected


@pytest.mark.parametrize(("policy", "triggers", "mttr_hours", "fp_ratio", "codes"), [
    ("WHOLESALE.contract_rate", 1, 1.0, 0.0, []),
    ("BUYER_MATCH.match_success", 1, 3.0, 1.0, ["raise_max_drop_fraction"]),
    ("CAPITAL.roi_event", 1, 3.5, 0.0, []),
])
def test_fixture_history_per_policy(policy, triggers, mttr_hours, fp_ratio, codes):
    """Each policy has its own count, MTTR, false-positive rate and advice."""
    figures = {p.policy: p for p in weekly_figures(HISTORY, W47).policies}
    p = figures[policy]
    assert p.figures.triggers == triggers
    assert p.figures.mttr_seconds == mttr_hours * 3600
    assert p.figures.false_positive_ratio == fp_ratio
    assert [r.code for r in p.recommendations] == codes


def test_fixture_history_week_advice_and_previous_week():
    """Three triggers are more than the seed's 0 or 1; the previous week holds only its own trigger."""
    figures = weekly_figures(HISTORY, W47)
    assert [r.code for r in figures.recommendations] == ["too_many_triggers", "raise_max_drop_fraction"]
    before = weekly_figures(HISTORY, IsoWeek(2026, 46))
    assert (before.overall.triggers, before.overall.mttr_seconds) == (1, 3600.0)
    assert weekly_figures(HISTORY, IsoWeek(2026, 48)).overall.triggers == 0


CASES = [
    ("never released: open, no MTTR, no false-positive rate",
     [enf(1, at(1), "THROTTLE", "W", "m")],
     {"triggers": 1, "open": 1, "mttr_seconds": None, "false_positive_ratio": None}),
    ("slow fix: MTTR over 4 h",
     [enf(1, at(1), "THROTTLE", "W", "m"), rel(2, at(6), "RELEASE_THROTTLE", "W", "m")],
     {"mttr_seconds": 5 * 3600.0, "codes": ["lower_thresholds"]}),
    ("Alertmanager's auto-release of the engine remediates, without a review",
     [enf(1, at(1), "THROTTLE", "W", "m", "alertmanager"), rel(2, at(2), "RELEASE_THROTTLE", "W", None)],
     {"remediated": 1, "released": 1, "false_positives": 0, "mttr_seconds": 3600.0}),
    ("a new firing after remediation is a new trigger",
     [enf(1, at(1), "THROTTLE", "W", "m", "alertmanager"), rel(2, at(2), "RELEASE_THROTTLE", "W", None),
      enf(3, at(3), "THROTTLE", "W", "m", "alertmanager")],
     {"triggers": 2, "repeats": 0, "open": 1}),
    ("re-enabling one policy of an engine remediates the engine's other THROTTLE too",
     [enf(1, at(1), "THROTTLE", "W", "a"), enf(2, at(2), "THROTTLE", "W", "b"),
      rel(3, at(3), "RELEASE_THROTTLE", "W", "a")],
     {"triggers": 2, "remediated": 2, "mttr_seconds": 1.5 * 3600}),
    ("re-armed while the kill switch stays engaged: reviewed, not remediated; firing again is new",
     [enf(1, at(1), "KILL_SWITCH", "C", "roi"), rel(2, at(2), "REARM", "C", "roi", fp=True),
      enf(3, at(3), "KILL_SWITCH", "C", "roi")],
     {"triggers": 2, "kill_switch": 2, "remediated": 0, "released": 1, "false_positives": 1,
      "false_positive_ratio": 1.0, "codes": ["too_many_triggers", "favour_throttle", "raise_max_drop_fraction"]}),
    ("remediated the next week still counts for the week it fired in",
     [enf(1, at(20, day=6), "THROTTLE", "W", "m"), rel(2, at(26, day=6), "RELEASE_THROTTLE", "W", "m")],
     {"triggers": 1, "mttr_seconds": 6 * 3600.0}),
    ("actions by hand (api, cli) are not tripwire triggers",
     [enf(1, at(1), "KILL_SWITCH", None, None, "api"), enf(2, at(2), "KILL_SWITCH", None, None, "cli")],
     {"triggers": 0, "codes": []}),
    ("an evaluation asked for over the API is a tripwire trigger",
     [enf(1, at(1), "THROTTLE", "W", "m", "api")],
     {"triggers": 1, "throttle": 1}),
    ("Alertmanager's KILL_SWITCH without domain labels is a trigger",
     [enf(1, at(1), "KILL_SWITCH", "", "", "alertmanager"), rel(2, at(3), "RELEASE_KILL_SWITCH")],
     {"triggers": 1, "kill_switch": 1, "mttr_seconds": 2 * 3600.0}),
    ("records out of order are read in time order",
     [rel(2, at(2), "RELEASE_THROTTLE", "W", "m", fp=True), enf(1, at(1), "THROTTLE", "W", "m")],
     {"triggers": 1, "mttr_seconds": 3600.0, "false_positives": 1}),
]


@pytest.mark.parametrize(("records", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_trigger_matching_rules(records, expected):
    """Triggers, repeats, remediation and review follow the documented rules."""
    figures = weekly_figures(records, W47)
    for field, value in expected.items():
        if field == "codes":
            assert [r.code for r in figures.recommendations] == value
        else:
            assert getattr(figures.overall, field) == value, field


def test_trigger_detail_is_kept():
    """Each trigger carries when it fired, when it was remediated and reviewed, and its repeats."""
    t = {x.policy: x for x in triggers_from(HISTORY) if W47.contains(x.at)}
    assert t["BUYER_MATCH.match_success"].repeats == 1
    assert t["BUYER_MATCH.match_success"].false_positive is True
    assert t["CAPITAL.roi_event"].reviewed_at == at(14) and t["CAPITAL.roi_event"].remediated_at == at(16.5)
    assert t["CAPITAL.roi_event"].engine is None and t["WHOLESALE.contract_rate"].engine == "WHOLESALE"


@pytest.mark.parametrize(("text", "start"), [
    ("2026-W47", datetime(2026, 11, 16, tzinfo=UTC)),
    ("2026-W01", datetime(2025, 12, 29, tzinfo=UTC)),
    ("2026-W53", datetime(2026, 12, 28, tzinfo=UTC)),
    (" 2020-W53 ", datetime(2020, 12, 28, tzinfo=UTC)),
])
def test_parse_week(text, start):
    """An ISO week starts on its Monday 00:00 UTC and lasts seven days."""
    week = parse_week(text)
    assert week.start == start and week.end == start + timedelta(days=7)
    assert str(week) == text.strip()


@pytest.mark.parametrize(("text", "message"), [
    ("2026-47", "expected an ISO week"),
    ("2026-W7", "expected an ISO week"),
    ("2025-W53", "week 53 does not exist in 2025 (weeks 01 to 52)"),
    ("2026-W00", "week 00 does not exist"),
    ("0000-W01", "year 0 is out of range"),
    ("", "expected an ISO week"),
])
def test_parse_week_refuses(text, message):
    """A malformed or non-existent week is refused, saying why."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_week(text)


def test_week_of_is_utc():
    """The week of a time is taken in UTC: Sunday 23:30 in New York is already Monday in UTC."""
    from zoneinfo import ZoneInfo

    assert week_of(datetime(2026, 11, 22, 23, 30, tzinfo=ZoneInfo("America/New_York"))) == IsoWeek(2026, 48)


def _situation(**over):
    base = dict(kill_switch_engaged=False, kill_switch_reason=None, throttled_engines=(), triggered=(),
                policy_disabled_denials=0, weekly=weekly_figures((), W47))
    base.update(over)
    return Situation(**base)


DECISIONS = [
    ("quiet week", {}, ["good_week"]),
    ("kill switch engaged", {"kill_switch_engaged": True, "kill_switch_reason": "Regression: C.r drop=160%"},
     ["degraded"]),
    ("an engine throttled", {"throttled_engines": ("WHOLESALE",), "policy_disabled_denials": 4}, ["degraded"]),
    ("a regression latched", {"triggered": ("W.m",)}, ["degraded"]),
    ("a week with a third false positives", {"weekly": weekly_figures(HISTORY, W47)},
     ["too_aggressive"]),
    ("a week caught and fixed, no false positive", {"weekly": weekly_figures(HISTORY[2:5], W47)},
     ["caught_and_fixed"]),
    ("degraded and noisy", {"throttled_engines": ("W",), "weekly": weekly_figures(HISTORY, W47)},
     ["degraded", "too_aggressive"]),
]


@pytest.mark.parametrize(("over", "codes"), [d[1:] for d in DECISIONS], ids=[d[0] for d in DECISIONS])
def test_decisions(over, codes):
    """The seed's Decide list follows from the data; there is always at least one decision."""
    decisions = decide(_situation(**over))
    assert [d.code for d in decisions] == codes
    assert all(d.because for d in decisions)


def test_degraded_decision_names_what_is_stopped():
    """The degraded decision says which engines and why, with today's policy_disabled denials."""
    (d,) = decide(_situation(kill_switch_engaged=True, kill_switch_reason="R", throttled_engines=("WHOLESALE",),
                             policy_disabled_denials=4))
    assert d.decision == "System degraded, fix required" and d.then == "Manual remediation"
    assert d.because == ("kill switch engaged: R", "throttled engines: WHOLESALE (4 policy_disabled denials today)")


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "n/a"), (12.4, "12 s"), (600, "10 min"), (9000, "2 h 30 min"), (7200, "2 h"),
])
def test_duration(seconds, text):
    """Durations read as people say them."""
    assert duration(seconds) == text


def _scrape(collector: WeeklyCollector) -> dict[tuple[str, frozenset], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_collector_exports_the_snapshot():
    """The gauges carry the snapshot's figures; undefined figures are absent, not 0."""
    collector = WeeklyCollector()
    assert _scrape(collector) == {}
    collector.update(weekly_figures(HISTORY, W47), at(20))
    got = _scrape(collector)
    assert got[("kpiguard_governance_triggers", frozenset({("action", "THROTTLE")}))] == 2
    assert got[("kpiguard_governance_triggers", frozenset({("action", "KILL_SWITCH")}))] == 1
    assert got[("kpiguard_governance_mttr_seconds", frozenset())] == 9000
    assert got[("kpiguard_governance_false_positive_ratio", frozenset())] == pytest.approx(1 / 3)
    assert got[("kpiguard_governance_policy_mttr_seconds",
                frozenset({("domain", "CAPITAL"), ("metric", "roi_event")}))] == 3.5 * 3600
    assert got[("kpiguard_governance_recommendation", frozenset(
        {("domain", "BUYER_MATCH"), ("metric", "match_success"), ("code", "raise_max_drop_fraction")}))] == 1
    assert got[("kpiguard_governance_week_start_timestamp_seconds", frozenset({("week", "2026-W47")}))] == \
        MON.timestamp()
    collector.update(weekly_figures([enf(1, at(1), "THROTTLE", "W", "m")], W47), at(21))
    got = _scrape(collector)
    assert ("kpiguard_governance_mttr_seconds", frozenset()) not in got
    assert got[("kpiguard_governance_open_triggers", frozenset())] == 1


def test_render_report_has_the_four_checks():
    """The text report has one section per Monday check and the weekly figures, with the facts in them."""
    figures = weekly_figures(HISTORY, W47)
    data = {
        "generated_at": "2026-11-20T09:00:00Z",
        "go_live": {"kill_switch_engaged": True, "reason": "Regression: CAPITAL.roi_event drop=160%",
                    "changed_by": "tripwire", "source": "evaluator", "changed_at": "2026-11-20T08:00:00Z",
                    "cause": {"domain": "CAPITAL", "metric": "roi_event", "drop_fraction": 1.6, "audit_id": 8,
                              "at": "2026-11-20T08:00:00Z", "source": "evaluator"}},
        "risk": {"throttled_engines": [{"engine": "WHOLESALE", "reason": "Regression tripwire: x", "since": "t",
                                        "changed_by": "tripwire"}],
                 "denials_today": {"date": "2026-11-20", "checks": 5, "denied": 3, "policy_disabled": 2,
                                   "by_reason": {"policy_disabled": 2, "kill_switch_engaged": 1},
                                   "by_engine": {"WHOLESALE": {"policy_disabled": 2}}}},
        "regressions": {"triggered": [{"domain": "WHOLESALE", "metric": "contract_rate", "baseline": 0.95,
                                       "current": 0.2, "drop_fraction": 0.789, "last_triggered_at": "t1",
                                       "max_drop_fraction": 0.2, "action": "THROTTLE", "note": "TRIGGERED"}]},
        "weekly": {"week": "2026-W47", **figures.overall.to_json(),
                   "recommendations": [r.to_json() for r in figures.recommendations]},
        "decisions": [d.to_json() for d in decide(_situation(kill_switch_engaged=True, weekly=figures))],
    }
    text = render_report(data)
    for needle in ("1. Go-live", "kill switch: ENGAGED", "why: regression CAPITAL.roi_event drop=1.600",
                   "2. Risk guard", "WHOLESALE: Regression tripwire: x", "WHOLESALE: policy_disabled 2",
                   "3. Regressions", "WHOLESALE.contract_rate: triggered at t1", "drop 0.789",
                   "4. Decide", "System degraded, fix required -> Manual remediation",
                   "Threshold too aggressive -> Loosen max_drop_fraction",
                   "tripwire triggers: 3 (THROTTLE : KILL_SWITCH = 2:1)", "MTTR: 2 h 30 min",
                   "false positives: 1 of 3 (33%)", "raise max_drop_fraction"):
        assert needle in text, needle


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.text = ""
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(("tty", "expected"), [
    (False, "[###############---------------]  50% b\n[##############################] 100% c\n"),
    (True, "\r\x1b[K[######################--------]  75% a\r\x1b[K[###############---------------]  50% b"
           "\r\x1b[K[##############################] 100% c\n"),
])
def test_progress_bar(tty, expected):
    """The demo's bar redraws in place on a terminal and prints whole lines only at step ends otherwise."""
    from kpiguard.client._progress import Progress

    stream = _Stream(tty)
    p = Progress(4, stream)
    p.advance(3, "a")
    p.done = 1
    p.advance(1, "b", line=True)
    p.advance(5, "c", line=True)
    p.finish()
    assert stream.text == expected
