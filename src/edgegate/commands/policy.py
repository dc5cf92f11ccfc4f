"""`edgegate policy validate|init|show|schema`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from edgegate.errors import EdgegateError, ExitCode, InputError


@click.group(name="policy")
def command() -> None:
    """Validate, create and inspect gate policies."""


@command.command(name="validate")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
def validate(files: tuple[str, ...]) -> None:
    """Check policy files against the schema; print every problem, exit 2 if any."""
    from edgegate.escape import terminal as t
    from edgegate.policy import iter_policy_files, load_policy, validation_errors

    bad = 0
    for arg in files:  # a directory without policies must not validate as "nothing wrong"
        if Path(arg).is_dir() and not any(iter_policy_files([arg])):
            bad += 1
            click.echo(
                f"edgegate: error: {t(arg)}: no *.yaml or *.yml policy files in this directory",
                err=True,
            )
    for path in iter_policy_files(list(files)):
        try:
            policy = load_policy(path)
        except EdgegateError as exc:
            bad += 1
            # Show every problem, not only the first, when the YAML itself parsed.
            problems = _all_problems(path, validation_errors)
            for line in problems or [exc.one_line()]:
                click.echo(
                    t(f"{path}: {line}") if problems else f"edgegate: error: {t(line)}", err=True
                )
            continue
        checks = ", ".join(
            f"{c.name}{'' if c.required else ' (optional)'}" for c in policy.enabled_checks()
        )
        click.echo(t(f"{path}: ok (policy '{policy.name}'; checks: {checks or 'none'})"))
    if bad:
        sys.exit(int(ExitCode.INPUT_ERROR))


def _all_problems(path: Path, validation_errors: Callable[..., list[str]]) -> list[str]:
    from edgegate.policy import MAX_POLICY_BYTES, _load_yaml
    from edgegate.safe_read import read_text

    try:  # load_policy refused it already when it is not a small regular file: never block here
        doc, lines = _load_yaml(
            read_text(path, max_bytes=4 * MAX_POLICY_BYTES, what="policy file"), str(path)
        )
    except (EdgegateError, OSError, UnicodeDecodeError):
        return []
    return validation_errors(doc, lines)


@command.command(name="init")
@click.option(
    "--preset",
    type=click.Choice(["strict", "default", "edge-iot", "paper"]),
    default="default",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    default="edgegate-policy.yaml",
    show_default=True,
    metavar="FILE",
    help="Where to write ('-' for stdout).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(preset: str, output: str, force: bool) -> None:
    """Write a commented policy to start from."""
    from edgegate.policy import preset_text

    text = preset_text(preset)
    if output == "-":
        sys.stdout.write(text)
        return
    out = Path(output)
    if out.exists() and not force:
        raise InputError(
            "file exists; refusing to overwrite", path=out, hint="pass --force or choose another -o"
        )
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write policy: {exc.strerror}", path=out) from exc
    click.echo(
        f"wrote {out} (preset '{preset}'); edit it, then: edgegate policy validate {out}", err=True
    )


@command.command(name="show")
@click.argument("file")
def show(file: str) -> None:
    """Print the policy (a file or a preset name) with every default filled in (JSON).

    A check the policy has no block for is not run; it is shown as ``enabled: false``, the
    same rule ``edgegate check`` applies and reports ("not in the policy")."""
    from edgegate.policy import CHECK_NAMES, resolve_policy

    doc = resolve_policy(file).to_dict()
    doc["checks"] = {n: doc["checks"].get(n, {"enabled": False}) for n in CHECK_NAMES}
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


@command.command(name="schema")
def schema() -> None:
    """Print the policy JSON Schema."""
    from edgegate.policy import policy_schema

    sys.stdout.write(json.dumps(policy_schema(), indent=2) + "\n")
