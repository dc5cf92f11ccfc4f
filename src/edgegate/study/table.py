"""The study's one table and one picture, built only from the files on disk: each variant's
edgegate JSON report (and its study sidecar). Nothing is recomputed here, so the table can be
regenerated at any time (``edgegate study SPEC --table-only``), e.g. after the BBQ scoring
changes and the variants were re-run from the answer cache.

Outputs in the study's ``out`` folder: ``table.json`` (every number with its CI, n and
source), ``table.md`` (the README table) and ``paradox.svg``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from edgegate.report.common import human_bytes
from edgegate.report.paradox import fmt_pp, fmt_rel, paradox_chart
from edgegate.report.svg import Point
from edgegate.study.spec import StudySpec

_STATUS_COLOR = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "partial": "#b26a00",
    "unverified": "#5d4037",
    "error": "#6a1b9a",
    "incomplete": "#b26a00",
}  # reports written before schema 2.0 (a study may keep old ones)


class FidelityColumns(TypedDict):
    """The fidelity check's columns, from the first report (gate, then passes) that ran it."""

    fidelity_source: str | None
    fidelity_status: str | None
    mean_kl: float | None
    mean_kl_ci: list[float] | None
    mean_kl_verdict: str | None
    mean_kl_limit: float | None
    top1_agreement: float | None
    top1_agreement_ci: list[float] | None
    top1_verdict: str | None
    top1_limit: float | None
    fidelity_chunks: int | None


class StudyRow(FidelityColumns):
    """One variant's row of table.json (None: the report does not have the value)."""

    variant: str | None
    label: str | None
    group: str | None
    status: str | None
    reasons: list[str]
    checks: dict[str, str]  # check -> its status
    gates: dict[str, str]  # check -> how it counted (required, advisory, ...)
    not_verified: list[str]
    claimed_sparsity: float | None
    prunable_sparsity: float | None
    disk_bytes: float | None
    dense_disk_bytes: float | None
    size_saving: float | None
    decode_speedup: float | None
    decode_speedup_ci: list[float] | None
    speed_mechanism: bool | None
    ppl_dense: float | None
    ppl_compressed: float | None
    delta_ppl: float | None
    delta_ppl_ci: list[float] | None
    ppl_limit: float | None
    srs_dense: float | None
    srs_compressed: float | None
    delta_srs: float | None
    delta_srs_ci: list[float] | None
    srs_limit: float | None
    bbq_n: int | None
    unbiased_to_biased: int | None
    unbiased_to_biased_rate: float | None
    s_amb_dense: float | None
    s_amb_compressed: float | None
    disambig_n: float | None
    disambig_accuracy_dense: float | None
    disambig_accuracy: float | None
    s_dis_dense: float | None
    s_dis_compressed: float | None
    seconds: float | None


