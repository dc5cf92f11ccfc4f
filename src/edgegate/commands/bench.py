"""`edgegate bench` (placeholder until its issue lands)."""

import click


@click.command(name="bench")
def command() -> None:
    """Not available yet."""
    raise click.UsageError("'edgegate bench' is not available in this build yet")
