"""`edgegate merge PARTS... --policy FILE`: combine the partial files of a sharded run.

Parts from ``edgegate check --shard i/n`` become the gate report and exit code a single
``edgegate check`` would have produced (same report flags); parts from ``edgegate bbq run
--shard i/n`` become that command's result (no --policy needed). Parts that do not belong
together (different inputs or settings, overlapping items, a shard missing or given twice)
are refused with exit 2 and a message naming the files and the field that differs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from edgegate.errors import InputError


@click.command(name="merge")
@click.argument("parts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--policy",
    "policy_path",
    metavar="FILE",
    help="The policy the shards ran with (required for `edgegate check` shards; checked against them).",
)
@click.option("--json-out", metavar="FILE", help="Write the JSON report ('-' for stdout).")
@click.option("--md-out", metavar="FILE", help="Write the Markdown summary ('-' for stdout).")
@click.option("--html-out", metavar="FILE", help="Write a self-contained HTML report.")
@click.option("--junit-out", metavar="FILE", help="Write JUnit XML (one testcase per verdict).")
@click.option(
    "--json", "as_json", is_flag=True, help="`bbq run` shards: machine-readable result on stdout."
)
@click.option(
    "--allow-inconclusive",
    is_flag=True,
    help="`bbq run` shards: exit 0 on an inconclusive result (as `bbq run --allow-inconclusive`).",
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="`check` shards: exit 0 on PARTIAL (as `check --allow-partial`).",
)
@click.option("-q", "--quiet", is_flag=True, help="No summary table on stderr.")
def command(
    parts: tuple[Path, ...],
    policy_path: str | None,
    json_out: str | None,
    md_out: str | None,
    html_out: str | None,
    junit_out: str | None,
    as_json: bool,
    allow_inconclusive: bool,
    allow_partial: bool,
    quiet: bool,
) -> None:
    """Combine the partial files of `edgegate check --shard i/n` (or `bbq run --shard i/n`).

    Exit codes as for the command that wrote the parts; 2 when the parts do not fit together.
    """
    from edgegate import preflight
    from edgegate.partial import load_parts

    # a report written over a partial file or the policy would destroy an input: refuse first
    inputs: dict[str, Path | str | None] = {f"partial file {i}": p for i, p in enumerate(parts, 1)}
    inputs["policy"] = policy_path if policy_path and Path(policy_path).exists() else None
    preflight.raise_if_any(
        preflight.output_problems(
            {
                "--json-out": json_out,
                "--md-out": md_out,
                "--html-out": html_out,
                "--junit-out": junit_out,
            },
            inputs,
        )
    )
    loaded = load_parts(parts)
    kind = loaded.first.get("command")
    if kind == "bbq":
        from edgegate.checks import bbq
        from edgegate.report.bbq_text import emit_check_result

        with _malformed(loaded.names):
            measured = [
                (n, d["checks"]["bbq"]) for n, d in zip(loaded.names, loaded.docs, strict=True)
            ]
            result = bbq.judge(
                measured, bbq.SECTION.from_policy({})
            )  # judged on the thresholds the shards recorded
        sys.exit(emit_check_result(result, as_json, allow_inconclusive))
    if kind != "check":
        raise InputError(
            f"partial files written by an unknown command {kind!r}",
            path=loaded.names[0],
            field="command",
        )
    if not policy_path:
        raise InputError(
            "--policy is required to merge `edgegate check` shards",
            field="--policy",
            hint="pass the policy file the shards were run with",
        )
    from edgegate.merge import merge_gate
    from edgegate.policy import resolve_policy
    from edgegate.report.emit import emit_gate

    policy = resolve_policy(policy_path)
    with _malformed(loaded.names):
        gate = merge_gate(loaded, policy, argv=tuple(sys.argv[1:]), allow_partial=allow_partial)
    sys.exit(
        emit_gate(
            gate,
            {"json": json_out, "markdown": md_out, "html": html_out, "junit": junit_out},
            quiet,
        )
    )


@contextmanager
def _malformed(names: tuple[str, ...]) -> Iterator[None]:
    """A partial file edited by hand (or truncated) is an input error, not an internal one."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        what = (
            f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        )
        raise InputError(
            f"malformed partial file among {', '.join(names)} ({what})",
            hint="pass files written by --shard i/n, unmodified",
        ) from exc
