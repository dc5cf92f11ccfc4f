"""The rich summary printed to stderr (stdout stays for machine output)."""

from __future__ import annotations

import sys
from typing import Any

from edgegate.escape import markup, terminal
from edgegate.report.common import ci, headline, num, shown_status, threshold
from edgegate.results import CheckDecision, GateResult, GateStatus

_STYLE = {
    "pass": "green",
    "fail": "red",
    "error": "magenta",
    "inconclusive": "yellow",
    "skipped": "dim",
    "partial": "yellow",
    "unverified": "red",
}


def print_summary(gate: GateResult, console: Any = None, *, verbose: bool = True) -> None:
    from rich.console import Console
    from rich.table import Table

    # CI logs are not terminals; rich would wrap at 80 columns there.
    con = console or Console(stderr=True, width=None if sys.stderr.isatty() else 140)
    # Every string from data goes through edgegate.escape: policy names, tensor names and
    # messages quoting them are untrusted (control bytes, workflow commands, rich markup).
    table = Table(
        title=f"edgegate · policy {markup(gate.policy.name)}{' (--strict)' if gate.strict else ''}",
        show_lines=False,
    )
    for col in ("check", "req", "status", "summary"):
        table.add_column(col, overflow="fold")
    for o in gate.outcomes:
        st = shown_status(o)
        st = f"advisory {st}" if o.gate is CheckDecision.ADVISORY else st
        # Text from checks is data, not markup: "pip install 'edgegate[llamacpp]'" lost its
        # "[llamacpp]" to rich's markup parser.
        table.add_row(
            markup(o.name),
            "yes" if o.required else "no",
            f"[{_STYLE.get(st, 'dim')}]{st}[/]",
            markup(o.result.summary),
        )
    con.print(table)
    verdicts = [(o.name, v) for o in gate.outcomes for v in o.result.verdicts]
    if verbose and verdicts:
        vt = Table(title="verdicts", show_lines=False)
        for col in ("check", "verdict", "status", "observed", "threshold", "n", "CI"):
            vt.add_column(col, overflow="fold")
        for name, v in verdicts:
            label = v.name + (f" [{v.scope}]" if v.scope and v.scope not in v.name else "")
            vt.add_row(
                markup(name),
                markup(label),
                f"[{_STYLE.get(v.status.value, 'dim')}]{v.status.value}[/]",
                markup(num(v.observed, v.unit)),
                markup(threshold(v)),
                str(v.n) if v.n is not None else "—",
                markup(ci(v)),
            )
        con.print(vt)
    for note in gate.notes:
        con.print(f"[bold yellow]note:[/] {markup(note)}", highlight=False)
    style = _STYLE.get(gate.status, "bold")
    con.print(f"[bold {style}]{markup(headline(gate))}[/] (exit {gate.exit_code})", highlight=False)
    if gate.status is not GateStatus.PASS:
        for r in gate.reasons:
            con.print(f"  - {terminal(r)}", highlight=False, markup=False)
