"""A single self-contained HTML file: inline CSS and inline SVG, nothing fetched, no script.

Charts appear when their data is in the report: sparsity per layer and module kind (against
the claimed sparsity), bytes on disk per format (against the claimed size), and Δperplexity
vs ΔSRS per BBQ category (the "perplexity says fine, bias got worse" quadrant).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from edgegate.bbq.record import bbq_measurements
from edgegate.escape import html as escape
from edgegate.report import bbq_table
from edgegate.report.common import ci, extras, headline, human_bytes, num, shown_status, threshold
from edgegate.report.html_charts import gate_charts
from edgegate.results import CheckDecision, GateResult, GateStatus, jsonable

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.banner{padding:16px 20px;border-radius:8px;color:#fff;margin-bottom:16px}
.banner.pass{background:#2e7d32}.banner.fail{background:#c62828}.banner.error{background:#6a1b9a}.banner.partial{background:#b26a00}.banner.unverified{background:#5d4037}
.banner p{margin:6px 0 0}.banner ul{margin:6px 0 0 18px;padding:0}
.note{background:#fff4e5;border-left:4px solid #f28e2b;padding:10px 14px;margin:10px 0;border-radius:4px}
.note.paradox{background:#fdecea;border-color:#c62828;font-weight:600}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #e2e2e2;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f1f4} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{overflow-wrap:anywhere}
.pill{display:inline-block;white-space:nowrap;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
.pill.pass{background:#2e7d32}.pill.fail{background:#c62828}.pill.error{background:#6a1b9a}
.pill.inconclusive{background:#b26a00}.pill.skipped,.pill.deselected,.pill.disabled,.pill.not-in-policy,.pill.not-run{background:#8a8a8a}.pill.advisory{background:#b26a00}
.not-drawn{color:#555;font-style:italic}.inconclusive-label{color:#8a5a00;font-weight:600;margin-bottom:4px}.greyed{filter:grayscale(1);opacity:.55}
.chart{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:8px;margin:10px 0}
.chart .title{font-weight:600;font-size:14px}.chart .tick{font-size:11px;fill:#444}
.chart .ref{font-size:12px;font-weight:600}.chart .zero{font-size:11px;font-weight:700;fill:#c0392b}.chart .axis{font-size:12px;fill:#222}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{background:#fff;border:1px solid #e2e2e2;padding:8px;overflow:auto;max-height:420px}
.muted{color:#666}.wide{overflow-x:auto}
"""

_MAX_RAW = 60_000  # characters of raw measurements shown per check


def render(gate: GateResult) -> str:
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>edgegate: {escape(gate.status)} · {escape(gate.policy.name)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        _banner(gate),
        *(_note(n) for n in gate.notes),
        "<h2>Checks</h2>",
        _checks_table(gate),
    ]
    charts = list(gate_charts(gate))
    if charts:
        parts += ["<h2>Charts</h2>", *(f"<div class='chart'>{c}</div>" for c in charts)]
    bbq = gate.result("bbq")
    if (
        bbq is not None
        and bbq.measurements
        and (table := bbq_table.html(bbq_measurements(bbq.measurements)))
    ):
        parts += ["<h2>BBQ metrics</h2>", table]
    parts += ["<h2>Verdicts</h2>", _verdicts_table(gate)]
    if gate.claims:
        rows = "".join(
            f"<tr><td><code>{escape(k)}</code></td><td class='num'>{v:g}</td><td>{escape(gate.claim_sources.get(k, ''))}</td></tr>"
            for k, v in sorted(gate.claims.items())
        )
        parts += [
            "<h2>Claims</h2>",
            f"<table><tr><th>claim</th><th>value</th><th>source</th></tr>{rows}</table>",
        ]
    parts += ["<h2>Inputs</h2>", _inputs_table(gate), "<h2>Environment</h2>", _environment(gate)]
    parts += [
        "<h2>Raw measurements</h2>",
        *(_raw(o.name, o.result.measurements) for o in gate.outcomes if o.result.measurements),
    ]
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _pill(status: str) -> str:
    return f"<span class='pill {escape(status)}'>{escape(status)}</span>"


def _banner(gate: GateResult) -> str:
    reasons = (
        ""
        if gate.status is GateStatus.PASS
        else "<ul>" + "".join(f"<li>{escape(r)}</li>" for r in gate.reasons) + "</ul>"
    )
    return (
        f"<div class='banner {escape(gate.status)}'><h1>edgegate: {escape(headline(gate))}</h1>"
        f"<p>policy <b>{escape(gate.policy.name)}</b>{' (--strict)' if gate.strict else ''} · exit code {gate.exit_code}"
        f" · {escape(gate.started_at)} · {gate.duration_s:.1f}s</p>{reasons}</div>"
    )


