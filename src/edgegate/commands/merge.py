"""`edgegate merge` (placeholder until its issue lands)."""

import click


@click.command(name="merge")
def command() -> None:
    """Not available yet."""
    raise click.UsageError("'edgegate merge' is not available in this build yet")
