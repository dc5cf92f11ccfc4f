"""`edgegate policy` (placeholder until its issue lands)."""

import click


@click.command(name="policy")
def command() -> None:
    """Not available yet."""
    raise click.UsageError("'edgegate policy' is not available in this build yet")
