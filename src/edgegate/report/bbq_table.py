"""The BBQ tables a reviewer reads: validity, position profiles, per category dense ->
compressed, the ΔSRS decomposition with the driver, and the flows both ways.

Rows are "overall" then each category; columns are the numbers the check's verdicts rest on
(SRS with the paired difference and its CI, the McNemar p-value before/after Holm, Cohen's h,
the flips) and the descriptive BBQ metrics (USR, anti-stereotype rate, s_AMB, s_DIS). One
``rows()`` (and one ``sections()``) feeds both the HTML and the Markdown renderers so they
cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from edgegate.escape import html as escape
from edgegate.escape import markdown as md
from edgegate.report.bbq_types import BBQMeasurements, Estimate

CLASSES = ("biased", "anti", "unknown", "failure")

# (title, headers, rows) of one table
Section = tuple[str, list[str], list[list[str]]]


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


def rows(m: BBQMeasurements) -> list[Row]:
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
        r.scope,
        "—" if r.n is None else str(r.n),
        _pair(r.srs),
        _f(r.delta, True),
        f"[{_f(r.ci[0], True)}, {_f(r.ci[1], True)}]",
        _p(r.p),
        _p(r.p_holm),
        _f(r.h, True),
        f"{r.u2b if r.u2b is not None else '—'} / {r.b2u if r.b2u is not None else '—'}",
        _pair(r.usr),
        _pair(r.anti),
        _pair(r.s_amb, True),
        _pair(r.s_dis, True),
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


def _matrix(m: BBQMeasurements) -> Sequence[Sequence[str]]:
    mat = (m.get("transitions") or {}).get("matrix") or {}
    return [[d, *(str((mat.get(d) or {}).get(c, 0)) for c in CLASSES)] for d in CLASSES]


def html(m: BBQMeasurements) -> str:
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


def markdown(m: BBQMeasurements) -> list[str]:
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


def _ci_text(part: Estimate | None) -> str:
    if not part or part.get("value") is None:
        return "—"
    ci = part.get("ci")
    base = _f(part["value"], True)
    return base + (f" [{_f(ci[0], True)}, {_f(ci[1], True)}]" if ci else "")


def validity_line(m: BBQMeasurements) -> str:
    v = m.get("validity") or {}
    if not v:
        return ""
    acc = v.get("disambig_accuracy")
    acc_t = (
        (
            f"dense disambiguated accuracy {acc['k']}/{acc['n']} = {acc['rate']:.3f} "
            f"(chance 1/3, one-sided exact binomial p={acc['p_value']:.3g})"
        )
        if acc
        else "accuracy vs chance not tested"
    )
    u = v.get("ambig_unknown_share")
    line = f"Validity ({v.get('mode')} mode): {str(v.get('status')).upper()} — {acc_t}; dense 'unknown' on ambiguous items {_f(u)}"
    if v.get("reasons"):
        line += ". Reasons: " + "; ".join(v["reasons"]) + f". Suggested: {v.get('suggestion')}"
        line += ". Nothing below was judged (no pass, no fail)."
    return line


def power_line(m: BBQMeasurements) -> str:
    """The run's detectable effect in words (empty when no power was computed)."""
    from edgegate.bbq.power import power_words

    pw = m.get("power") or {}
    return f"Power: {power_words(pw)}" if pw.get("curve") is not None and pw.get("mde") else ""


def mode_line(m: BBQMeasurements) -> str:
    """Which BBQ mode ``mode: auto`` chose and why (empty for an explicit mode)."""
    ch = m.get("mode_choice") or {}
    return (
        f"Mode: {ch['mode']} (requested {ch['requested']}): {ch['reason']}"
        if ch.get("mode")
        else ""
    )


def sections(m: BBQMeasurements) -> list[Section]:
    """(title, headers, rows) of the tables after the metric table."""
    return [
        *_position_profiles(m),
        *_decomposition(m),
        *_flows(m),
        *_power_curve(m),
        *_paper(m),
        *_scoring_cost(m),
    ]


_ROLES: tuple[Literal["dense", "compressed"], ...] = ("dense", "compressed")


def _position_profiles(m: BBQMeasurements) -> list[Section]:
    """The share of answers by position (or label) for the dense and the compressed model."""
    prof = m.get("position_profiles") or {}
    if not prof:
        return []
    labels = list((prof.get("dense") or {}).get("shares") or {})
    rows_ = []
    for role in _ROLES:
        p = prof.get(role) or {}
        sh = p.get("shares") or {}
        rows_.append(
            [
                role,
                *(_f(sh.get(k)) for k in labels),
                str(p.get("top") or "—"),
                _f(p.get("top_share")),
                _f(p.get("majority_share")),
                str(p.get("n_answers", "—")),
            ]
        )
    basis = (prof.get("dense") or {}).get("basis", "position")
    return [
        (
            f"Position profile (share of answers by {basis})",
            ["model", *labels, "top", "top share", "items with a majority", "answers"],
            rows_,
        )
    ]


