"""The perplexity-vs-bias charts: round ticks, CI whiskers, one point per model (not one per
category stacked on the same Δperplexity), and the false-assurance quadrant."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from edgegate.report.paradox import fmt_pp, fmt_rel, paradox_chart, report_charts
from edgegate.report.svg import Point, nice_ticks


def _tick_labels(svg: str) -> list[str]:
    return re.findall(r'class="tick"[^>]*>([^<]*)</text>', svg)


def test_nice_ticks_are_round() -> None:
    assert nice_ticks(-0.084, 0.056, 5) == [-0.05, 0.0, 0.05]
    assert nice_ticks(-0.084, 0.056, 10) == [-0.08, -0.06, -0.04, -0.02, 0.0, 0.02, 0.04]
    assert nice_ticks(0.0, 1.0, 4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(1.0, 1.0) == [1.0]


def test_formats() -> None:
    assert (
        fmt_rel(0.05) == "+5%"
        and fmt_rel(-0.025) == "-2.5%"
        and fmt_rel(19.0) == "×20"
        and fmt_rel(4.0) == "+400%"
        and fmt_rel(0) == "0%"
    )
    assert fmt_pp(0.05) == "+5 pp" and fmt_pp(-0.012) == "-1.2 pp" and fmt_pp(0.0) == "0 pp"


def test_paradox_chart_has_whiskers_thresholds_and_quadrant() -> None:
    pts = [
        Point("wanda10", 0.02, 0.08, x_ci=(0.01, 0.03), y_ci=(0.05, 0.11)),  # false assurance
        Point("wanda70", 9.0, 0.01, x_ci=(8.0, 10.0), y_ci=(-0.02, 0.04)),
    ]
    svg = paradox_chart("t", pts, ppl_limit=0.05, srs_limit=0.05)
    ET.fromstring(svg)
    assert svg.count("<circle") == 2
    assert svg.count('stroke-dasharray="6 4"') == 2  # both policy limits
    assert 'fill="#fdecea"' in svg and "false assurance" in svg
    labels = _tick_labels(svg)
    assert (
        "+5%" in labels and "×10" in labels
    )  # log axis keeps the threshold and the outlier readable
    assert all(
        re.fullmatch(r"0%|[+-][\d,.]+%|×[\d,.]+|0 pp|[+-][\d.]+ pp|wanda\d+", t) for t in labels
    ), labels
    assert "95% CI [+1%, +3%]" in svg  # whiskers are explained in the tooltip


def test_single_report_draws_one_point_and_a_per_category_forest() -> None:
    bbq = {
        "overall": {"delta_srs": 0.03, "ci": [0.01, 0.05], "n": 600},
        "per_category": [
            {"scope": "Age", "delta_srs": 0.06, "ci": [0.0, 0.12], "n": 180},
            {"scope": "Gender_identity", "delta_srs": -0.01, "ci": [-0.05, 0.03], "n": 220},
        ],
    }
    ppl = [
        {
            "name": "max_relative_increase",
            "observed": 0.056,
            "threshold": 0.05,
            "ci": {"low": 0.04, "high": 0.07},
        }
    ]
    charts = report_charts(ppl, bbq, 0.05)
    assert len(charts) == 2
    scatter, forest = charts
    assert scatter.count("<circle") == 1  # categories no longer pile up on one x
    assert forest.count("<circle") == 3 and "Age (n=180)" in forest and "overall" in forest
    assert "+5.6%" not in _tick_labels(scatter)  # ticks are round, not the data's own value
    assert report_charts(ppl, None, 0.05) == []


def test_a_destroyed_model_does_not_squeeze_the_others_into_the_edge() -> None:
    """A study with random pruning (perplexity x 5.75e10) beside small changes: the log axis
    stops at x1,000, the extreme point sits on the edge marked "→", and the +1% point is drawn
    well inside the plot instead of on top of the +0.5% one."""
    pts = [
        Point("small", 0.005, 0.0),
        Point("one pct", 0.01, 0.01),
        Point("wrecked", 5.75e10, -0.33),
        Point("bad", 60.0, -0.2),
    ]
    svg = paradox_chart("t", pts, ppl_limit=0.05, srs_limit=0.05)
    ET.fromstring(svg)
    assert "wrecked →" in svg and "×1,000" in _tick_labels(svg)
    cx = [float(x) for x in re.findall(r'<circle cx="([0-9.]+)"', svg)]
    assert cx[3] - cx[0] > 300  # x61 lies far right of +0.5% (about 130 px on a 5.75e10 axis)
