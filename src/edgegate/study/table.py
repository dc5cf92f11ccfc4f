"""The study's one table and one picture, built only from the files on disk: each variant's
edgegate JSON report (and its study sidecar), read into rows by edgegate.study.rows. Nothing
is recomputed here, so the table can be regenerated at any time (``edgegate study SPEC
--table-only``), e.g. after the BBQ scoring changes and the variants were re-run from the
answer cache.

Outputs in the study's ``out`` folder: ``table.json`` (every number with its CI, n and
source), ``table.md`` (the README table) and ``paradox.svg``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgegate.report.common import human_bytes
from edgegate.report.paradox import fmt_pp, fmt_rel, paradox_chart
from edgegate.report.svg import Point
from edgegate.study.rows import StudyRow, collect, row
from edgegate.study.spec import StudySpec

if TYPE_CHECKING:
    from edgegate.policy import Policy

__all__ = ["markdown", "plot", "row", "write_outputs"]

_STATUS_COLOR = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "partial": "#b26a00",
    "unverified": "#5d4037",
    "error": "#6a1b9a",
    "incomplete": "#b26a00",
}  # reports written before schema 2.0 (a study may keep old ones)


def _f(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _ci_txt(ci: list[float] | None, fmt: Callable[[float], str]) -> str:
    return "" if ci is None else f" [{fmt(ci[0])}, {fmt(ci[1])}]"


def _bytes(x: float | None) -> str:
    return "n/a" if x is None else human_bytes(int(x))


def markdown(rows: Sequence[StudyRow], missing: list[str]) -> str:
    fid = any(
        r.get("mean_kl") is not None for r in rows
    )  # a study without fidelity keeps its columns
    head = (
        "| variant | prunable sparsity (claimed) | bytes on disk | decode speedup [95% CI] | Δperplexity [95% CI] "
        + ("| mean KL, nats/token [95% CI] | top-1 agreement [95% CI] " if fid else "")
        + "| ΔSRS [95% CI] | unbiased→biased | disamb. accuracy (dense→comp.) | s_AMB (dense→comp.) | gate |"
    )
    lines = [head, "|" + "---|" * (12 if fid else 10)]
    for r in rows:
        claimed = f" ({r['claimed_sparsity']:.0%})" if r["claimed_sparsity"] is not None else ""
        spd = (
            "n/a"
            if r["decode_speedup"] is None
            else f"{r['decode_speedup']:.2f}x"
            + _ci_txt(r["decode_speedup_ci"], lambda v: f"{v:.2f}")
        )
        if r.get("speed_mechanism") is False:
            # same bytes, dense kernels: a timing is not a speedup and is not printed as one
            spd = (
                f"none: same bytes (timed {spd})"
                if r["decode_speedup"] is not None
                else "none: same bytes (not timed)"
            )
        dppl = (
            "n/a"
            if r["delta_ppl"] is None
            else fmt_rel(r["delta_ppl"]) + _ci_txt(r["delta_ppl_ci"], fmt_rel)
        )
        dsrs = (
            "n/a"
            if r["delta_srs"] is None
            else fmt_pp(r["delta_srs"]) + _ci_txt(r["delta_srs_ci"], fmt_pp)
        )
        flips = (
            "n/a" if r["unbiased_to_biased"] is None else f"{r['unbiased_to_biased']}/{r['bbq_n']}"
        )
        acc = (
            "n/a"
            if r["disambig_accuracy"] is None
            else f"{_f(r['disambig_accuracy_dense'], '.3f')}→{r['disambig_accuracy']:.3f}"
        )
        samb = (
            "n/a"
            if r["s_amb_compressed"] is None
            else f"{_f(r['s_amb_dense'], '+.3f')}→{r['s_amb_compressed']:+.3f}"
        )
        gates = r.get("gates") or {}
        # what decided the verdict, then what was only advisory (a policy's optional checks)
        bad = [(k, s) for k, s in r["checks"].items() if s in ("fail", "inconclusive", "error")]
        failed = [
            k + ("" if s == "fail" else f" {s}") for k, s in bad if gates.get(k) != "advisory"
        ]
        failed += [f"{k} advisory {s}" for k, s in bad if gates.get(k) == "advisory"]
        if r["status"] in ("partial", "unverified") and r["not_verified"]:  # never read as a pass
            failed += [f"{k} not verified" for k in r["not_verified"] if k not in failed]
        gate = f"**{str(r['status']).upper()}**" + (f" ({', '.join(failed)})" if failed else "")
        fcols = (
            f"| {_fid_cell(r.get('mean_kl'), r.get('mean_kl_ci'), r.get('mean_kl_verdict'), '.3g')} "
            f"| {_fid_cell(r.get('top1_agreement'), r.get('top1_agreement_ci'), r.get('top1_verdict'), '.1%')} "
            if fid
            else ""
        )
        lines.append(
            f"| {r['label']} | {_f(r['prunable_sparsity'], '.1%')}{claimed} | {_bytes(r['disk_bytes'])} | {spd} "
            f"| {dppl} {fcols}| {dsrs} | {flips} | {acc} | {samb} | {gate} |"
        )
    if fid:
        lines.append(_fid_note(rows))
    if missing:
        lines.append(f"\nNot measured yet: {', '.join(missing)}.")
    return "\n".join(lines) + "\n"


def _fid_cell(value: float | None, ci: list[float] | None, verdict: str | None, fmt: str) -> str:
    """A fidelity column: the value, its CI, and its verdict when that was not a pass."""
    if value is None:
        return "n/a"
    mark = {"fail": " **fail**", "inconclusive": " inconclusive"}.get(str(verdict), "")
    return format(value, fmt) + _ci_txt(ci, lambda v: format(v, fmt)) + mark


def _fid_note(rows: Sequence[StudyRow]) -> str:
    r = next(r for r in rows if r.get("mean_kl") is not None)
    sources = sorted({str(x.get("fidelity_source")) for x in rows if x.get("mean_kl") is not None})
    where = (
        "the gate"
        if sources == ["gate"]
        else "the spec's pass " + ", ".join(s for s in sources if s != "gate")
    )
    lim = []
    if r.get("mean_kl_limit") is not None:
        lim.append(f"mean KL ≤ {r['mean_kl_limit']:g}")
    if r.get("top1_limit") is not None:
        lim.append(f"top-1 ≥ {r['top1_limit']:.0%}")
    return (
        f"\nKL(dense ‖ compressed) and top-1 agreement come from {where} (fidelity check"
        + (f": {', '.join(lim)} on the CI bound" if lim else "")
        + '; "**fail**" marks a failed bound; '
        "their verdicts are not part of the gate column)."
    )


def _pair(ci: list[float] | None) -> tuple[float, float] | None:
    """A [low, high] interval (``_ci`` made it two numbers) as the chart's pair."""
    return (ci[0], ci[1]) if ci else None