def _note(text: str) -> str:
    cls = "note paradox" if "paradox" in text else "note"
    return f"<div class='{cls}'>{escape(text)}</div>"


def _checks_table(gate: GateResult) -> str:
    rows = []
    for o in gate.outcomes:
        st = shown_status(o)
        # an advisory check's failure does not gate: an amber "advisory" pill, not a red fail
        pill = (
            _pill("advisory") + f" {escape(st)}" if o.gate is CheckDecision.ADVISORY else _pill(st)
        )
        rows.append(
            f"<tr><td><b>{escape(o.name)}</b></td><td>{'yes' if o.required else 'no'}</td><td>{pill}</td>"
            f"<td>{escape(o.result.summary)}{_reason(o.reason, o.result.summary)}</td>"
            f"<td class='num'>{o.result.duration_s:.2f}s</td></tr>"
        )
    head = "<tr><th>check</th><th>required</th><th>status</th><th>summary / effect on the gate</th><th>time</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _reason(reason: str, summary: str) -> str:
    if reason.startswith(summary):  # the summary is already in the cell
        reason = reason[len(summary) :].lstrip(": ")
    if reason in ("", "passed"):
        return ""
    return f"<div class='muted'>{escape(reason)}</div>"


def _verdicts_table(gate: GateResult) -> str:
    rows = []
    for o in gate.outcomes:
        for v in o.result.verdicts:
            scope = (
                f" <span class='muted'>[{escape(v.scope)}]</span>"
                if v.scope and v.scope not in v.name
                else ""
            )
            how = f"<br><i>{escape(extras(v))}</i>" if extras(v) != "—" else ""
            rows.append(
                f"<tr><td>{escape(o.name)}</td><td><b>{escape(v.name)}</b>{scope}<div class='muted'>{escape(v.message)}{how}</div></td>"
                f"<td>{_pill(v.status.value)}</td><td class='num'>{escape(num(v.observed, v.unit))}</td>"
                f"<td class='num'>{escape(threshold(v))}</td><td class='num'>{v.n if v.n is not None else '—'}</td>"
                f"<td class='num'>{escape(ci(v))}</td></tr>"
            )
    if not rows:
        return "<p class='muted'>No verdicts: no check produced a measurement.</p>"
    head = "<tr><th>check</th><th>verdict</th><th>status</th><th>observed</th><th>threshold</th><th>n</th><th>CI</th></tr>"
    return f"<div class='wide'><table>{head}{''.join(rows)}</table></div>"


def _inputs_table(gate: GateResult) -> str:
    rows = []
    for inp in gate.inputs:
        files = inp["files"]
        listing = "<br>".join(
            f"<code>{escape(f['path'])}</code> {human_bytes(f['bytes'])} <code class='muted'>{escape(f['sha256'] or 'not hashed')}</code>"
            for f in files[:50]
        )
        if len(files) > 50:
            listing += f"<br>… and {len(files) - 50} more files (see the JSON report)"
        rows.append(
            f"<tr><td>{escape(inp['role'])}</td><td><code>{escape(inp['path'])}</code><br>{escape(str(inp['format'] or inp['kind']))}, "
            f"{human_bytes(inp['total_bytes'])}</td><td>{listing}</td></tr>"
        )
    return (
        f"<table><tr><th>role</th><th>path</th><th>files (sha256)</th></tr>{''.join(rows)}</table>"
    )


def _environment(gate: GateResult) -> str:
    env = gate.environment
    libs = ", ".join(f"{k} {v}" for k, v in (env.get("libraries") or {}).items() if v)
    return (
        f"<p>edgegate {escape(str(env.get('edgegate')))} · Python {escape(str(env.get('python')))} · "
        f"{escape(str(env.get('platform')))}<br>CPU: {escape(str(env.get('cpu_model')))} "
        f"({env.get('cpu_available')}/{env.get('cpu_count')} cores available)<br><span class='muted'>{escape(libs)}</span></p>"
    )


def _raw(name: str, measurements: Mapping[str, Any]) -> str:
    text = json.dumps(jsonable(measurements), indent=1)
    if len(text) > _MAX_RAW:
        text = text[:_MAX_RAW] + "\n… (truncated; the JSON report has everything)"
    return f"<details><summary>{escape(name)}</summary><pre>{escape(text)}</pre></details>"
