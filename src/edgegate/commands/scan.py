"""`edgegate scan` (placeholder until its issue lands)."""

import click


@click.command(name="scan")
def command() -> None:
    """Not available yet."""
    raise click.UsageError("'edgegate scan' is not available in this build yet")
