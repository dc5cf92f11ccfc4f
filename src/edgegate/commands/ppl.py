"""`edgegate ppl` (placeholder until its issue lands)."""

import click


@click.command(name="ppl")
def command() -> None:
    """Not available yet."""
    raise click.UsageError("'edgegate ppl' is not available in this build yet")
