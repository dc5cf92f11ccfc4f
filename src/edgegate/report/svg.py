"""Small inline-SVG charts for the HTML report (no JavaScript, no network, no plotting
library): grouped bars with optional reference lines, and a quadrant scatter."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape as _html_escape

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


_CONTROL = dict.fromkeys(c for c in range(32) if c not in (9, 10, 13))


def escape(text: str) -> str:
    """HTML-escape, dropping control characters (not allowed in SVG/XML text)."""
    return _html_escape(str(text).translate(_CONTROL))


@dataclass(frozen=True)
class RefLine:
    value: float
    label: str
    color: str = "#c0392b"


def _nice_max(x: float) -> float:
    if x <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(x))
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
    """Grouped vertical bars: one group per category, one bar per series."""
    left, right, top, bottom = 70, 20, 36, 70
    pw, ph = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    peak = max([*values, *(r.value for r in refs), 0.0])
    ymax = ymax if ymax is not None else _nice_max(peak * 1.05)
    ng, ns = max(len(categories), 1), max(len(series), 1)
    group_w = pw / ng
    bar_w = max(min(group_w * 0.8 / ns, 40.0), 1.0)

    def y(v: float) -> float:
        return top + ph - (min(v, ymax) / ymax) * ph

    out = [_open(width, height, title)]
    for t in _ticks(ymax):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="tick">{escape(fmt(t))}</text>')
    for gi, cat in enumerate(categories):
        gx = left + gi * group_w + (group_w - bar_w * ns) / 2
        for si, (name, vs) in enumerate(series):
            v = vs[gi] if gi < len(vs) else None
            x = gx + si * bar_w
            if v is None:
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + ph - 4}" text-anchor="middle" class="tick">n/a</text>')
                continue
            color = PALETTE[si % len(PALETTE)]
            if v == 0:  # a zero bar has no height; say so, it is often the finding
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + ph - 4}" text-anchor="middle" class="zero">0</text>')
            out.append(
                f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bar_w - 1:.1f}" height="{top + ph - y(v):.1f}" fill="{color}">'
                f"<title>{escape(f'{cat} · {name}: {fmt(v)}')}</title></rect>"
            )
        label = escape(cat)
        cx = left + gi * group_w + group_w / 2
        if ng > 8:
            out.append(f'<text transform="translate({cx:.1f},{top + ph + 12}) rotate(-40)" text-anchor="end" class="tick">{label}</text>')
        else:
            out.append(f'<text x="{cx:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{label}</text>')
    for r in refs:
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(r.value):.1f}" y2="{y(r.value):.1f}" stroke="{r.color}" '
            f'stroke-dasharray="6 4" stroke-width="2"/>'
            f'<text x="{left + pw - 4}" y="{y(r.value) - 5:.1f}" text-anchor="end" class="ref" fill="{r.color}">{escape(r.label)}</text>'
        )
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" stroke="#888"/>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#888"/>')
    if len(series) > 1:
        out.append(_legend([n for n, _ in series], left, height - 14))
    out.append("</svg>")
    return "".join(out)


def quadrant_scatter(
    title: str,
    points: Sequence[tuple[str, float, float]],
    *,
    x_label: str,
    y_label: str,
    x_limit: float | None,
    y_limit: float | None,
    bad_label: str = "",
    fmt: Callable[[float], str] = lambda v: f"{v:+.3g}",
    width: int = 900,
    height: int = 360,
) -> str:
    """Points with dashed threshold lines; the region x <= x_limit and y > y_limit (quality
    looks fine, bias got worse) is shaded and labelled."""
    left, right, top, bottom = 70, 30, 36, 50
    pw, ph = width - left - right, height - top - bottom
    xs = [p[1] for p in points] + ([x_limit] if x_limit is not None else []) + [0.0]
    ys = [p[2] for p in points] + ([y_limit] if y_limit is not None else []) + [0.0]
    x0, x1 = _padded(min(xs), max(xs))
    y0, y1 = _padded(min(ys), max(ys))

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return top + ph - (v - y0) / (y1 - y0) * ph

    out = [_open(width, height, title)]
    if x_limit is not None and y_limit is not None:
        rx, ry = sx(x0), sy(y1)
        w, h = sx(min(x_limit, x1)) - rx, sy(y_limit) - ry
        if w > 0 and h > 0:
            out.append(f'<rect x="{rx:.1f}" y="{ry:.1f}" width="{w:.1f}" height="{h:.1f}" fill="#fdecea"/>')
            out.append(f'<text x="{rx + 6:.1f}" y="{ry + 16:.1f}" class="ref" fill="#c0392b">{escape(bad_label)}</text>')
    for v in (0.0,):
        out.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{top}" y2="{top + ph}" stroke="#ccc"/>')
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#ccc"/>')
    if x_limit is not None:
        out.append(f'<line x1="{sx(x_limit):.1f}" x2="{sx(x_limit):.1f}" y1="{top}" y2="{top + ph}" stroke="#c0392b" stroke-dasharray="6 4"/>')
    if y_limit is not None:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(y_limit):.1f}" y2="{sy(y_limit):.1f}" stroke="#c0392b" stroke-dasharray="6 4"/>')
    placed: list[tuple[float, float]] = []  # label positions so far; stack labels that would collide
    for i, (label, px, py) in enumerate(points):
        color = PALETTE[i % len(PALETTE)]
        cx, cy = sx(px), sy(py)
        offsets = [0.0] + [d * k for k in range(1, 12) for d in (13.0, -13.0)]
        fits = [cy + 4 + o for o in offsets if top + 12 <= cy + 4 + o <= top + ph - 3]
        free = [y_ for y_ in fits if not any(abs(y_ - py_) < 12 and abs(cx - px_) < 120 for px_, py_ in placed)]
        ly = free[0] if free else cy + 4
        placed.append((cx, ly))
        out.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{color}" stroke="#333" fill-opacity="0.8">'
            f"<title>{escape(f'{label}: x={fmt(px)}, y={fmt(py)}')}</title></circle>"
            f'<text x="{cx + 10:.1f}" y="{ly:.1f}" class="tick" fill="{color}">{escape(label)}</text>'
        )
    for t in _ticks(1.0):
        xv, yv = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
        out.append(f'<text x="{sx(xv):.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{escape(fmt(xv))}</text>')
        out.append(f'<text x="{left - 6}" y="{sy(yv) + 4:.1f}" text-anchor="end" class="tick">{escape(fmt(yv))}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 10}" text-anchor="middle" class="axis">{escape(x_label)}</text>')
    out.append(
        f'<text transform="translate(16,{top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" class="axis">{escape(y_label)}</text>'
    )
    out.append("</svg>")
    return "".join(out)


def _padded(lo: float, hi: float) -> tuple[float, float]:
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    pad = (hi - lo) * 0.12
    return lo - pad, hi + pad


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}"><text x="10" y="20" class="title">{escape(title)}</text>'
    )


def _legend(names: Sequence[str], x: float, y: float) -> str:
    parts = []
    for i, n in enumerate(names):
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x + 14:.1f}" y="{y:.1f}" class="tick">{escape(n)}</text>'
        )
        x += 24 + 7 * len(n)
    return "".join(parts)