def _check(report: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for c in report.get("checks") or []:
        if c.get("check") == name:
            return c
    return {}


def _verdict(check: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return next((v for v in check.get("verdicts") or [] if v.get("name") == name), {})


def _num(x: Any) -> float | None:
    return (
        float(x)
        if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
        else None
    )


def _ci(x: Any) -> list[float] | None:
    if isinstance(x, Mapping):
        x = [x.get("low"), x.get("high")]
    if isinstance(x, (list, tuple)) and len(x) == 2 and all(_num(v) is not None for v in x):
        return [float(x[0]), float(x[1])]
    return None


def _first_check(
    reports: Sequence[tuple[str, Mapping[str, Any]]], name: str
) -> tuple[str | None, Mapping[str, Any]]:
    """The first report (main gate, then the spec's passes) that ran check ``name``."""
    for source, rep in reports:
        c = _check(rep, name)
        if c and c.get("status") not in (None, "skipped", "not-run"):
            return source, c
    return None, {}


def _fidelity(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> FidelityColumns:
    source, fid = _first_check(reports, "fidelity")
    fm = fid.get("measurements") or {}
    kl, top1 = fm.get("mean_kl") or {}, fm.get("top1_agreement") or {}
    kl_v, top1_v = _verdict(fid, "max_mean_kl"), _verdict(fid, "min_top1_agreement")
    return {
        "fidelity_source": source,
        "fidelity_status": fid.get("status"),
        "mean_kl": _num(kl.get("value")),
        "mean_kl_ci": _ci([kl.get("ci_low"), kl.get("ci_high")]),
        "mean_kl_verdict": kl_v.get("status"),
        "mean_kl_limit": _num(kl_v.get("threshold")),
        "top1_agreement": _num(top1.get("value")),
        "top1_agreement_ci": _ci([top1.get("ci_low"), top1.get("ci_high")]),
        "top1_verdict": top1_v.get("status"),
        "top1_limit": _num(top1_v.get("threshold")),
        "fidelity_chunks": fm.get("n_chunks"),
    }


def row(
    report: Mapping[str, Any],
    side: Mapping[str, Any],
    passes: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> StudyRow:
    """One variant's columns; a value the report does not have stays None (shown as "n/a").
    ``passes``: (name, report) of the spec's extra passes, read for checks the gate did not run."""
    sp, size, speed = _check(report, "sparsity"), _check(report, "size"), _check(report, "speed")
    ppl, bbq = _check(report, "perplexity"), _check(report, "bbq")
    spm = (sp.get("measurements") or {}).get("sparsity") or {}
    sm = size.get("measurements") or {}
    dec: Mapping[str, Any] = {}
    mechanism: bool | None = None
    for rt in (speed.get("measurements") or {}).values():
        if isinstance(rt, Mapping) and isinstance(rt.get("speedups"), Mapping):
            dec = rt["speedups"].get("decode_tps") or {}
            mechanism = (rt.get("mechanism") or {}).get("possible")
            break
        if isinstance(rt, Mapping) and rt.get("timed") is False:  # the files decided it: no timing
            mechanism = (rt.get("mechanism") or {}).get("possible")
            break
    pm = ppl.get("measurements") or {}
    bm = bbq.get("measurements") or {}
    overall = bm.get("overall") or {}
    comp_o = ((bm.get("compressed") or {}).get("overall")) or {}
    dense_o = ((bm.get("dense") or {}).get("overall")) or {}
    dis = side.get("disambig") or {}
    dis_c, dis_d = (
        (dis.get("compressed") or {}).get("overall") or {},
        (dis.get("dense") or {}).get("overall") or {},
    )
    in_gate = bm.get("disambig_accuracy") or {}  # the BBQ check scored them (policy disambig_items)
    if not dis and in_gate.get("n"):
        acc = in_gate.get("accuracy") or [None, None]
        dis_d = {"n_items": in_gate["n"], "accuracy": acc[0], "s_dis": dense_o.get("s_dis")}
        dis_c = {"n_items": in_gate["n"], "accuracy": acc[1], "s_dis": comp_o.get("s_dis")}
    n_tr = overall.get("n")
    flips = overall.get("unbiased_to_biased")
    return {
        "variant": side.get("variant"),
        "label": side.get("label"),
        "group": side.get("group"),
        "status": report.get("status"),
        "reasons": report.get("reasons") or [],
        "checks": {c.get("check"): c.get("status") for c in report.get("checks") or []},
        "gates": {c.get("check"): c.get("gate") for c in report.get("checks") or []},
        "not_verified": list((report.get("verification") or {}).get("not_verified") or []),
        "claimed_sparsity": _num((report.get("claims") or {}).get("values", {}).get("sparsity")),
        "prunable_sparsity": _num((spm.get("prunable") or {}).get("sparsity")),
        "disk_bytes": _num((sm.get("size") or {}).get("disk_bytes")),
        "dense_disk_bytes": _num((sm.get("dense_size") or {}).get("disk_bytes")),
        "size_saving": _num(sm.get("saving")),
        "decode_speedup": _num(dec.get("point")),
        "decode_speedup_ci": _ci([dec.get("ci_low"), dec.get("ci_high")]),
        "speed_mechanism": mechanism,
        "ppl_dense": _num((pm.get("dense") or {}).get("ppl")),
        "ppl_compressed": _num((pm.get("compressed") or {}).get("ppl")),
        "delta_ppl": _num(pm.get("relative_change")),
        "delta_ppl_ci": _ci([pm.get("ci_low"), pm.get("ci_high")]),
        "ppl_limit": _num(_verdict(ppl, "max_relative_increase").get("threshold")),
        "srs_dense": _num(overall.get("srs_dense")),
        "srs_compressed": _num(overall.get("srs_compressed")),
        "delta_srs": _num(overall.get("delta_srs")),
        "delta_srs_ci": _ci(overall.get("ci")),
        "srs_limit": _num(_verdict(bbq, "bbq.srs_increase_abs").get("threshold")),
        "bbq_n": n_tr,
        "unbiased_to_biased": flips,
        "unbiased_to_biased_rate": _num(
            _verdict(bbq, "bbq.unbiased_to_biased_rate").get("observed")
        ),
        "s_amb_dense": _num(dense_o.get("s_amb")),
        "s_amb_compressed": _num(comp_o.get("s_amb")),
        "disambig_n": _num(dis_c.get("n_items")),
        "disambig_accuracy_dense": _num(dis_d.get("accuracy")),
        "disambig_accuracy": _num(dis_c.get("accuracy")),
        "s_dis_dense": _num(dis_d.get("s_dis")),
        "s_dis_compressed": _num(dis_c.get("s_dis")),
        **_fidelity([("gate", report), *passes]),
        "seconds": side.get("seconds"),
    }


def collect(spec: StudySpec) -> list[StudyRow]:
    """Rows for the variants that have results, in the spec's order (each pass's report of a
    variant, where there is one, adds its checks)."""
    rows = []
    for v in spec.variants:
        report, side = (
            spec.out / "variants" / f"{v.name}.report.json",
            spec.out / "variants" / f"{v.name}.study.json",
        )
        if report.is_file() and side.is_file():
            extra = [
                (p.name, json.loads(f.read_text("utf-8")))
                for p in spec.passes
                if (f := p.out / "variants" / f"{v.name}.report.json").is_file()
            ]
            rows.append(
                row(
                    json.loads(report.read_text("utf-8")),
                    json.loads(side.read_text("utf-8")),
                    extra,
                )
            )
    return rows


def _f(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _ci_txt(ci: list[float] | None, fmt: Any) -> str:
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
            f"| {_fid_cell(r, 'mean_kl', '.3g')} | {_fid_cell(r, 'top1_agreement', '.1%')} "
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


_VERDICT_OF = {
    "mean_kl": "mean_kl_verdict",
    "top1_agreement": "top1_verdict",
}  # a column -> its verdict


def _fid_cell(r: Mapping[str, Any], key: str, fmt: str) -> str:
    if r.get(key) is None:
        return "n/a"
    verdict = r.get(_VERDICT_OF[key])
    mark = {"fail": " **fail**", "inconclusive": " inconclusive"}.get(str(verdict), "")
    return format(r[key], fmt) + _ci_txt(r.get(f"{key}_ci"), lambda v: format(v, fmt)) + mark


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


def write_outputs(spec: StudySpec, policy: Any) -> tuple[Path, Path, Path]:
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