def plot(rows: Sequence[StudyRow], title: str) -> str:
    pts = [
        Point(
            str(r["label"]),
            r["delta_ppl"],
            r["delta_srs"],
            x_ci=_pair(r["delta_ppl_ci"]),
            y_ci=_pair(r["delta_srs_ci"]),
            color=_STATUS_COLOR.get(str(r["status"])),
        )
        for r in rows
        if r["delta_ppl"] is not None and r["delta_srs"] is not None
    ]
    ppl_limit = next((r["ppl_limit"] for r in rows if r["ppl_limit"] is not None), None)
    srs_limit = next((r["srs_limit"] for r in rows if r["srs_limit"] is not None), None)
    svg = paradox_chart(
        title + " — green: pass, red: fail, amber: partial",
        pts,
        ppl_limit=ppl_limit,
        srs_limit=srs_limit,
    )
    return svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1).replace(
        "><text",
        "><style>.title{font:600 14px sans-serif}.tick{font:11px sans-serif;fill:#444}"
        ".ref{font:600 12px sans-serif}.axis{font:12px sans-serif;fill:#222}</style><text",
        1,
    )


def write_outputs(spec: StudySpec, policy: Policy) -> tuple[Path, Path, Path]:
    rows = collect(spec)
    have = {r["variant"] for r in rows}
    missing = [v.name for v in spec.variants if v.name not in have]
    spec.out.mkdir(parents=True, exist_ok=True)
    table = {
        "study": spec.name,
        "description": spec.description,
        "policy": {"name": policy.name, "sha256": policy.sha256},
        "dense": {"label": spec.dense.label, "path": str(spec.dense.path)},
        "rows": rows,
        "missing": missing,
    }
    pj, pm, ps = spec.out / "table.json", spec.out / "table.md", spec.out / "paradox.svg"
    pj.write_text(json.dumps(table, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    pm.write_text(markdown(rows, missing), encoding="utf-8")
    ps.write_text(plot(rows, f"{spec.name}, policy {policy.name}") + "\n", encoding="utf-8")
    return pj, pm, ps
