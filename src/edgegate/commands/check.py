"""`edgegate check` (placeholder until its issue lands)."""

import click


@click.command(name="check")
def command() -> None:
    """Not available yet."""
    raise click.UsageError("'edgegate check' is not available in this build yet")
