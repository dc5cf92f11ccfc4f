"""Markdown summary (also what GitHub shows in the job summary)."""

from __future__ import annotations

import re

from edgegate.bbq.record import bbq_measurements
from edgegate.escape import markdown
from edgegate.report import bbq_table
from edgegate.report.common import (
    STATUS_ICON,
    ci,
    extras,
    headline,
    human_bytes,
    num,
    shown_status,
    threshold,
)
from edgegate.results import CheckDecision, GateResult, GateStatus


def _cell(text: object) -> str:
    """Data in a table cell or a line: escaped by edgegate.escape (pipes, markup, HTML,
    control bytes, non-UTF-8 bytes), never raw."""
    return markdown(text)


def _code(name: str) -> str:
    """A code span for a plain identifier; anything else escaped as text (a backtick in it
    would end the span)."""
    return f"`{name}`" if re.fullmatch(r"[A-Za-z0-9_.-]+", name) else _cell(name)


def _own(text: str) -> str:
    """Text edgegate composed from numbers and its own words: only table pipes escaped."""
    return text.replace("|", "\\|")


def render(gate: GateResult) -> str:
    lines = [*_header(gate), *_checks(gate), *_verdicts(gate)]
    bbq = gate.result("bbq")
    if (
        bbq is not None
        and bbq.measurements
        and (table := bbq_table.markdown(bbq_measurements(bbq.measurements)))
    ):
        lines += ["", "### BBQ (dense → compressed)", "", *table]
    if gate.claims:
        lines += ["", "### Claims", ""]
        lines += [
            f"- {_code(k)} = {v:g} (from {_cell(gate.claim_sources.get(k, '?'))})"
            for k, v in sorted(gate.claims.items())
        ]
    lines += _inputs_and_environment(gate)
    return "\n".join(lines)


def _header(gate: GateResult) -> list[str]:
    """The headline, the policy and exit code, the reasons and the notes."""
    icon = STATUS_ICON.get(gate.status, "")
    lines = [
        f"## {icon} edgegate: {_cell(headline(gate))}",
        "",
        f"Policy **{_cell(gate.policy.name)}**{' (--strict)' if gate.strict else ''} · exit code {gate.exit_code}",
        "",
    ]
    if gate.status is not GateStatus.PASS:
        lines += [f"- {_cell(r)}" for r in gate.reasons] + [""]
    for note in gate.notes:
        lines += [f"> **Note:** {_cell(note)}", ""]
    return lines


def _checks(gate: GateResult) -> list[str]:
    """One row per check, then the runtime `runtime: auto` chose for each runtime check."""
    lines = ["| Check | Required | Status | Summary |", "|---|---|---|---|"]
    for o in gate.outcomes:
        st = o.result.status.value
        # an advisory check's failure does not gate: it must not read like one that does
        shown = f"advisory {st}" if o.gate is CheckDecision.ADVISORY else shown_status(o)
        st = (
            "skipped"
            if not o.selected or o.gate in (CheckDecision.ADVISORY, CheckDecision.NOT_RUN)
            else st
        )
        lines.append(
            f"| {_cell(o.name)} | {'yes' if o.required else 'no'} | {STATUS_ICON.get(st, '')} {shown} | {_cell(o.result.summary)} |"
        )
    chosen = [
        (o.name, rc)
        for o in gate.outcomes
        if isinstance(rc := (o.result.measurements or {}).get("runtime_choice"), dict)
        and rc.get("runtime")
    ]
    if chosen:  # `runtime: auto`: where each runtime check measured, and why
        lines += [
            "",
            "Runtime: "
            + "; ".join(
                f"{name} on **{_cell(str(rc['runtime']))}** ({_cell(str(rc.get('reason', '')))})"
                for name, rc in chosen
            ),
        ]
    return lines


def _verdicts(gate: GateResult) -> list[str]:
    """The verdicts table (empty when no check gave a verdict)."""
    verdicts = [(o.name, v) for o in gate.outcomes for v in o.result.verdicts]
    if not verdicts:
        return []
    lines = [
        "",
        "### Verdicts",
        "",
        "| Check | Verdict | Scope | Status | Observed | Threshold | n | CI | Test |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in verdicts:
        lines.append(
            f"| {_cell(name)} | {_cell(v.name)} | {_cell(v.scope or '')} | {STATUS_ICON.get(v.status.value, '')} {v.status.value} "
            f"| {_own(num(v.observed, v.unit))} | {_own(threshold(v))} | {v.n if v.n is not None else '—'} "
            f"| {ci(v)} | {_own(extras(v))} |"
        )
    return lines


def _inputs_and_environment(gate: GateResult) -> list[str]:
    """The collapsed block: each input with its digest, then the machine and the timing."""
    lines = ["", "<details><summary>Inputs and environment</summary>", ""]
    for inp in gate.inputs:
        first = (
            inp["files"][0]["sha256"]
            if len(inp["files"]) == 1 and inp["files"][0]["sha256"]
            else None
        )
        digest = f" sha256 `{first[:16]}…`" if first else f" {len(inp['files'])} files"
        # no code span: a backtick in a path would end it; escaped text shows the path as is
        lines.append(
            f"- **{_cell(inp['role'])}**: {_cell(inp['path'])} ({_cell(inp['format'] or inp['kind'])}, "
            f"{human_bytes(inp['total_bytes'])};{digest})"
        )
    env = gate.environment
    lines += [
        f"- edgegate {_cell(env.get('edgegate'))}, Python {_cell(env.get('python'))}, {_cell(env.get('platform'))}",
        f"- CPU: {_cell(env.get('cpu_model'))} ({env.get('cpu_available')}/{env.get('cpu_count')} cores available)",
        f"- duration {gate.duration_s:.1f}s, started {gate.started_at}",
        "",
        "</details>",
        "",
    ]
    return lines
