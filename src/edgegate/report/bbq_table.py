"""The BBQ tables a reviewer reads: validity, position profiles, per category dense ->
compressed, the ΔSRS decomposition with the driver, and the flows both ways.

Rows are "overall" then each category; columns are the numbers the check's verdicts rest on
(SRS with the paired difference and its CI, the McNemar p-value before/after Holm, Cohen's h,
the flips) and the descriptive BBQ metrics (USR, anti-stereotype rate, s_AMB, s_DIS). One
``rows()`` (and one ``sections()``, edgegate.report.bbq_sections) feeds both the HTML and the
Markdown renderers so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgegate.bbq.record import Measurements
from edgegate.escape import html as escape
from edgegate.escape import markdown as md
from edgegate.report.bbq_sections import (
    fmt3,
    fmt_p,
    fmt_pair,
    mode_line,
    power_line,
    sections,
    validity_line,
)

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


def rows(m: Measurements) -> list[Row]:
    """Table rows from the bbq check's measurements (empty when there is nothing to show)."""
    dense, comp = m.get("dense") or {}, m.get("compressed") or {}
    paired = [m["overall"], *(m.get("per_category") or [])] if m.get("overall") else []
    out = []
    for r in paired:
        scope = str(r.get("scope"))
        d, c = dense.get(scope) or {}, comp.get(scope) or {}
        ci = r.get("ci") or [None, None]
        out.append(
            Row(
                scope,
                r.get("n"),
                (r.get("srs_dense"), r.get("srs_compressed")),
                r.get("delta_srs"),
                (ci[0], ci[1]),
                r.get("p_value"),
                r.get("p_holm"),
                r.get("cohens_h"),
                r.get("unbiased_to_biased"),
                r.get("biased_to_unbiased"),
                (d.get("usr"), c.get("usr")),
                (d.get("anti_rate"), c.get("anti_rate")),
                (d.get("s_amb"), c.get("s_amb")),
                (d.get("s_dis"), c.get("s_dis")),
                (d.get("n_failures"), c.get("n_failures")),
            )
        )
    return out


def _cells(r: Row) -> list[str]:
    return [
        r.scope,
        "—" if r.n is None else str(r.n),
        fmt_pair(r.srs),
        fmt3(r.delta, True),
        f"[{fmt3(r.ci[0], True)}, {fmt3(r.ci[1], True)}]",
        fmt_p(r.p),
        fmt_p(r.p_holm),
        fmt3(r.h, True),
        f"{r.u2b if r.u2b is not None else '—'} / {r.b2u if r.b2u is not None else '—'}",
        fmt_pair(r.usr),
        fmt_pair(r.anti),
        fmt_pair(r.s_amb, True),
        fmt_pair(r.s_dis, True),
        f"{r.failures[0] if r.failures[0] is not None else '—'} / {r.failures[1] if r.failures[1] is not None else '—'}",
    ]


HEADERS = [
    "scope",
    "n",
    "SRS dense → compressed",
    "ΔSRS",
    "95% CI (paired bootstrap)",
    "McNemar p",
    "Holm p",
    "Cohen's h",
    "unbiased→biased / biased→unbiased",
    "USR",
    "anti-stereotype",
    "s_AMB",
    "s_DIS",
    "parse failures d / c",
]


def _matrix(m: Measurements) -> Sequence[Sequence[str]]:
    mat = (m.get("transitions") or {}).get("matrix") or {}
    return [[d, *(str((mat.get(d) or {}).get(c, 0)) for c in CLASSES)] for d in CLASSES]


def html(m: Measurements) -> str:
    table = rows(m)
    if not table:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{'' if i == 0 else ' class=num'}>{escape(c)}</td>" for i, c in enumerate(_cells(r))
        )
        + "</tr>"
        for r in table
    )
    data = m.get("data") or {}
    excl = (data.get("excluded") or {}).get("count")
    info = (
        f"<p class='muted'>{escape(str(data.get('source', '')))} · condition {escape(str(data.get('condition', '')))} · "
        f"{data.get('n_used', '—')} of {data.get('n_loaded', '—')} items used · {excl if excl is not None else '—'} "
        "excluded (no derivable bias target) · SRS = share of ambiguous items whose majority answer (over "
        "option rotations and seeds) is the biased one</p>"
    )
    mhead = "<th>dense \\ compressed</th>" + "".join(f"<th>{c}</th>" for c in CLASSES)
    mbody = "".join(
        "<tr>"
        + "".join(f"<td{'' if i == 0 else ' class=num'}>{escape(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in _matrix(m)
    )
    return (
        f"{sections_html(m)}{info}<div class='wide'><table><tr>{head}</tr>{body}</table></div>"
        f"<h3>Answer transitions (dense → compressed)</h3><table><tr>{mhead}</tr>{mbody}</table>"
    )


def markdown(m: Measurements) -> list[str]:
    table = rows(m)
    if not table:
        return []
    keep = [0, 1, 2, 3, 4, 6, 8]  # the columns the verdicts rest on; the HTML/JSON have the rest
    lines = ["| " + " | ".join(HEADERS[i] for i in keep) + " |", "|" + "---|" * len(keep)]
    for r in table:
        cells = _cells(r)
        lines.append(
            "| " + " | ".join(md(cells[i]) for i in keep) + " |"
        )  # categories come from the data
    return [*sections_markdown(m), *lines]


def _html_table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    rows_ = "".join(
        "<tr>"
        + "".join(f"<td{'' if i == 0 else ' class=num'}>{escape(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in body
    )
    return f"<table><tr>{head}</tr>{rows_}</table>"


def sections_html(m: Measurements) -> str:
    parts = []
    if line := mode_line(m):
        parts.append(f"<p>{escape(line)}</p>")
    if line := validity_line(m):
        parts.append(f"<p><strong>{escape(line)}</strong></p>")
    if line := power_line(m):
        parts.append(f"<p><strong>{escape(line)}</strong></p>")
    if m.get("driver") and m.get("judged", True):
        parts.append(f"<p>Driver of the largest ΔSRS part: {escape(str(m['driver']))}</p>")
    for title, headers, body in sections(m):
        parts.append(f"<h3>{escape(title)}</h3>{_html_table(headers, body)}")
    return "".join(parts)


def sections_markdown(m: Measurements) -> list[str]:
    lines: list[str] = []
    if line := mode_line(m):
        lines += [md(line), ""]
    if line := validity_line(m):
        lines += [f"**{md(line)}**", ""]
    if line := power_line(m):
        lines += [f"**{md(line)}**", ""]
    if m.get("driver") and m.get("judged", True):
        lines += [f"Driver of the largest ΔSRS part: {md(m['driver'])}", ""]
    for title, headers, body in sections(m):
        lines += [
            f"#### {title}",
            "",
            "| " + " | ".join(headers) + " |",
            "|" + "---|" * len(headers),
        ]
        lines += ["| " + " | ".join(md(c) for c in r) + " |" for r in body]
        lines.append("")
    return lines
