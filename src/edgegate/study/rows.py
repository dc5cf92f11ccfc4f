"""One variant's row of the study table, read from its files on disk: the edgegate JSON
report of the gate (and of each of the spec's passes) and the study sidecar that
``edgegate study`` writes beside it. Nothing is recomputed: a value a file does not have
stays None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from edgegate.bbq.record import GroupMetricsRow, bbq_measurements
from edgegate.bbq.shapes import SampleInfo
from edgegate.report.json_report import CheckEntry, ReportDocument, VerdictEntry
from edgegate.study.spec import StudySpec


class DisambigRecord(TypedDict, total=False):
    """The study's own scoring of disambiguated BBQ items (study.run), for a policy whose
    BBQ check scores none."""

    data: SampleInfo
    config: dict[str, str | int | float | bool]  # bbq.scoring.ScoreConfig
    dense: dict[str, GroupMetricsRow]  # scope -> metrics
    compressed: dict[str, GroupMetricsRow]


class StudyRecord(TypedDict, total=False):
    """A variant's study sidecar, ``<name>.study.json`` (study.run.run_variant writes every
    key; a reader meets older sidecars too)."""

    variant: str
    label: str
    group: str
    note: str
    claims: dict[str, float]
    fingerprint: str
    gate_seconds: float
    disambig_seconds: float | None
    seconds: float
    status: str  # results.GateStatus
    disambig: DisambigRecord | None


class Speedup(TypedDict, total=False):
    """A speed ratio with its CI, as the speed check measures it per runtime."""

    point: float
    ci_low: float
    ci_high: float


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
    gates: dict[str, str | None]  # check -> how it counted (required, advisory, ...)
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


def _check(report: ReportDocument, name: str) -> CheckEntry | None:
    for c in report.get("checks") or []:
        if c.get("check") == name:
            return c
    return None


def _measured(check: CheckEntry | None) -> dict[str, Any]:
    """A check's measurements, each check's own JSON (empty when the report lacks it)."""
    return (check.get("measurements") if check else None) or {}


def _verdict(check: CheckEntry | None, name: str) -> VerdictEntry:
    verdicts = (check.get("verdicts") if check else None) or []
    return next((v for v in verdicts if v.get("name") == name), VerdictEntry())


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
    reports: Sequence[tuple[str, ReportDocument]], name: str
) -> tuple[str | None, CheckEntry | None]:
    """The first report (main gate, then the spec's passes) that ran check ``name``."""
    for source, rep in reports:
        c = _check(rep, name)
        if c and c.get("status") not in (None, "skipped", "not-run"):
            return source, c
    return None, None


def _fidelity(reports: Sequence[tuple[str, ReportDocument]]) -> FidelityColumns:
    source, fid = _first_check(reports, "fidelity")
    fm = _measured(fid)
    kl, top1 = fm.get("mean_kl") or {}, fm.get("top1_agreement") or {}
    kl_v, top1_v = _verdict(fid, "max_mean_kl"), _verdict(fid, "min_top1_agreement")
    return {
        "fidelity_source": source,
        "fidelity_status": fid.get("status") if fid else None,
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
    report: ReportDocument,
    side: StudyRecord,
    passes: Sequence[tuple[str, ReportDocument]] = (),
) -> StudyRow:
    """One variant's columns; a value the report does not have stays None (shown as "n/a").
    ``passes``: (name, report) of the spec's extra passes, read for checks the gate did not run."""
    sp, size, speed = _check(report, "sparsity"), _check(report, "size"), _check(report, "speed")
    ppl, bbq = _check(report, "perplexity"), _check(report, "bbq")
    spm = _measured(sp).get("sparsity") or {}
    sm = _measured(size)
    dec: Speedup = {}
    mechanism: bool | None = None
    for rt in _measured(speed).values():
        if isinstance(rt, Mapping) and isinstance(rt.get("speedups"), Mapping):
            dec = rt["speedups"].get("decode_tps") or Speedup()
            mechanism = (rt.get("mechanism") or {}).get("possible")
            break
        if isinstance(rt, Mapping) and rt.get("timed") is False:  # the files decided it: no timing
            mechanism = (rt.get("mechanism") or {}).get("possible")
            break
    pm = _measured(ppl)
    bm = bbq_measurements(_measured(bbq))
    overall = bm.get("overall") or {}
    comp_o = ((bm.get("compressed") or {}).get("overall")) or {}
    dense_o = ((bm.get("dense") or {}).get("overall")) or {}
    dis = side.get("disambig") or {}
    dis_c, dis_d = (
        (dis.get("compressed") or {}).get("overall") or {},
        (dis.get("dense") or {}).get("overall") or {},
    )
    in_gate = bm.get("disambig_accuracy")  # the BBQ check scored them (policy disambig_items)
    if not dis and in_gate and in_gate.get("n"):
        acc: Sequence[float | None] = in_gate.get("accuracy") or [None, None]
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
