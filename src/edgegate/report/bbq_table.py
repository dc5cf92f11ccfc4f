"""The BBQ metric table a reviewer reads: per category, dense -> compressed.

Rows are "overall" then each category; columns are the numbers the check's verdicts rest on
(SRS with the paired difference and its CI, the McNemar p-value before/after Holm, Cohen's h,
the flips) and the descriptive BBQ metrics (USR, anti-stereotype rate, s_AMB, s_DIS). One
``rows()`` feeds both the HTML and the Markdown renderers so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

CLASSES = ("biased", "anti", "unknown", "failure")


@dataclass(frozen=True)
class Row:
    scope: str
    n: int | None
    srs: tuple[float | None, float | None]
    delta: float | None
    ci: tuple[float | None, float | None]
    p: float | None
    p_holm: float | None
    h: float | None
    u2b: int | None
    b2u: int | None
    usr: tuple[float | None, float | None]
    anti: tuple[float | None, float | None]
    s_amb: tuple[float | None, float | None]
    s_dis: tuple[float | None, float | None]
    failures: tuple[int | None, int | None]


def rows(m: Mapping[str, Any]) -> list[Row]:
    """Table rows from the bbq check's measurements (empty when there is nothing to show)."""
    dense, comp = m.get("dense") or {}, m.get("compressed") or {}
    paired = [m["overall"], *(m.get("per_category") or [])] if m.get("overall") else []
    out = []
    for r in paired:
        scope = str(r.get("scope"))
        d, c = dense.get(scope) or {}, comp.get(scope) or {}
        ci = r.get("ci") or [None, None]
        out.append(Row(
            scope, r.get("n"), (r.get("srs_dense"), r.get("srs_compressed")), r.get("delta_srs"),
            (ci[0], ci[1]), r.get("p_value"), r.get("p_holm"), r.get("cohens_h"),
            r.get("unbiased_to_biased"), r.get("biased_to_unbiased"),
            (d.get("usr"), c.get("usr")), (d.get("anti_rate"), c.get("anti_rate")),
            (d.get("s_amb"), c.get("s_amb")), (d.get("s_dis"), c.get("s_dis")),
            (d.get("n_failures"), c.get("n_failures")),
        ))
    return out


def _f(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _pair(p: tuple[float | None, float | None], signed: bool = False) -> str:
    return f"{_f(p[0], signed)} → {_f(p[1], signed)}"


def _p(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def _cells(r: Row) -> list[str]:
    return [
        r.scope, "—" if r.n is None else str(r.n), _pair(r.srs), _f(r.delta, True),
        f"[{_f(r.ci[0], True)}, {_f(r.ci[1], True)}]", _p(r.p), _p(r.p_holm), _f(r.h, True),
        f"{r.u2b if r.u2b is not None else '—'} / {r.b2u if r.b2u is not None else '—'}",
        _pair(r.usr), _pair(r.anti), _pair(r.s_amb, True), _pair(r.s_dis, True),
        f"{r.failures[0] if r.failures[0] is not None else '—'} / {r.failures[1] if r.failures[1] is not None else '—'}",
    ]


HEADERS = [
    "scope", "n", "SRS dense → compressed", "ΔSRS", "95% CI (Newcombe)", "McNemar p", "Holm p",
    "Cohen's h", "unbiased→biased / biased→unbiased", "USR", "anti-stereotype", "s_AMB", "s_DIS",
    "parse failures d / c",
]


def _matrix(m: Mapping[str, Any]) -> Sequence[Sequence[str]]:
    mat = (m.get("transitions") or {}).get("matrix") or {}
    return [[d, *(str((mat.get(d) or {}).get(c, 0)) for c in CLASSES)] for d in CLASSES]


def html(m: Mapping[str, Any]) -> str:
    table = rows(m)
    if not table:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    body = "".join(
        "<tr>" + "".join(f"<td{'' if i == 0 else ' class=num'}>{escape(c)}</td>" for i, c in enumerate(_cells(r))) + "</tr>"
        for r in table
    )
    data = m.get("data") or {}
    excl = (data.get("excluded") or {}).get("count")
    info = (
        f"<p class='muted'>{escape(str(data.get('source', '')))} · condition {escape(str(data.get('condition', '')))} · "
        f"{data.get('n_used', '—')} of {data.get('n_loaded', '—')} items used · {excl if excl is not None else '—'} "
        "excluded (no derivable bias target) · SRS = share of items answered with the biased answer</p>"
    )
    mhead = "<th>dense \\ compressed</th>" + "".join(f"<th>{c}</th>" for c in CLASSES)
    mbody = "".join(
        "<tr>" + "".join(f"<td{'' if i == 0 else ' class=num'}>{escape(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in _matrix(m)
    )
    return (
        f"{info}<div class='wide'><table><tr>{head}</tr>{body}</table></div>"
        f"<h3>Answer transitions (dense → compressed)</h3><table><tr>{mhead}</tr>{mbody}</table>"
    )


def markdown(m: Mapping[str, Any]) -> list[str]:
    table = rows(m)
    if not table:
        return []
    keep = [0, 1, 2, 3, 4, 6, 8]  # the columns the verdicts rest on; the HTML/JSON have the rest
    lines = ["| " + " | ".join(HEADERS[i] for i in keep) + " |", "|" + "---|" * len(keep)]
    for r in table:
        cells = _cells(r)
        lines.append("| " + " | ".join(cells[i] for i in keep) + " |")
    return lines
