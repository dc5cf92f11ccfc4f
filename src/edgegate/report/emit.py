"""Where a gate's result goes: every report the user asked for (a file, or stdout for one
of them), the GitHub job summary, and the terminal table or its one-line verdict on stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import click

from edgegate.escape import terminal
from edgegate.results import GateResult, GateStatus


def emit_gate(gate: GateResult, outputs: Mapping[str, str | None], quiet: bool) -> int:
    """Write the reports, the step summary and the terminal table; return the gate's exit code
    (shared by `edgegate check` and `edgegate merge`)."""
    from edgegate.report import render, write_report

    for fmt, dest in outputs.items():
        if dest == "-":
            sys.stdout.write(render(fmt, gate))
        elif dest:
            write_report(fmt, gate, dest)
            if not quiet:
                click.echo(f"edgegate: wrote {fmt} report to {terminal(dest)}", err=True)
    if not any(outputs.values()) and not sys.stdout.isatty():
        sys.stdout.write(render("markdown", gate))
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        try:
            with open(summary_file, "a", encoding="utf-8") as f:
                f.write(render("markdown", gate) + "\n")
        except OSError as exc:
            click.echo(
                f"edgegate: warning: cannot append to GITHUB_STEP_SUMMARY: {exc.strerror}", err=True
            )
    if not quiet:
        from edgegate.report.terminal import print_summary

        print_summary(gate)
    elif (
        gate.status is GateStatus.ERROR
    ):  # -q hides the table, but an error still needs its one line
        click.echo(f"edgegate: error: {terminal('; '.join(gate.reasons))}", err=True)
    else:  # -q hides progress and the table, never the verdict: a CI log must say why it is red
        from edgegate.report.common import headline

        click.echo(f"edgegate: {terminal(headline(gate))} (exit {gate.exit_code})", err=True)
    sys.stdout.flush()
    return int(gate.exit_code)