def _decomposition(m: BBQMeasurements) -> list[Section]:
    """ΔSRS split into abstention + consistency + direction, overall and per category."""
    dec_rows = []
    for r in [m.get("overall") or {}, *(m.get("per_category") or [])]:
        if r.get("abstention") is None:
            continue
        dec_rows.append(
            [
                str(r.get("scope")),
                _ci_text(
                    ds
                    if isinstance(ds := r.get("delta_srs"), Mapping)
                    else {"value": ds, "ci": r.get("ci")}
                ),
                _ci_text(r.get("abstention")),
                _ci_text(r.get("consistency")),
                _ci_text(r.get("direction")),
                _ci_text(r.get("delta_s")),
                _p((r.get("delta_s") or {}).get("p_value")),
                _ci_text(r.get("delta_s_amb")),
            ]
        )
    if not dec_rows:
        return []
    return [
        (
            "What moved: ΔSRS = abstention + consistency + direction (95% paired bootstrap CI)",
            [
                "scope",
                "ΔSRS",
                "abstention (−ΔUSR·β̄)",
                "consistency (−Δnone·β̄)",
                "direction (C̄·Δβ)",
                "Δs (bias score)",
                "permutation p",
                "Δs_AMB",
            ],
            dec_rows,
        )
    ]


def _flows(m: BBQMeasurements) -> list[Section]:
    """The item flows both ways between the answer classes, with the emergence counts."""
    fl, em = m.get("flows") or {}, m.get("emergence") or {}
    if not fl:
        return []
    flow_rows = [
        [
            "unbiased → biased / biased → unbiased",
            f"{fl['unbiased_to_biased']} / {fl['biased_to_unbiased']}",
        ],
        ["→ anti-stereotype / anti-stereotype →", f"{fl['to_anti']} / {fl['from_anti']}"],
        ["biased → anti / anti → biased", f"{fl['biased_to_anti']} / {fl['anti_to_biased']}"],
        ["'unknown' lost / gained", f"{fl['unknown_lost']} / {fl['unknown_gained']}"],
    ]
    if em:
        flow_rows.append(
            [
                "new-bias emergence / anti emergence / disappearance",
                f"{em['emerged']} / {em['anti_emerged']} / {em['disappeared']} (dense SRS 0: {em['dense_srs0']})",
            ]
        )
        if "null_emerged" in em:
            flow_rows.append(
                [
                    "emergence: compressed / dense-vs-dense null",
                    f"{em['emerged']} / {em['null_emerged']}",
                ]
            )
    return [("Flows both ways (items, majority answers)", ["flow", "count"], flow_rows)]


def _power_curve(m: BBQMeasurements) -> list[Section]:
    """The simulated power of the verdicts at this run's n, per planted shift."""
    pw = m.get("power") or {}
    if not pw.get("curve"):
        return []
    ref = pw.get("reference") or {}
    body = [
        [
            f"{c['k']:.3f}",
            _f(c["delta_srs"], True),
            _f(c["delta_s"], True),
            _f(c["power_srs"]),
            _f(c["power_direction"]),
            _f(c["power_any"]),
        ]
        for c in pw["curve"]
    ]
    if ref.get("power_any") is not None:
        body.append(
            [
                f"reference {ref['k']:.3f}",
                _f(ref["delta_srs"], True),
                _f(ref["delta_s"], True),
                _f(ref["power_srs"]),
                _f(ref["power_direction"]),
                _f(ref["power_any"]),
            ]
        )
    return [
        (
            f"Power at this run's n={pw['n']}: planted shifts (share k of anti/unknown items moved to the "
            f"stereotype, {pw['draws']} simulated pairs each, churn {pw['churn']:.3f})",
            [
                "k",
                "mean ΔSRS",
                "mean Δs",
                "P(ΔSRS verdict fails)",
                "P(direction fails)",
                "P(either)",
            ],
            body,
        )
    ]


def _paper(m: BBQMeasurements) -> list[Section]:
    """The study's own definitions, for comparison only."""
    paper = m.get("paper") or {}
    if not paper.get("srs"):
        return []
    return [
        (
            "The study's definitions (no position control, no reverse flow, no null) — for comparison only",
            ["SRS (answers)", "unbiased→biased rate", "new-bias emergence rate"],
            [
                [
                    _pair((paper["srs"][0], paper["srs"][1])),
                    _f(paper.get("unbiased_to_biased_rate")),
                    _f(paper.get("new_bias_emergence_rate")),
                ]
            ],
        )
    ]


def _scoring_cost(m: BBQMeasurements) -> list[Section]:
    """What this run's scoring cost: answers from the result cache, and the work efficiency
    (fewest positions any scorer needs / positions the runtime evaluated) of what it scored."""
    cache, work = m.get("result_cache") or {}, m.get("work") or {}
    if not cache:
        return []
    body = []
    for role, c in cache.items():
        w = work.get(role) or {}
        body.append(
            [
                str(role),
                str(c.get("answers", "—")),
                str(c.get("from_cache", "—")),
                str(w.get("tokens_evaluated", "—")),
                str(w.get("minimal_tokens", "—")),
                _f(w.get("efficiency")),
            ]
        )
    return [
        (
            "Scoring cost of this run (answers reused from the result cache cost nothing)",
            [
                "model",
                "answers",
                "from the result cache",
                "positions evaluated",
                "minimum needed",
                "work efficiency",
            ],
            body,
        )
    ]


def _html_table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    rows_ = "".join(
        "<tr>"
        + "".join(f"<td{'' if i == 0 else ' class=num'}>{escape(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in body
    )
    return f"<table><tr>{head}</tr>{rows_}</table>"


def sections_html(m: BBQMeasurements) -> str:
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


def sections_markdown(m: BBQMeasurements) -> list[str]:
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
