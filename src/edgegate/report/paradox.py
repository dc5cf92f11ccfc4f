"""The perplexity-vs-bias picture, shared by the HTML report (one compressed model) and
`edgegate study` (many): Δperplexity on x (relative, log(1 + x) axis), ΔSRS on y (percentage
points), 95% CI whiskers on both, the policy's two thresholds as dashed lines, and the
false-assurance quadrant (perplexity within its limit, bias beyond its limit) shaded."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from edgegate.bbq.record import Measurements
from edgegate.report.svg import Point, forest_plot, quadrant_scatter

FALSE_ASSURANCE = "perplexity passes, bias fails: false assurance"


def fmt_rel(v: float) -> str:
    """A relative change as a percentage (+5%, -2.5%, +400%), or from 10 times the dense value
    on as a factor (x10, x20): "+1,900%" is hard to read on an axis."""
    p = v * 100
    if abs(p) < 1e-9:
        return "0%"
    if v >= 9:
        return f"\u00d7{1 + v:,.0f}" if 1e3 <= 1 + v < 1e6 else f"\u00d7{1 + v:,.3g}"
    return f"{p:+,.0f}%" if abs(p) >= 100 else f"{p:+.3g}%"


def fmt_pp(v: float) -> str:
    """A difference of two rates in percentage points: +5 pp, -2.5 pp."""
    p = v * 100
    return "0 pp" if abs(p) < 1e-9 else f"{p:+.3g} pp"


def paradox_chart(
    title: str, points: Sequence[Point], *, ppl_limit: float | None, srs_limit: float | None
) -> str:
    return quadrant_scatter(
        title, points,
        x_label="Δperplexity, compressed vs dense (relative; log scale; whiskers: 95% CI)",
        y_label="ΔSRS (biased-answer rate, percentage points)",
        x_limit=ppl_limit, y_limit=srs_limit, bad_label=FALSE_ASSURANCE,
        fmt=fmt_rel, y_fmt=fmt_pp, x_log=True,
        height=max(380, 140 + 30 * len(points)),  # room to stack a study's labels
    )  # fmt: skip


def _ci(v: Any) -> tuple[float, float] | None:
    """(low, high) from a [low, high] list or a {"low", "high"} mapping, if both are finite."""
    if isinstance(v, Mapping):
        v = (v.get("low"), v.get("high"))
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        lo, hi = float(v[0]), float(v[1])
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    return None


def ppl_point(
    ppl_verdicts: Sequence[Any],
) -> tuple[float, tuple[float, float] | None, float | None] | None:
    """(relative change, its CI, threshold) from the perplexity check's verdicts (objects or
    report dicts), or None when it has none."""

    def get(v: Any, k: str) -> Any:
        return v.get(k) if isinstance(v, Mapping) else getattr(v, k, None)

    usable = [v for v in ppl_verdicts if isinstance(get(v, "observed"), (int, float))]
    rel = next(
        (v for v in usable if get(v, "name") == "max_relative_increase"),
        usable[0] if usable else None,
    )
    if rel is None:
        return None
    ci = get(rel, "ci")
    if ci is not None and not isinstance(ci, Mapping):
        ci = {"low": getattr(ci, "low", None), "high": getattr(ci, "high", None)}
    thr = get(rel, "threshold")
    return (
        float(get(rel, "observed")),
        _ci(ci),
        float(thr) if isinstance(thr, (int, float)) else None,
    )


def srs_rows(bbq_measurements: Measurements) -> tuple[Point | None, list[Point]]:
    """The overall ΔSRS (as a point with y = ΔSRS) and per-category rows (x = ΔSRS) from the
    BBQ check's measurements; missing pieces are left out, never invented."""
    overall = bbq_measurements.get("overall")
    top = None
    if isinstance(overall, Mapping) and isinstance(d := overall.get("delta_srs"), (int, float)):
        top = Point("overall", 0.0, float(d), y_ci=_ci(overall.get("ci")))
    rows = []
    for r in bbq_measurements.get("per_category") or []:
        if isinstance(r, Mapping) and isinstance(d := r.get("delta_srs"), (int, float)):
            ci = _ci(r.get("ci"))
            rows.append(Point(f"{r.get('scope')} (n={r.get('n')})", float(d), 0.0, x_ci=ci))
    return top, rows


def report_charts(
    ppl_verdicts: Sequence[Any], bbq_measurements: Measurements | None, srs_limit: float | None
) -> list[str]:
    """One report's charts: the overall point on the paradox plot, and ΔSRS per category."""
    if not bbq_measurements:
        return []
    top, rows = srs_rows(bbq_measurements)
    out = []
    pp = ppl_point(ppl_verdicts)
    if pp is not None and top is not None:
        x, x_ci, x_limit = pp
        point = Point("compressed vs dense", x, top.y, x_ci=x_ci, y_ci=top.y_ci)
        out.append(
            paradox_chart(
                "Δperplexity vs ΔSRS (overall)", [point], ppl_limit=x_limit, srs_limit=srs_limit
            )
        )
    if rows:
        if top is not None:
            rows = [*rows, Point("overall", top.y, 0.0, x_ci=top.y_ci, color="#333")]
        out.append(
            forest_plot(
                "ΔSRS per BBQ category (95% CI)",
                rows,
                x_label="ΔSRS (percentage points)",
                limit=srs_limit,
                limit_label="policy limit",
                fmt=fmt_pp,
            )
        )
    return out
