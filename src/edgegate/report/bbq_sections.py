"""The BBQ sections after the metric table, one ``sections()`` for every renderer (HTML,
Markdown, the terminal): the mode, validity and power lines, then the tables of position
profiles, the ΔSRS decomposition, the flows both ways, the power curve, the study's own
definitions and the scoring cost. Each table is (title, headers, rows) of plain text; the
renderers escape it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from edgegate.bbq.record import Measurements, Work
from edgegate.bbq.shapes import Delta, PositionProfile

# (title, headers, rows) of one table
Section = tuple[str, list[str], list[list[str]]]


def fmt3(x: float | None, signed: bool = False) -> str:
    """Three decimals ("+" with ``signed``); "—" for a missing value."""
    if x is None:
        return "—"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def fmt_pair(p: tuple[float | None, float | None], signed: bool = False) -> str:
    """Dense → compressed."""
    return f"{fmt3(p[0], signed)} → {fmt3(p[1], signed)}"


def fmt_p(x: float | None) -> str:
    """A p-value, three significant digits."""
    return "—" if x is None else f"{x:.3g}"


def _ci_text(part: Delta | None) -> str:
    return _value_ci(part.get("value"), part.get("ci")) if part else "—"


def _value_ci(value: float | None, ci: Sequence[float | None] | None) -> str:
    if value is None:
        return "—"
    base = fmt3(value, True)
    return base + (f" [{fmt3(ci[0], True)}, {fmt3(ci[1], True)}]" if ci else "")


def validity_line(m: Measurements) -> str:
    v = m.get("validity")
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
    line = f"Validity ({v.get('mode')} mode): {str(v.get('status')).upper()} — {acc_t}; dense 'unknown' on ambiguous items {fmt3(u)}"
    if v.get("reasons"):
        line += ". Reasons: " + "; ".join(v["reasons"]) + f". Suggested: {v.get('suggestion')}"
        line += ". Nothing below was judged (no pass, no fail)."
    return line


def power_line(m: Measurements) -> str:
    """The run's detectable effect in words (empty when no power was computed)."""
    from edgegate.bbq.power import power_words

    pw = m.get("power")
    return (
        f"Power: {power_words(pw)}" if pw and pw.get("curve") is not None and pw.get("mde") else ""
    )


def mode_line(m: Measurements) -> str:
    """Which BBQ mode ``mode: auto`` chose and why (empty for an explicit mode)."""
    ch = m.get("mode_choice") or {}
    return (
        f"Mode: {ch['mode']} (requested {ch['requested']}): {ch['reason']}"
        if ch.get("mode")
        else ""
    )


def sections(m: Measurements) -> list[Section]:
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


def _position_profiles(m: Measurements) -> list[Section]:
    """The share of answers by position (or label) for the dense and the compressed model."""
    prof = m.get("position_profiles") or {}
    if not prof:
        return []
    dense = prof.get("dense")
    labels = list((dense.get("shares") if dense else None) or {})
    rows_ = [[role, *_profile_cells(prof.get(role), labels)] for role in _ROLES]
    basis = dense.get("basis", "position") if dense else "position"
    return [
        (
            f"Position profile (share of answers by {basis})",
            ["model", *labels, "top", "top share", "items with a majority", "answers"],
            rows_,
        )
    ]


def _profile_cells(p: PositionProfile | None, labels: Sequence[str]) -> list[str]:
    """One model's shares by ``labels``, its top label and share, and its counts ("—": none)."""
    if not p:
        return ["—"] * (len(labels) + 4)
    sh = p.get("shares") or {}
    return [
        *(fmt3(sh.get(k)) for k in labels),
        str(p.get("top") or "—"),
        fmt3(p.get("top_share")),
        fmt3(p.get("majority_share")),
        str(p.get("n_answers", "—")),
    ]


def _decomposition(m: Measurements) -> list[Section]:
    """ΔSRS split into abstention + consistency + direction, overall and per category."""
    dec_rows = []
    for r in [m.get("overall") or {}, *(m.get("per_category") or [])]:
        if r.get("abstention") is None:
            continue
        dec_rows.append(
            [
                str(r.get("scope")),
                _ci_text(ds)
                if isinstance(ds := r.get("delta_srs"), Mapping)
                else _value_ci(ds, r.get("ci")),
                _ci_text(r.get("abstention")),
                _ci_text(r.get("consistency")),
                _ci_text(r.get("direction")),
                _ci_text(r.get("delta_s")),
                fmt_p(d_s.get("p_value") if (d_s := r.get("delta_s")) else None),
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


def _flows(m: Measurements) -> list[Section]:
    """The item flows both ways between the answer classes, with the emergence counts."""
    fl, em = m.get("flows"), m.get("emergence")
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


def _power_curve(m: Measurements) -> list[Section]:
    """The simulated power of the verdicts at this run's n, per planted shift."""
    pw = m.get("power")
    if not pw or not pw.get("curve"):
        return []
    ref = pw.get("reference")
    body = [
        [
            f"{c['k']:.3f}",
            fmt3(c["delta_srs"], True),
            fmt3(c["delta_s"], True),
            fmt3(c["power_srs"]),
            fmt3(c["power_direction"]),
            fmt3(c["power_any"]),
        ]
        for c in pw["curve"]
    ]
    if ref and ref.get("power_any") is not None:
        body.append(
            [
                f"reference {ref['k']:.3f}",
                fmt3(ref["delta_srs"], True),
                fmt3(ref["delta_s"], True),
                fmt3(ref["power_srs"]),
                fmt3(ref["power_direction"]),
                fmt3(ref["power_any"]),
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


def _paper(m: Measurements) -> list[Section]:
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
                    fmt_pair((paper["srs"][0], paper["srs"][1])),
                    fmt3(paper.get("unbiased_to_biased_rate")),
                    fmt3(paper.get("new_bias_emergence_rate")),
                ]
            ],
        )
    ]


def _scoring_cost(m: Measurements) -> list[Section]:
    """What this run's scoring cost: answers from the result cache, and the work efficiency
    (fewest positions any scorer needs / positions the runtime evaluated) of what it scored."""
    cache, work = m.get("result_cache") or {}, m.get("work") or {}
    if not cache:
        return []
    body = []
    for role, c in cache.items():
        body.append(
            [
                str(role),
                str(c.get("answers", "—")),
                str(c.get("from_cache", "—")),
                *_work_cells(work.get(role)),
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
                "processes",
            ],
            body,
        )
    ]


def _work_cells(w: Work | None) -> list[str]:
    """Positions evaluated, the fewest needed, the efficiency and the processes ("—": none)."""
    if not w:
        return ["—"] * 4
    return [
        str(w.get("tokens_evaluated", "—")),
        str(w.get("minimal_tokens", "—")),
        fmt3(w.get("efficiency")),
        str(w.get("processes", "—")),
    ]
