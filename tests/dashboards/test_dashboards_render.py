"""The renderer's pure parts: grid layout, reference ids, table columns, field config."""

from __future__ import annotations

import pytest

from kpiguard.dashboards import Kind, Mapping, Panel, Query, Row, Step
from kpiguard.dashboards._grafana import _field_config, _ref_id, _value_columns, layout


def _panel(width: int, height: int = 8, title: str = "p") -> Panel:
    return Panel(title, Kind.TIMESERIES, (Query("up"),), width=width, height=height)


@pytest.mark.parametrize("index, ref", [(0, "A"), (1, "B"), (25, "Z"), (26, "AA"), (27, "AB"), (51, "AZ"), (52, "BA")])
def test_ref_ids_follow_grafanas_letters(index, ref):
    """Targets are lettered A..Z, then AA, AB, ..."""
    assert _ref_id(index) == ref


@pytest.mark.parametrize("widths, heights, expected", [
    ((12, 12), (8, 8), [(0, 1), (12, 1)]),
    ((12, 12, 24), (8, 5, 4), [(0, 1), (12, 1), (0, 9)]),        # wraps below the tallest panel of the line
    ((8, 8, 8, 6), (3, 3, 3, 3), [(0, 1), (8, 1), (16, 1), (0, 4)]),
])
def test_layout_flows_left_to_right_and_wraps(widths, heights, expected):
    """Panels follow their row header, fill 24 columns, and wrap under the tallest panel of the full line."""
    rows = (Row("r", tuple(_panel(w, h, f"p{i}") for i, (w, h) in enumerate(zip(widths, heights)))),)
    placed = layout(rows)
    assert placed[0]["type"] == "row" and placed[0]["gridPos"]["y"] == 0
    assert [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in placed[1:]] == expected
    assert [p["id"] for p in placed] == list(range(1, len(placed) + 1))


def test_second_row_starts_below_the_first():
    """A row header goes below the lowest panel of the row before."""
    placed = layout((Row("a", (_panel(24, 6),)), Row("b", (_panel(24, 4),))))
    assert [p["gridPos"]["y"] for p in placed] == [0, 1, 7, 8]


@pytest.mark.parametrize("width", [0, 25])
def test_layout_refuses_a_panel_wider_than_the_grid(width):
    """A width outside 1..24 is an error that names the panel."""
    with pytest.raises(ValueError, match="'wide'"):
        layout((Row("r", (_panel(width, title="wide"),)),))


@pytest.mark.parametrize("legends, expected", [
    (("denials",), {"Value": "denials"}),
    (("current", "baseline"), {"Value #A": "current", "Value #B": "baseline"}),
    (("", "drop"), {"Value #B": "drop"}),
])
def test_table_value_columns_are_renamed_to_the_legends(legends, expected):
    """One query's column is "Value", several are "Value #A"...; each gets its legend as the header."""
    assert _value_columns(tuple(Query("up", legend) for legend in legends)) == expected


def test_field_config_carries_mappings_steps_and_the_dashed_override():
    """Mappings, threshold steps, no-value text and the dashed-series override reach the field config."""
    panel = Panel("t", Kind.STAT, (Query("up"),), mappings=(Mapping("1", "ON", "red"),),
                  steps=(Step(None, "green"), Step(1, "red")), dashed="^cap$", no_value="none", decimals=0)
    config = _field_config(panel)
    defaults = config["defaults"]
    assert defaults["mappings"] == [{"type": "value", "options": {"1": {"text": "ON", "color": "red", "index": 0}}}]
    assert defaults["thresholds"]["steps"] == [{"color": "green", "value": None}, {"color": "red", "value": 1}]
    assert defaults["noValue"] == "none" and defaults["decimals"] == 0 and "min" not in defaults
    assert config["overrides"][0]["matcher"] == {"id": "byRegexp", "options": "^cap$"}
