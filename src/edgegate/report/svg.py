"""Small inline-SVG charts for the HTML report and the study (no JavaScript, no network, no
plotting library): grouped bars with optional reference lines, a quadrant scatter with CI
whiskers (edgegate.report.svg_scatter), and a forest plot. The shared pieces live in
edgegate.report.svg_base; this module is where callers import every chart from."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from edgegate.report.svg_base import (
    PALETTE,
    Point,
    RefLine,
    escape,
    finite,
    finite_ci,
    nice_ticks,
    padded,
    svg_open,
)
from edgegate.report.svg_scatter import quadrant_scatter

__all__ = [
    "PALETTE",
    "Point",
    "RefLine",
    "bar_chart",
    "forest_plot",
    "nice_ticks",
    "quadrant_scatter",
]


def _nice_max(x: float) -> float:
    if not math.isfinite(x) or x <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(x))
    if exp <= 0:  # x is subnormal: 10**k underflows to 0
        return 1.0
    for m in (1, 2, 2.5, 5, 10):
        if x <= m * exp:
            return m * exp
    return 10 * exp


def _ticks(top: float, n: int = 4) -> list[float]:
    return [top * i / n for i in range(n + 1)]


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    fmt: Callable[[float], str] = lambda v: f"{v:.3g}",
    ymax: float | None = None,
    refs: Sequence[RefLine] = (),
    width: int = 900,
    height: int = 300,
) -> str:
    """Grouped vertical bars: one group per category, one bar per series. A value that is
    not a finite number is drawn as "n/a", like a missing one; so is a reference line."""
    left, right, top, bottom = 70, 20, 36, 70
    pw, ph = width - left - right, height - top - bottom
    series = [(name, [finite(v) for v in vs]) for name, vs in series]
    refs = [r for r in refs if math.isfinite(r.value)]
    values = [v for _, vs in series for v in vs if v is not None]
    peak = max([*values, *(r.value for r in refs), 0.0])
    ymax = ymax if ymax is not None and math.isfinite(ymax) and ymax > 0 else _nice_max(peak * 1.05)
    ng, ns = max(len(categories), 1), max(len(series), 1)
    group_w = pw / ng
    bar_w = max(min(group_w * 0.8 / ns, 40.0), 1.0)

    def y(v: float) -> float:
        return top + ph - (min(v, ymax) / ymax) * ph

    out = [svg_open(width, height, title)]
    for t in _ticks(ymax):
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e5e5e5"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="tick">{escape(fmt(t))}</text>'
        )
    for gi, cat in enumerate(categories):
        gx = left + gi * group_w + (group_w - bar_w * ns) / 2
        for si, (name, vs) in enumerate(series):
            v = vs[gi] if gi < len(vs) else None
            x = gx + si * bar_w
            if v is None:
                out.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{top + ph - 4}" text-anchor="middle" class="tick">n/a</text>'
                )
                continue
            color = PALETTE[si % len(PALETTE)]
            if v == 0:  # a zero bar has no height; say so, it is often the finding
                out.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{top + ph - 4}" text-anchor="middle" class="zero">0</text>'
                )
            out.append(
                f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bar_w - 1:.1f}" height="{top + ph - y(v):.1f}" fill="{color}">'
                f"<title>{escape(f'{cat} · {name}: {fmt(v)}')}</title></rect>"
            )
        label = escape(cat)
        cx = left + gi * group_w + group_w / 2
        if ng > 8:
            out.append(
                f'<text transform="translate({cx:.1f},{top + ph + 12}) rotate(-40)" text-anchor="end" class="tick">{label}</text>'
            )
        else:
            out.append(
                f'<text x="{cx:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{label}</text>'
            )
    for r in refs:
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(r.value):.1f}" y2="{y(r.value):.1f}" stroke="{r.color}" '
            f'stroke-dasharray="6 4" stroke-width="2"/>'
            f'<text x="{left + pw - 4}" y="{y(r.value) - 5:.1f}" text-anchor="end" class="ref" fill="{r.color}">{escape(r.label)}</text>'
        )
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" stroke="#888"/>')
    out.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#888"/>'
    )
    if len(series) > 1:
        out.append(_legend([n for n, _ in series], left, height - 14))
    out.append("</svg>")
    return "".join(out)


def forest_plot(
    title: str,
    rows: Sequence[Point],
    *,
    x_label: str,
    limit: float | None = None,
    limit_label: str = "",
    fmt: Callable[[float], str] = lambda v: f"{v:+.3g}",
    width: int = 900,
) -> str:
    """One row per label: the point estimate (``x``) with its CI as a horizontal whisker, a
    zero line and a dashed threshold; ``y`` is ignored (rows are drawn in the given order)."""
    # room for the longest label at the 11px tick font (~6.5 px a character): BBQ category
    # names such as "Race_x_socioeconomic_status (n=92)" were clipped at a fixed 170 px
    left = int(min(max(170, 16 + 6.5 * max((len(r.label) for r in rows), default=0)), width // 2))
    right, top, row_h = 30, 36, 24
    height = top + row_h * max(len(rows), 1) + 46
    pw = width - left - right
    rows = [Point(r.label, r.x, r.y, finite_ci(r.x_ci), None, r.color) for r in rows]
    limit = finite(limit)
    vals = [v for r in rows for v in (r.x, *(r.x_ci or ())) if math.isfinite(v)] + [0.0]
    if limit is not None:
        vals.append(limit)
    x0, x1 = padded(min(vals), max(vals))

    def sx(v: float) -> float:
        return left + (min(max(v, x0), x1) - x0) / (x1 - x0) * pw

    out = [svg_open(width, height, title)]
    bottom = top + row_h * max(len(rows), 1)
    for t in nice_ticks(x0, x1, 6):
        out.append(
            f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{bottom}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{sx(t):.1f}" y="{bottom + 16}" text-anchor="middle" class="tick">{escape(fmt(t))}</text>'
        )
    out.append(
        f'<line x1="{sx(0.0):.1f}" x2="{sx(0.0):.1f}" y1="{top}" y2="{bottom}" stroke="#999"/>'
    )
    if limit is not None:
        out.append(
            f'<line x1="{sx(limit):.1f}" x2="{sx(limit):.1f}" y1="{top}" y2="{bottom}" stroke="#c0392b" '
            f'stroke-dasharray="6 4" stroke-width="2"/>'
            f'<text x="{sx(limit) + 4:.1f}" y="{top - 4}" class="ref" fill="#c0392b">{escape(limit_label)}</text>'
        )
    for i, r in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        color = r.color or PALETTE[0]
        out.append(
            f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" class="tick">{escape(r.label)}</text>'
        )
        if r.x_ci and all(math.isfinite(v) for v in r.x_ci):
            a, b = sx(r.x_ci[0]), sx(r.x_ci[1])
            out.append(
                f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{cy:.1f}" y2="{cy:.1f}" stroke="{color}" stroke-width="2"/>'
            )
        if math.isfinite(r.x):
            tip = f"{r.label}: {fmt(r.x)}" + (
                f", 95% CI [{fmt(r.x_ci[0])}, {fmt(r.x_ci[1])}]" if r.x_ci else ""
            )
            out.append(
                f'<circle cx="{sx(r.x):.1f}" cy="{cy:.1f}" r="5" fill="{color}" stroke="#333">'
                f"<title>{escape(tip)}</title></circle>"
            )
    out.append(
        f'<rect x="{left}" y="{top}" width="{pw}" height="{bottom - top}" fill="none" stroke="#888"/>'
    )
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" class="axis">{escape(x_label)}</text>'
    )
    out.append("</svg>")
    return "".join(out)


def _legend(names: Sequence[str], x: float, y: float) -> str:
    parts = []
    for i, n in enumerate(names):
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x + 14:.1f}" y="{y:.1f}" class="tick">{escape(n)}</text>'
        )
        x += 24 + 7 * len(n)
    return "".join(parts)
