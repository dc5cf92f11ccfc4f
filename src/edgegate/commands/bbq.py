"""`edgegate bbq` (placeholder until its issue lands)."""

import click


@click.command(name="bbq")
def command() -> None:
    """Not available yet."""
    raise click.UsageError("'edgegate bbq' is not available in this build yet")
