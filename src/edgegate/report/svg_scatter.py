"""The quadrant scatter of the paradox picture: points with CI whiskers on a linear or
log(1 + x) axis, dashed thresholds, the shaded "looks fine, got worse" quadrant, and labels
placed clear of each other."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgegate.report.svg_base import (
    PALETTE,
    Point,
    escape,
    finite,
    finite_ci,
    nice_ticks,
    padded,
    svg_open,
)

# Relative changes that make readable ticks on a log(1 + x) axis.
_LOG_TICKS = (
    -0.9,
    -0.75,
    -0.5,
    -0.25,
    -0.1,
    -0.05,
    0.0,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    4.0,
    9.0,
    19.0,
    49.0,
    99.0,
    199.0,
    499.0,
    999.0,
)


def _as_point(p: Point | tuple[str, float, float]) -> Point:
    return p if isinstance(p, Point) else Point(str(p[0]), float(p[1]), float(p[2]))


def quadrant_scatter(
    title: str,
    points: Sequence[Point | tuple[str, float, float]],
    *,
    x_label: str,
    y_label: str,
    x_limit: float | None,
    y_limit: float | None,
    bad_label: str = "",
    fmt: Callable[[float], str] = lambda v: f"{v:+.3g}",
    y_fmt: Callable[[float], str] | None = None,
    x_log: bool = False,
    width: int = 900,
    height: int = 380,
) -> str:
    """Points (optionally with CI whiskers) and dashed threshold lines; the region
    x <= x_limit and y > y_limit (quality looks fine, bias got worse) is shaded and labelled.

    With ``x_log`` the x values are relative changes drawn on a log(1 + x) axis, so a +5%
    threshold and a +900% variant both stay readable. Ticks are round numbers, never the
    data's own extremes. Points, whiskers and limits that are not finite numbers are left
    out (never drawn at "nan")."""
    pts = [_as_point(p) for p in points]
    pts = [
        Point(p.label, p.x, p.y, finite_ci(p.x_ci), finite_ci(p.y_ci), p.color)
        for p in pts
        if math.isfinite(p.x) and math.isfinite(p.y)
    ]
    x_limit, y_limit = finite(x_limit), finite(y_limit)
    y_fmt = y_fmt or fmt
    ax = _scatter_axes(pts, x_limit, y_limit, x_log, width, height)
    out = [svg_open(width, height, title)]
    shade, banner = _shaded_quadrant(ax, x_limit, y_limit, bad_label)
    out += shade
    out += _scatter_grid(ax, _scatter_x_ticks(ax, x_limit), fmt, y_fmt)
    out += _limit_lines(ax, x_limit, y_limit, fmt, y_fmt)
    out += _scatter_points(ax, pts, banner, fmt, y_fmt)
    left, top, pw, ph = ax.left, ax.top, ax.pw, ax.ph
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 10}" text-anchor="middle" class="axis">{escape(x_label)}</text>'
    )
    out.append(
        f'<text transform="translate(16,{top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" class="axis">{escape(y_label)}</text>'
    )
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class _Axes:
    """A scatter's plot area (pixels) and data range (axis units), and the mapping between
    them; one object so the drawing helpers below cannot disagree about where a value goes."""

    left: int
    top: int
    pw: int
    ph: int
    x0: float
    x1: float
    y0: float
    y1: float
    x_log: bool

    @property
    def x_clip(self) -> float:
        """On the log axis a destroyed model (x ~ 1e10) would squeeze every other point into
        the left edge: the axis stops here and such points sit on its edge, labelled "→"."""
        return 999.0 if self.x_log else math.inf

    def tx(self, v: float) -> float:  # data -> axis units
        return _axis_units(v, self.x_log)

    def sx(self, v: float) -> float:
        return (
            self.left
            + (min(max(self.tx(v), self.x0), self.x1) - self.x0) / (self.x1 - self.x0) * self.pw
        )

    def sy(self, v: float) -> float:
        return (
            self.top
            + self.ph
            - (min(max(v, self.y0), self.y1) - self.y0) / (self.y1 - self.y0) * self.ph
        )


def _axis_units(v: float, x_log: bool) -> float:
    return math.log1p(max(v, -0.99)) if x_log else v


def _scatter_axes(
    pts: Sequence[Point],
    x_limit: float | None,
    y_limit: float | None,
    x_log: bool,
    width: int,
    height: int,
) -> _Axes:
    """Axes that hold every point, whisker and limit, and zero, so the reader always sees
    where "no change" lies."""
    left, right, top, bottom = 78, 30, 36, 50
    x_clip = 999.0 if x_log else math.inf
    xs = [
        _axis_units(min(v, x_clip), x_log)
        for p in pts
        for v in (p.x, *(p.x_ci or ()))
        if math.isfinite(v)
    ]
    xs += [_axis_units(x_limit, x_log) if x_limit is not None else 0.0, 0.0]
    ys = [v for p in pts for v in (p.y, *(p.y_ci or ())) if math.isfinite(v)]
    ys += [y_limit if y_limit is not None else 0.0, 0.0]
    x0, x1 = padded(min(xs), max(xs))
    y0, y1 = padded(min(ys), max(ys))
    return _Axes(left, top, width - left - right, height - top - bottom, x0, x1, y0, y1, x_log)


def _shaded_quadrant(
    ax: _Axes, x_limit: float | None, y_limit: float | None, bad_label: str
) -> tuple[list[str], tuple[float, float] | None]:
    """The shaded "looks fine, got worse" region, and its caption's (right end, baseline) for
    the point labels to keep clear of; nothing when a limit is missing or off the axes."""
    if x_limit is None or y_limit is None or not (ax.tx(x_limit) > ax.x0 and y_limit < ax.y1):
        return [], None
    out = []
    rx, ry = ax.left, ax.top
    w, h = ax.sx(x_limit) - rx, ax.sy(y_limit) - ry
    if w > 0 and h > 0:
        out.append(
            f'<rect x="{rx:.1f}" y="{ry:.1f}" width="{w:.1f}" height="{h:.1f}" fill="#fdecea"/>'
        )
        out.append(
            f'<text x="{rx + 6:.1f}" y="{ry + 16:.1f}" class="ref" fill="#c0392b">{escape(bad_label)}</text>'
        )
    banner = (ax.left + 6 + 6.5 * len(bad_label), ax.top + 16) if bad_label else None
    return out, banner


def _scatter_x_ticks(ax: _Axes, x_limit: float | None) -> list[float]:
    if not ax.x_log:
        return nice_ticks(ax.x0, ax.x1, 6)
    # the threshold and zero first, then round values that keep 45 px apart
    first = ([x_limit] if x_limit is not None else []) + [0.0]
    xticks: list[float] = []
    for t in [*first, *(t for t in _LOG_TICKS if t not in first)]:
        if ax.x0 <= ax.tx(t) <= ax.x1 and all(abs(ax.sx(t) - ax.sx(u)) >= 45 for u in xticks):
            xticks.append(t)
    return xticks


def _scatter_grid(
    ax: _Axes, xticks: Sequence[float], fmt: Callable[[float], str], y_fmt: Callable[[float], str]
) -> list[str]:
    """Grid lines with their tick labels, then the two zero lines drawn darker."""
    left, top, pw, ph, sx, sy = ax.left, ax.top, ax.pw, ax.ph, ax.sx, ax.sy
    out = []
    for t in xticks:
        out.append(
            f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{escape(fmt(t))}</text>'
        )
    for t in nice_ticks(ax.y0, ax.y1, 5):
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" class="tick">{escape(y_fmt(t))}</text>'
        )
    out.append(
        f'<line x1="{sx(0.0):.1f}" x2="{sx(0.0):.1f}" y1="{top}" y2="{top + ph}" stroke="#bbb"/>'
    )
    out.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{sy(0.0):.1f}" y2="{sy(0.0):.1f}" stroke="#bbb"/>'
    )
    return out


def _limit_lines(
    ax: _Axes,
    x_limit: float | None,
    y_limit: float | None,
    fmt: Callable[[float], str],
    y_fmt: Callable[[float], str],
) -> list[str]:
    left, top, pw, ph, sx, sy = ax.left, ax.top, ax.pw, ax.ph, ax.sx, ax.sy
    out = []
    if x_limit is not None:
        out.append(
            f'<line x1="{sx(x_limit):.1f}" x2="{sx(x_limit):.1f}" y1="{top}" y2="{top + ph}" stroke="#c0392b" stroke-dasharray="6 4"/>'
            f'<text x="{sx(x_limit) + 4:.1f}" y="{top + ph - 6}" class="ref" fill="#c0392b">limit {escape(fmt(x_limit))}</text>'
        )
    if y_limit is not None:
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{sy(y_limit):.1f}" y2="{sy(y_limit):.1f}" stroke="#c0392b" stroke-dasharray="6 4"/>'
            f'<text x="{left + pw - 4}" y="{sy(y_limit) - 5:.1f}" text-anchor="end" class="ref" fill="#c0392b">limit {escape(y_fmt(y_limit))}</text>'
        )
    return out


def _scatter_points(
    ax: _Axes,
    pts: Sequence[Point],
    banner: tuple[float, float] | None,
    fmt: Callable[[float], str],
    y_fmt: Callable[[float], str],
) -> list[str]:
    """Each point with its whiskers, tooltip and label; labels are placed in order, each one
    clear of those before it (``placed``), of the other markers and of the quadrant caption."""
    out: list[str] = []
    placed: list[
        tuple[float, float]
    ] = []  # label positions so far; stack labels that would collide
    markers = [(ax.sx(p.x), ax.sy(p.y)) for p in pts]
    for i, p in enumerate(pts):
        if not (math.isfinite(p.x) and math.isfinite(p.y)):
            continue
        color = p.color or PALETTE[i % len(PALETTE)]
        cx, cy = ax.sx(p.x), ax.sy(p.y)
        if p.x_ci and all(math.isfinite(v) for v in p.x_ci):
            a, b = ax.sx(p.x_ci[0]), ax.sx(p.x_ci[1])
            out.append(
                f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{cy:.1f}" y2="{cy:.1f}" stroke="{color}" stroke-width="1.5"/>'
            )
        if p.y_ci and all(math.isfinite(v) for v in p.y_ci):
            a, b = ax.sy(p.y_ci[0]), ax.sy(p.y_ci[1])
            out.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{a:.1f}" y2="{b:.1f}" stroke="{color}" stroke-width="1.5"/>'
            )
        ly = _label_y(ax, p.label, cx, cy, placed, markers, banner)
        placed.append((cx, ly))
        label = p.label + (" →" if p.x > ax.x_clip else "")
        anchor, lx = ("end", cx - 10) if cx > ax.left + ax.pw - 110 else ("start", cx + 10)
        if abs(ly - (cy + 4)) > 1:  # moved away from its marker: a leader line says whose it is
            out.append(
                f'<line x1="{cx + (5 if anchor == "start" else -5):.1f}" y1="{cy:.1f}" x2="{lx:.1f}" '
                f'y2="{ly - 4:.1f}" stroke="{color}" stroke-width="0.7"/>'
            )
        out.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{color}" stroke="#333" fill-opacity="0.85">'
            f"<title>{escape(_point_tip(p, fmt, y_fmt))}</title></circle>"
            f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" class="tick" fill="{color}">{escape(label)}</text>'
        )
    return out


def _label_y(
    ax: _Axes,
    label: str,
    cx: float,
    cy: float,
    placed: Sequence[tuple[float, float]],
    markers: Sequence[tuple[float, float]],
    banner: tuple[float, float] | None,
) -> float:
    """Baseline for a point's label: beside its marker when that spot is free, else the
    nearest free slot 13 px steps up or down inside the plot; beside the marker if none is."""
    offsets = [0.0] + [d * k for k in range(1, 12) for d in (13.0, -13.0)]
    fits = [cy + 4 + o for o in offsets if ax.top + 12 <= cy + 4 + o <= ax.top + ax.ph - 3]
    # a label keeps clear of earlier labels and of every other marker
    free = [
        y_
        for y_ in fits
        if not any(abs(y_ - py_) < 12 and abs(cx - px_) < 120 for px_, py_ in placed)
        and not any(
            abs(y_ - 4 - my) < 9 and 0 < mx - cx < 10 + 6.5 * len(label)
            for mx, my in markers
            if (mx, my) != (cx, cy)
        )
        and not (banner and abs(y_ - banner[1]) < 12 and cx < banner[0])
    ]
    return free[0] if free else cy + 4


def _point_tip(p: Point, fmt: Callable[[float], str], y_fmt: Callable[[float], str]) -> str:
    tip = f"{p.label}: x={fmt(p.x)}, y={y_fmt(p.y)}"
    if p.x_ci:
        tip += f", x 95% CI [{fmt(p.x_ci[0])}, {fmt(p.x_ci[1])}]"
    if p.y_ci:
        tip += f", y 95% CI [{y_fmt(p.y_ci[0])}, {y_fmt(p.y_ci[1])}]"
    return tip
