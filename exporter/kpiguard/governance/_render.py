"""The control plane as readable text, from its JSON (what ``kpiguard report`` prints)."""

from __future__ import annotations

from typing import Any


def duration(seconds: float | None) -> str:
    """``2 h 30 min``, ``45 s``; ``n/a`` for None."""
    if seconds is None:
        return "n/a"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    hours, rest = divmod(s, 3600)
    minutes = rest // 60
    if hours == 0:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _drop(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_report(data: dict[str, Any]) -> str:
    """The four Monday checks and the weekly figures, one section each."""
    weekly = data["weekly"]
    lines = [f"kpiguard control plane, {data['generated_at']} (week {weekly['week']})", ""]

    golive = data["go_live"]
    lines.append("1. Go-live")
    if golive["kill_switch_engaged"]:
        lines.append(f"   kill switch: ENGAGED since {golive['changed_at']} by {golive['changed_by'] or 'unknown'}"
                     f" ({golive['source'] or 'unknown source'})")
        lines.append(f"   reason: {golive['reason']}")
        cause = golive.get("cause")
        if cause and cause.get("domain") and cause.get("metric"):
            lines.append(f"   why: regression {cause['domain']}.{cause['metric']} drop={_drop(cause['drop_fraction'])}"
                         f" at {cause['at']} ({cause['source']}, audit #{cause['audit_id']})")
        elif cause:
            lines.append(f"   why: engaged by hand ({cause['source']}, audit #{cause['audit_id']})")
    else:
        lines.append("   kill switch: released (PROD_EXEC allowed)")
    lines.append("")

    risk = data["risk"]
    lines.append("2. Risk guard")
    if risk["throttled_engines"]:
        lines.append("   throttled engines:")
        for e in risk["throttled_engines"]:
            lines.append(f"     {e['engine']}: {e['reason'] or 'no reason'} (since {e['since']}, by {e['changed_by']})")
    else:
        lines.append("   throttled engines: none")
    d = risk["denials_today"]
    lines.append(f"   risk checks today ({d['date']}): {d['checks']}, denied {d['denied']}"
                 f" (policy_disabled {d['policy_disabled']})")
    for engine, reasons in sorted(d["by_engine"].items()):
        lines.append(f"     {engine}: " + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())))
    lines.append("")

    lines.append("3. Regressions")
    triggered = data["regressions"]["triggered"]
    if not triggered:
        lines.append("   triggered: none")
    for s in triggered:
        lines.append(f"   {s['domain']}.{s['metric']}: triggered at {s['last_triggered_at']},"
                     f" baseline {_drop(s['baseline'])} -> current {_drop(s['current'])},"
                     f" drop {_drop(s['drop_fraction'])} (threshold {s.get('max_drop_fraction', 'n/a')},"
                     f" {s.get('action', '?')})")
        if s.get("note"):
            lines.append(f"     note: {s['note']}")
    lines.append("")

    lines.append("4. Decide")
    for dec in data["decisions"]:
        lines.append(f"   * {dec['decision']} -> {dec['then']}")
        for why in dec["because"]:
            lines.append(f"       - {why}")
    lines.append("")

    lines.append(f"Weekly figures ({weekly['week']})")
    lines.append(f"   tripwire triggers: {weekly['triggers']} (THROTTLE : KILL_SWITCH = {weekly['ratio']}),"
                 f" repeats {weekly['repeats']}, still open {weekly['open']}")
    lines.append(f"   MTTR: {duration(weekly['mttr_seconds'])} over {weekly['remediated']} remediated;"
                 f" false positives: {weekly['false_positives']} of {weekly['released']}"
                 f" ({_ratio(weekly['false_positive_ratio'])})")
    for rec in weekly["recommendations"]:
        lines.append(f"   advice: {rec['message']}")
    return "\n".join(lines) + "\n"
