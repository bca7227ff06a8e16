"""Small PromQL builders, so that every panel writes selectors and rates the same way."""

from __future__ import annotations

RATE_INTERVAL = "$__rate_interval"
RANGE = "$__range"


def var(name: str) -> str:
    """A template variable matched as a regex (``=~``), so that multi-value and All (``.+``) both work."""
    return f'=~"${name}"'


def sel(metric: str, *matchers: str) -> str:
    """``metric{a,b}``; matchers are written out (``'domain=~"$domain"'``, ``'outcome="denied"'``)."""
    return f"{metric}{{{','.join(matchers)}}}" if matchers else metric


def rate(selector: str, window: str = RATE_INTERVAL) -> str:
    """``rate(selector[window])``."""
    return f"rate({selector}[{window}])"


def increase(selector: str, window: str = RANGE) -> str:
    """``increase(selector[window])``."""
    return f"increase({selector}[{window}])"


def sum_by(labels: str, expr: str) -> str:
    """``sum by (labels) (expr)``; an empty ``labels`` sums everything."""
    return f"sum by ({labels}) ({expr})" if labels else f"sum({expr})"


def quantile(q: float, histogram: str, by: str = "", *matchers: str) -> str:
    """``histogram_quantile`` over the rate of a histogram's buckets, per ``by`` labels."""
    group = "le" + (f", {by}" if by else "")
    return f"histogram_quantile({q}, sum by ({group}) ({rate(sel(histogram + '_bucket', *matchers))}))"


def ratio(part: str, whole: str, by: str = "") -> str:
    """part / whole, with a part that does not exist yet (no 5xx so far) read as 0 rather than no data."""
    zero = f"{sum_by(by, whole)} * 0"
    return f"({sum_by(by, part)} or {zero}) / {sum_by(by, whole)}"
