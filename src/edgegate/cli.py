"""Command-line entry point: a thin click group.

Each command lives in ``edgegate.commands.<name>`` and only parses flags before calling the
library. Errors are turned into exit codes here, in one place:
0 pass, 1 policy failed, 2 usage/input error, 3 runtime/backend error.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

import click

from edgegate import __version__
from edgegate.errors import EdgegateError, ExitCode
from edgegate.escape import terminal

# name -> module under edgegate.commands that defines ``command`` (a click.Command)
_COMMANDS = {
    "scan": "scan",
    "check": "check",
    "policy": "policy",
    "bench": "bench",
    "ppl": "ppl",
    "bbq": "bbq",
    "merge": "merge",
    "study": "study",
}


class _LazyGroup(click.Group):
    """Imports a command's module only when it is used, so `edgegate scan` never pays for
    importing the runtimes, and a broken optional runtime cannot break unrelated commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        mod_name = _COMMANDS.get(cmd_name)
        if mod_name is None:
            return None
        module = importlib.import_module(f"edgegate.commands.{mod_name}")
        cmd: click.Command = module.command
        return cmd


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgegate")
def cli() -> None:
    """edgegate: measure what a compressed LLM really is, then gate it against a policy."""


def _bounded(line: str, limit: int = 1000) -> str:
    """Escaping can lengthen a capped message (one control character becomes six): cut it
    in the middle again so an error stays a line a person reads."""
    return line if len(line) <= limit else f"{line[: limit * 2 // 3]}…{line[-(limit // 3) :]}"


def main(argv: list[str] | None = None) -> Any:
    from edgegate.signals import Terminated, handling_signals

    try:
        with handling_signals():
            return cli.main(args=argv, prog_name="edgegate", standalone_mode=False)
    except Terminated:
        click.echo("edgegate: terminated (SIGTERM)", err=True)
        sys.exit(Terminated.exit_code)
    except EdgegateError as exc:
        # messages quote tensor names, paths and fields: untrusted, escaped for the terminal/CI log
        click.echo(f"edgegate: error: {_bounded(terminal(exc.one_line()))}", err=True)
        sys.exit(int(exc.exit_code))
    except click.exceptions.Abort:
        click.echo("edgegate: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(int(ExitCode.INPUT_ERROR))
    except KeyboardInterrupt:
        click.echo("edgegate: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug in edgegate, not a user mistake
        if os.environ.get("EDGEGATE_DEBUG"):
            traceback.print_exc()
        click.echo(
            f"edgegate: internal error: {type(exc).__name__}: {terminal(exc)} "
            "(set EDGEGATE_DEBUG=1 for a traceback and please report it)",
            err=True,
        )
        sys.exit(int(ExitCode.RUNTIME_ERROR))


if __name__ == "__main__":
    main()
