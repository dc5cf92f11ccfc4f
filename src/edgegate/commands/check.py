"""`edgegate check DENSE COMPRESSED --policy FILE`: run the gate.

stdout carries machine output only: with no --*-out flag the Markdown summary goes to stdout
when it is piped (a terminal gets the rich table on stderr instead); ``--json-out -`` (or any
other ``-``) writes that report to stdout. Progress and the rich table go to stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgegate.errors import InputError
from edgegate.policy import Policy
from edgegate.shard import parse_shard

if TYPE_CHECKING:
    from edgegate.runner import GateOptions, GateResult


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def _load_policy(value: str) -> Policy:
    from edgegate.policy import resolve_policy

    return resolve_policy(value)


@click.command(name="check")
@click.argument("dense", type=click.Path(path_type=Path), required=False)
@click.argument("compressed", type=click.Path(path_type=Path), required=False)
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
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice(["auto", "transformers", "llamacpp", "mlx", "onnx", "openai"]),
              help="Runtime(s) for speed checks (auto, transformers, llamacpp, mlx, onnx); overrides the policy.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the runtimes.")
@click.option("--bbq-data", type=click.Path(path_type=Path), metavar="DIR", help="Directory of BBQ *.jsonl files (or hf:NAME).")
@click.option("--seed", type=click.IntRange(min=0), help="Seed for sampling (overrides the policy).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Where converted models and results are cached.")
@click.option("--no-hash", is_flag=True, help="Skip sha256 of input files (faster; the report then lacks digests).")
@click.option("--dense-endpoint", metavar="URL",
              help="Run BBQ/perplexity against the dense model on an OpenAI-compatible server (vLLM, llama-server).")
@click.option("--compressed-endpoint", metavar="URL", help="The compressed model's server (with --dense-endpoint).")
@click.option("--shard", "shard_text", metavar="I/N",
              help="Run shard I of N (BBQ items split by a stable hash) and write a partial file for `edgegate merge`.")
@click.option("--partial-out", metavar="FILE", help="Partial file of a --shard run (default edgegate-partial-I-of-N.json).")
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
    dense_endpoint: str | None,
    compressed_endpoint: str | None,
    shard_text: str | None,
    partial_out: str | None,
    quiet: bool,
) -> None:
    """Measure COMPRESSED against DENSE and pass/fail it against a policy.

    Exit codes: 0 pass (or incomplete: a required check could not run and the policy allows
    that; the report never calls it a pass), 1 policy failed, 2 usage or input error,
    3 runtime error.
    """
    from edgegate.progress import NullProgress, RichProgress
    from edgegate.runner import GateOptions, parse_claim, run_gate

    if bool(dense_endpoint) != bool(compressed_endpoint):
        raise InputError("pass both --dense-endpoint and --compressed-endpoint, or neither", field="--dense-endpoint")
    models: dict[str, Path] = {}
    for role, p, url in (("dense", dense, dense_endpoint), ("compressed", compressed, compressed_endpoint)):
        if p is None and not url:
            raise InputError(f"no {role} checkpoint given", field=role.upper(), hint=f"pass a path, or --{role}-endpoint URL")
        if p is not None and not p.exists():
            raise InputError(f"{role} checkpoint not found", path=p, hint="pass a checkpoint file or directory")
        models[role] = p if p is not None else Path(str(url))  # a URL: only the endpoint checks use it
    shard = parse_shard(shard_text) if shard_text else None
    if partial_out and shard is None:
        raise InputError("--partial-out needs --shard I/N", field="--partial-out")
    reports = {"--json-out": json_out, "--md-out": md_out, "--html-out": html_out, "--junit-out": junit_out}
    given = [flag for flag, v in reports.items() if v]
    if shard is not None and given:  # a shard has no verdict of its own: refuse rather than write none
        raise InputError(f"{given[0]} cannot be used with --shard", field=given[0],
                         hint="a shard writes only its partial file; pass the report flags to `edgegate merge`")
    if bbq_data is not None and not str(bbq_data).startswith("hf:") and not bbq_data.exists():
        raise InputError("BBQ data not found", path=bbq_data, field="--bbq-data", hint="a directory of BBQ *.jsonl files, or hf:NAME")
    policy = _load_policy(policy_path)
    cli_claims = dict(parse_claim(c) for c in claims)
    options: dict[str, Any] = {
        "runtimes": list(runtimes) or None,
        "threads": threads,
        "bbq_data": str(bbq_data) if bbq_data else None,
        "seed": seed,
        "cache_dir": str(cache_dir) if cache_dir else None,
        "dense_endpoint": dense_endpoint,
        "compressed_endpoint": compressed_endpoint,
    }
    sink: dict[str, object] = {}
    shard_skip: tuple[str, ...] = ()
    if shard is not None:
        from edgegate.partial import shard_skips

        options.update(shard=shard, partial_sink=sink)
        shard_skip = shard_skips(policy, shard)
    opts = GateOptions(
        compressed=models["compressed"],
        dense=models["dense"],
        policy=policy,
        only=_split(only),
        skip=(*_split(skip), *shard_skip),
        strict=strict,
        cli_claims=cli_claims,
        options=options,
        hash_inputs=not no_hash,
        argv=tuple(sys.argv[1:]),
    )
    progress = NullProgress() if quiet else RichProgress()
    gate = run_gate(opts, progress=progress)
    if shard is not None:
        _write_shard(gate, opts, _split(skip), shard, sink, partial_out, quiet)
    emit(gate, {"json": json_out, "markdown": md_out, "html": html_out, "junit": junit_out}, quiet)


def _write_shard(gate: GateResult, opts: GateOptions, user_skip: tuple[str, ...], shard: tuple[int, int],
                 sink: dict[str, object], partial_out: str | None, quiet: bool) -> None:
    """A --shard run writes its partial file instead of any report. Exit 0 once written,
    unless a check errored (its error is in the file too, and `merge` reports it)."""
    from edgegate.partial import check_payload, fingerprint
    from edgegate.shard import default_partial_name, write_partial

    fp = fingerprint(opts.policy, opts.strict, opts.only, user_skip, opts.cli_claims, opts.options, gate.inputs)
    fp["shard_count"] = shard[1]
    out = write_partial(partial_out or default_partial_name(shard), command="check", shard=shard,
                        fingerprint=fp, payload=check_payload(gate, shard, sink))
    code = 0
    for o in gate.outcomes:
        if o.result.status.value == "error":
            click.echo(f"edgegate: {o.name}: error: {o.result.summary}", err=True)
            code = max(code, int((o.result.error or {}).get("exit_code", 3)))
    if not quiet:
        click.echo(f"edgegate: shard {shard[0]}/{shard[1]}: wrote {out}; combine all {shard[1]} with "
                   f"`edgegate merge edgegate-partial-*-of-{shard[1]}.json --policy FILE`", err=True)
    sys.exit(code)


def emit(gate: GateResult, outputs: dict[str, str | None], quiet: bool) -> None:
    """Write the reports, the step summary and the terminal table, then exit with the gate's
    code (shared by `edgegate check` and `edgegate merge`)."""
    from edgegate.report import render, write_report

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
