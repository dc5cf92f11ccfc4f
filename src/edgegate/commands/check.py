"""`edgegate check DENSE COMPRESSED --policy FILE`: run the gate.

stdout carries machine output only: with no --*-out flag the Markdown summary goes to stdout
when it is piped (a terminal gets the rich table on stderr instead); ``--json-out -`` (or any
other ``-``) writes that report to stdout. Progress and the rich table go to stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from edgegate.errors import InputError
from edgegate.policy import Policy


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def _load_policy(value: str) -> Policy:
    from edgegate.policy import PRESETS, load_policy, load_preset

    if not Path(value).exists() and value.removeprefix("preset:") in PRESETS:
        return load_preset(value.removeprefix("preset:"))
    return load_policy(value)


@click.command(name="check")
@click.argument("dense", type=click.Path(path_type=Path))
@click.argument("compressed", type=click.Path(path_type=Path))
@click.option("--policy", "policy_path", required=True, metavar="FILE",
              help="Policy YAML (or a preset name: strict, default, edge-iot).")
@click.option("--only", multiple=True, metavar="CHECKS", help="Run only these checks (comma-separated).")
@click.option("--skip", multiple=True, metavar="CHECKS", help="Do not run these checks (comma-separated).")
@click.option("--strict", is_flag=True,
              help="Skipped or inconclusive required checks fail the gate (checks you deselect "
                   "with --only/--skip are reported as deselected and do not count).")
@click.option("--claim", "claims", multiple=True, metavar="KEY=VALUE",
              help="A publisher claim, e.g. sparsity=0.5 or size_saving=50%; wins over policy and metadata.")
@click.option("--json-out", metavar="FILE", help="Write the JSON report ('-' for stdout).")
@click.option("--md-out", metavar="FILE", help="Write the Markdown summary ('-' for stdout).")
@click.option("--html-out", metavar="FILE", help="Write a self-contained HTML report.")
@click.option("--junit-out", metavar="FILE", help="Write JUnit XML (one testcase per verdict).")
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice(["llamacpp", "mlx", "onnx", "openai"]),
              help="Runtime(s) for speed checks (llamacpp, mlx, onnx); overrides the policy.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the runtimes.")
@click.option("--bbq-data", type=click.Path(path_type=Path), metavar="DIR", help="Directory of BBQ *.jsonl files (or hf:NAME).")
@click.option("--seed", type=click.IntRange(min=0), help="Seed for sampling (overrides the policy).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Where converted models and results are cached.")
@click.option("--no-hash", is_flag=True, help="Skip sha256 of input files (faster; the report then lacks digests).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary table on stderr.")
def command(
    dense: Path,
    compressed: Path,
    policy_path: str,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    strict: bool,
    claims: tuple[str, ...],
    json_out: str | None,
    md_out: str | None,
    html_out: str | None,
    junit_out: str | None,
    runtimes: tuple[str, ...],
    threads: int | None,
    bbq_data: Path | None,
    seed: int | None,
    cache_dir: Path | None,
    no_hash: bool,
    quiet: bool,
) -> None:
    """Measure COMPRESSED against DENSE and pass/fail it against a policy.

    Exit codes: 0 pass (or incomplete: a required check could not run and the policy allows
    that; the report never calls it a pass), 1 policy failed, 2 usage or input error,
    3 runtime error.
    """
    from edgegate.progress import NullProgress, RichProgress
    from edgegate.report import render, write_report
    from edgegate.runner import GateOptions, parse_claim, run_gate

    for role, p in (("dense checkpoint", dense), ("compressed checkpoint", compressed)):
        if not p.exists():
            raise InputError(f"{role} not found", path=p, hint="pass a checkpoint file or directory")
    if bbq_data is not None and not str(bbq_data).startswith("hf:") and not bbq_data.exists():
        raise InputError("BBQ data not found", path=bbq_data, field="--bbq-data", hint="a directory of BBQ *.jsonl files, or hf:NAME")
    policy = _load_policy(policy_path)
    cli_claims = dict(parse_claim(c) for c in claims)
    options = {
        "runtimes": list(runtimes) or None,
        "threads": threads,
        "bbq_data": str(bbq_data) if bbq_data else None,
        "seed": seed,
        "cache_dir": str(cache_dir) if cache_dir else None,
    }
    opts = GateOptions(
        compressed=compressed,
        dense=dense,
        policy=policy,
        only=_split(only),
        skip=_split(skip),
        strict=strict,
        cli_claims=cli_claims,
        options=options,
        hash_inputs=not no_hash,
        argv=tuple(sys.argv[1:]),
    )
    progress = NullProgress() if quiet else RichProgress()
    gate = run_gate(opts, progress=progress)

    outputs = {"json": json_out, "markdown": md_out, "html": html_out, "junit": junit_out}
    for fmt, dest in outputs.items():
        if dest == "-":
            sys.stdout.write(render(fmt, gate))
        elif dest:
            write_report(fmt, gate, dest)
            if not quiet:
                click.echo(f"edgegate: wrote {fmt} report to {dest}", err=True)
    if not any(outputs.values()) and not sys.stdout.isatty():
        sys.stdout.write(render("markdown", gate))
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        try:
            with open(summary_file, "a", encoding="utf-8") as f:
                f.write(render("markdown", gate) + "\n")
        except OSError as exc:
            click.echo(f"edgegate: warning: cannot append to GITHUB_STEP_SUMMARY: {exc.strerror}", err=True)
    if not quiet:
        from edgegate.report.terminal import print_summary

        print_summary(gate)
    elif gate.status == "error":  # -q hides the table, but an error still needs its one line
        click.echo(f"edgegate: error: {'; '.join(gate.reasons)}", err=True)
    sys.stdout.flush()
    sys.exit(gate.exit_code)
