"""Command-line options that several commands share word for word (commands never import
each other, so they come from here)."""

from __future__ import annotations

import click

workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Processes per model scoring BBQ on llama.cpp, and whether the fidelity pass runs its "
    "two models at once (default: the usable CPUs over --threads, or over half the CPUs, within "
    "free memory; answers do not depend on it).",
)
