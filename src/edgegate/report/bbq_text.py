"""The plain-text form of a BBQ check result (`edgegate bbq run/score`, and `merge` of their
shards): the data line, both models' metric tables, the transition matrix, the report's BBQ
sections and every verdict with its statistics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

from edgegate.bbq.record import GroupMetricsRow, bbq_measurements
from edgegate.errors import ExitCode
from edgegate.escape import terminal
from edgegate.report.bbq_sections import sections, validity_line
from edgegate.results import CheckResult, Status, Verdict


def fmt_number(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _metrics_table(title: str, groups: Mapping[str, GroupMetricsRow]) -> list[str]:
    lines = [
        title,
        f"  {'scope':<22}{'n':>6}{'SRS':>8}{'USR':>8}{'anti':>8}{'s_AMB':>8}{'s_DIS':>8}{'fail':>6}",
    ]
    for k, g in groups.items():
        lines.append(
            f"  {k:<22}{g['n_answers']:>6}{fmt_number(g['srs']):>8}{fmt_number(g['usr']):>8}{fmt_number(g['anti_rate']):>8}"
            f"{fmt_number(g['s_amb'], '+.3f'):>8}{fmt_number(g['s_dis'], '+.3f'):>8}{g['n_failures']:>6}"
        )
    return lines


def render_text(result: CheckResult) -> str:
    m = bbq_measurements(result.measurements)
    out: list[str] = []
    if "data" in m:
        d = m["data"]
        out.append(
            f"data: {d['source']} ({d['condition']}): {d['n_used']} of {d['n_loaded']} items used, "
            f"{d['excluded']['count']} excluded"
            + (f" {d['excluded']['reasons']}" if d["excluded"]["count"] else "")
        )
    for role in ("dense", "compressed", "model"):
        if role in m:
            out += _metrics_table(f"{role}:", m[role])
    if "transitions" in m:
        t = m["transitions"]
        out.append(
            f"transitions (per item/seed/rotation, dense row -> compressed column), {t['n_pairs']} pairs:"
        )
        cls = list(t["matrix"])
        out.append("  " + " " * 10 + "".join(f"{c:>10}" for c in cls))
        for a in cls:
            out.append(f"  {a:<10}" + "".join(f"{t['matrix'][a][b]:>10}" for b in cls))
    if line := validity_line(m):
        out.append(line)
    for title, headers, body in sections(m):
        out.append(f"{title}:")
        out += ["  " + " | ".join(r) for r in [headers, *body]]
    for v in result.verdicts:
        out.append(f"[{v.status.value.upper():>12}] {v.message}" + _stat_line(v))
    label = (
        "MEASURED"
        if result.status is Status.SKIPPED and "model" in m
        else result.status.value.upper()
    )
    out.append(f"{label}: {result.summary}")
    return "\n".join(out)


def _stat_line(v: Verdict) -> str:
    bits = []
    if v.ci is not None:
        bits.append(f"95% CI [{v.ci.low:+.3f}, {v.ci.high:+.3f}]")
    if v.effect_size is not None:
        bits.append(f"h={v.effect_size:+.3f}")
    if v.test:
        bits.append(v.test)
    return f"  ({'; '.join(bits)})" if bits else ""


def emit_check_result(result: CheckResult, as_json: bool, allow_inconclusive: bool = False) -> int:
    """Print one BBQ check result (JSON, or text escaped for the terminal) and return the exit
    code of `edgegate bbq run/score` and of `merge` over their shards."""
    from edgegate.escape import json_safe

    if as_json:
        click.echo(json.dumps(json_safe(result.to_dict()), indent=2, sort_keys=False))
    else:  # categories and sources come from the BBQ files: each line escaped for the terminal
        click.echo("\n".join(terminal(line) for line in render_text(result).split("\n")))
    failing = {Status.FAIL, Status.ERROR} | (set() if allow_inconclusive else {Status.INCONCLUSIVE})
    return int(ExitCode.POLICY_FAILED) if result.status in failing else 0
