"""What a dashboard is made of, as plain frozen data: queries, panels, rows, template variables."""

from __future__ import annotations

import dataclasses
import enum


class Kind(enum.StrEnum):
    """The Grafana panel types the generator uses."""

    TIMESERIES = "timeseries"
    STAT = "stat"
    TABLE = "table"
    STATE_TIMELINE = "state-timeline"


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target: ``legend`` is Grafana's legendFormat; ``instant`` asks for the newest value only."""

    expr: str
    legend: str = ""
    instant: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Mapping:
    """A value mapping: the exact value ``value`` is shown as ``text`` in ``color``."""

    value: str
    text: str
    color: str


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """A threshold step: from ``value`` up (None = from minus infinity) the colour is ``color``."""

    value: float | None
    color: str


@dataclasses.dataclass(frozen=True, slots=True)
class Panel:
    """A panel: what it shows (``queries``), how (``kind``, ``unit``), and its width in the 24-column grid."""

    title: str
    kind: Kind
    queries: tuple[Query, ...]
    description: str = ""
    unit: str = "short"
    width: int = 12
    height: int = 8
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    steps: tuple[Step, ...] = ()
    mappings: tuple[Mapping, ...] = ()
    dashed: str | None = None  # series whose display name matches this regex are drawn dashed (thresholds, baselines)
    no_value: str | None = None  # shown instead of "No data" where no data is a normal answer
    text_mode: str = "auto"  # stat panels: "name" shows the legend (labels) instead of the number


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """A titled row of panels, laid out left to right."""

    title: str
    panels: tuple[Panel, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Variable:
    """A query template variable over a label's values; multi-valued with All = ``.+``, used as ``=~"$name"``."""

    name: str
    label: str
    query: str  # label_values(...)


@dataclasses.dataclass(frozen=True, slots=True)
class Annotation:
    """A Prometheus annotation: a marker wherever ``expr`` has a sample."""

    name: str
    expr: str
    title: str
    text: str
    tags: tuple[str, ...]
    color: str = "red"


@dataclasses.dataclass(frozen=True, slots=True)
class Dashboard:
    """A whole dashboard; ``uid`` is stable so that links (the alerts' dashboard_url) keep working."""

    uid: str
    title: str
    description: str
    tags: tuple[str, ...]
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    annotations: tuple[Annotation, ...] = ()
    time_from: str = "now-6h"
    refresh: str = "30s"
