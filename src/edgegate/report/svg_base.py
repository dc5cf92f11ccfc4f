"""What the report's inline-SVG charts share: the palette, escaping, the labelled point and
the reference line, finite-number guards, round ticks, padded ranges and the opening tag."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgegate.escape import html as _html_escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


def escape(text: str) -> str:
    """HTML-escaped, with control characters shown as escapes (edgegate.escape.html)."""
    return _html_escape(text)


@dataclass(frozen=True)
class RefLine:
    value: float
    label: str
    color: str = "#c0392b"


@dataclass(frozen=True)
class Point:
    """One labelled point; ``x_ci``/``y_ci`` (low, high) draw whiskers when given."""

    label: str
    x: float
    y: float
    x_ci: tuple[float, float] | None = None
    y_ci: tuple[float, float] | None = None
    color: str | None = None


def finite(v: float | None) -> float | None:
    """``v`` when it is a finite number, else None: NaN and infinities never reach an SVG
    (they would be drawn as coordinates "nan"/"inf" and break the picture); callers show
    the value as missing instead."""
    return v if v is not None and math.isfinite(v) else None


def finite_ci(ci: tuple[float, float] | None) -> tuple[float, float] | None:
    return ci if ci is not None and all(math.isfinite(v) for v in ci) else None


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 x 10^k) covering [lo, hi], about n of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n, 1)
    exp = 10 ** math.floor(math.log10(raw))
    step = next((m * exp for m in (1, 2, 2.5, 5, 10) if raw <= m * exp), 10 * exp)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(0.0 if abs(t) < step * 1e-9 else round(t, 12))
        t += step
    return ticks


def padded(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] with 12% room on each side (an empty range is first widened to 0.1)."""
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    pad = (hi - lo) * 0.12
    return lo - pad, hi + pad


def svg_open(width: int, height: int, title: str) -> str:
    """The opening ``<svg>`` tag, labelled, with the chart's title drawn."""
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}"><text x="10" y="20" class="title">{escape(title)}</text>'
    )
