"""`edgegate check DENSE COMPRESSED --policy FILE`: run the gate.

stdout carries machine output only: with no --*-out flag the Markdown summary goes to stdout
when it is piped (a terminal gets the rich table on stderr instead); ``--json-out -`` (or any
other ``-``) writes that report to stdout. Progress and the rich table go to stderr.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgegate.backends import LOCAL_RUNTIME_CHOICES, parse_runtimes
from edgegate.cli_options import workers_option
from edgegate.errors import InputError
from edgegate.escape import terminal
from edgegate.partial import parse_shard
from edgegate.policy import resolve_policy
from edgegate.results import Status
from edgegate.settings import RunSettings, Shard

if TYPE_CHECKING:
    from edgegate.runner import GateOptions, ShardRun


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


@click.command(name="check")
@click.argument("dense", type=click.Path(path_type=Path), required=False)
@click.argument("compressed", type=click.Path(path_type=Path), required=False)
@click.option(
    "--policy",
    "policy_path",
    required=True,
    metavar="FILE",
    help="Policy YAML (or a preset name: strict, default, edge-iot).",
)
@click.option(
    "--only", multiple=True, metavar="CHECKS", help="Run only these checks (comma-separated)."
)
@click.option(
    "--skip", multiple=True, metavar="CHECKS", help="Do not run these checks (comma-separated)."
)
@click.option(
    "--strict",
    is_flag=True,
    help="Skipped or inconclusive required checks fail the gate (checks you deselect "
    "with --only/--skip are reported as deselected and do not count).",
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Exit 0 on PARTIAL (some required checks not verified, nothing failed). Default: exit 1, "
    "because PARTIAL is not a pass; the GitHub Action's allow-partial input passes this flag.",
)
@click.option(
    "--fail-fast/--no-fail-fast",
    "fail_fast",
    default=None,
    help="Once a required check has failed or errored, do not run the remaining checks (each report lists "
    "them as not run, with the reason; the status stays FAIL). Overrides the policy's fail_fast "
    "(default false). With --shard it applies within the shard only.",
)
@click.option(
    "--claim",
    "claims",
    multiple=True,
    metavar="KEY=VALUE",
    help="A publisher claim, e.g. sparsity=0.5 or size_saving=50%; wins over policy and metadata.",
)
@click.option("--json-out", metavar="FILE", help="Write the JSON report ('-' for stdout).")
@click.option("--md-out", metavar="FILE", help="Write the Markdown summary ('-' for stdout).")
@click.option("--html-out", metavar="FILE", help="Write a self-contained HTML report.")
@click.option("--junit-out", metavar="FILE", help="Write JUnit XML (one testcase per verdict).")
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    metavar="NAMES",
    help=f"Runtime(s) for the speed check, comma-separated or repeated ({', '.join(LOCAL_RUNTIME_CHOICES)}; "
    "auto: where the compressed model ships); overrides the policy.",
)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the runtimes.")
@workers_option
@click.option(
    "--bbq-data",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Directory of BBQ *.jsonl files (or hf:NAME).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), help="Seed for sampling (overrides the policy)."
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    help="Where converted models and results are cached.",
)
@click.option(
    "--no-hash",
    is_flag=True,
    help="Skip sha256 of input files (faster; the report then lacks digests).",
)
@click.option(
    "--dense-endpoint",
    metavar="URL",
    help="Run BBQ/perplexity against the dense model on an OpenAI-compatible server (vLLM, llama-server).",
)
@click.option(
    "--compressed-endpoint",
    metavar="URL",
    help="The compressed model's server (with --dense-endpoint).",
)
@click.option(
    "--timeout",
    "http_timeout",
    type=click.FloatRange(min=0.001),
    metavar="SECONDS",
    help="Per-request timeout for servers (the openai runtime); default 60 or $EDGEGATE_HTTP_TIMEOUT.",
)
@click.option(
    "--max-retries",
    "http_retries",
    type=click.IntRange(0, 100),
    metavar="N",
    help="Retries per request to a server before it counts as down; default 5 or $EDGEGATE_HTTP_MAX_RETRIES.",
)
@click.option(
    "--shard",
    "shard_text",
    metavar="I/N",
    help="Run shard I of N (BBQ items split by a stable hash) and write a partial file for `edgegate merge`.",
)
@click.option(
    "--partial-out",
    metavar="FILE",
    help="Partial file of a --shard run (default edgegate-partial-I-of-N.json).",
)
@click.option(
    "--bbq-items",
    type=click.IntRange(min=1),
    metavar="N",
    help="Quick run: score N BBQ items instead of the policy's number (item minimums scaled); "
    "every report says the result is not release-grade.",
)
@click.option(
    "--samples-out",
    metavar="FILE.jsonl",
    help="Write the per-item evidence: every BBQ item with both models' answers (seed, rotation, class, "
    "flip) and every perplexity chunk's NLL for both models, one JSON object a line.",
)
@click.option(
    "--allow-identical",
    is_flag=True,
    help="Accept identical dense and compressed inputs: a deliberate null run (the gate should find no change).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress and no summary table on stderr (the verdict line stays).",
)
def command(**flags: Any) -> None:
    """Measure COMPRESSED against DENSE and pass/fail it against a policy.

    Exit codes: 0 pass (or PARTIAL with --allow-partial); 1 policy failed, no required check
    verified, or PARTIAL (some required checks deselected, or skipped/inconclusive where the
    policy allows it: never a pass); 2 usage or input error; 3 runtime error.
    """
    run_check(CheckFlags(**flags))


@dataclass(frozen=True)
class CheckFlags:
    """The flags of ``edgegate check``, as click parsed them (one field per option)."""

    dense: Path | None
    compressed: Path | None
    policy_path: str
    only: tuple[str, ...]
    skip: tuple[str, ...]
    strict: bool
    allow_partial: bool
    fail_fast: bool | None  # None: the policy's fail_fast decides
    claims: tuple[str, ...]
    json_out: str | None
    md_out: str | None
    html_out: str | None
    junit_out: str | None
    runtimes: tuple[str, ...]
    threads: int | None
    workers: int | None
    bbq_data: Path | None
    seed: int | None
    cache_dir: Path | None
    no_hash: bool
    dense_endpoint: str | None
    compressed_endpoint: str | None
    shard_text: str | None
    partial_out: str | None
    http_timeout: float | None
    http_retries: int | None
    bbq_items: int | None
    samples_out: str | None
    allow_identical: bool
    quiet: bool

    def outputs(self) -> dict[str, str | None]:
        return {
            "json": self.json_out,
            "markdown": self.md_out,
            "html": self.html_out,
            "junit": self.junit_out,
        }

    def report_flags(self) -> dict[str, str | None]:
        """Every file the run writes, keyed by its flag (for messages that name the flag)."""
        return {
            "--json-out": self.json_out,
            "--md-out": self.md_out,
            "--html-out": self.html_out,
            "--junit-out": self.junit_out,
            "--samples-out": self.samples_out,
        }

    def settings(self) -> RunSettings:
        return RunSettings(
            runtimes=parse_runtimes(self.runtimes) or None,
            threads=self.threads,
            workers=self.workers,
            bbq_data=str(self.bbq_data) if self.bbq_data else None,
            seed=self.seed,
            cache_dir=str(self.cache_dir) if self.cache_dir else None,
            dense_endpoint=self.dense_endpoint,
            compressed_endpoint=self.compressed_endpoint,
        )

    def models(self) -> dict[str, Path]:
        """The two models: local paths, or the endpoint URLs standing in for them."""
        if bool(self.dense_endpoint) != bool(self.compressed_endpoint):
            raise InputError(
                "pass both --dense-endpoint and --compressed-endpoint, or neither",
                field="--dense-endpoint",
            )
        models: dict[str, Path] = {}
        for role, p, url in (
            ("dense", self.dense, self.dense_endpoint),
            ("compressed", self.compressed, self.compressed_endpoint),
        ):
            if p is None and not url:
                raise InputError(
                    f"no {role} checkpoint given",
                    field=role.upper(),
                    hint=f"pass a path, or --{role}-endpoint URL",
                )
            if p is not None and not p.exists():
                raise InputError(
                    f"{role} checkpoint not found",
                    path=p,
                    hint="pass a checkpoint file or directory",
                )
            models[role] = (
                p if p is not None else Path(str(url))
            )  # a URL: only the endpoint checks use it
        return models

    def shard(self) -> Shard | None:
        shard = parse_shard(self.shard_text) if self.shard_text else None
        if self.partial_out and shard is None:
            raise InputError("--partial-out needs --shard I/N", field="--partial-out")
        given = [flag for flag, v in self.report_flags().items() if v and flag != "--samples-out"]
        if (
            shard is not None and given
        ):  # a shard has no verdict of its own: refuse rather than write none
            raise InputError(
                f"{given[0]} cannot be used with --shard",
                field=given[0],
                hint="a shard writes only its partial file; pass the report flags to `edgegate merge`",
            )
        return shard


assert {f.name for f in fields(CheckFlags)} == {
    p.name for p in command.params
}  # one field per option


def run_check(flags: CheckFlags) -> None:
    from edgegate.claims import parse_claims
    from edgegate.progress import make_progress
    from edgegate.runner import GateOptions, run_gate, run_shard

    models = flags.models()
    shard = flags.shard()
    policy = resolve_policy(flags.policy_path)
    caveats: tuple[str, ...] = ()
    if flags.bbq_items is not None:
        policy, caveat = policy.with_bbq_items(flags.bbq_items)
        caveats = (caveat,)
    user_skip = _split(flags.skip)
    opts = GateOptions(
        compressed=models["compressed"],
        dense=models["dense"],
        policy=policy,
        only=_split(flags.only),
        skip=user_skip,
        strict=flags.strict,
        cli_claims=parse_claims(flags.claims),
        settings=flags.settings(),
        shard=shard,
        hash_inputs=not flags.no_hash,
        argv=tuple(sys.argv[1:]),
        outputs=_written(flags, shard),
        samples_out=flags.samples_out,
        allow_identical=flags.allow_identical,
        caveats=caveats,
        allow_partial=flags.allow_partial,
        fail_fast=flags.fail_fast,
    )
    progress = make_progress(flags.quiet)
    from edgegate.backends._http import http_settings

    with http_settings(
        flags.http_timeout, flags.http_retries
    ):  # a hung server is bounded by the flags
        if shard is not None:
            sys.exit(
                _write_shard(
                    run_shard(opts, progress=progress),
                    opts,
                    user_skip,
                    shard,
                    flags.partial_out,
                    flags.quiet,
                )
            )
        gate = run_gate(opts, progress=progress)
    from edgegate.report.emit import emit_gate

    sys.exit(emit_gate(gate, flags.outputs(), flags.quiet))


def _written(flags: CheckFlags, shard: Shard | None) -> dict[str, str | None]:
    """Every file the run will write, by flag: checked against each other and the inputs
    before anything is measured (a shard's partial file too)."""
    from edgegate.partial import default_partial_name

    out = flags.report_flags()
    if shard is not None:
        out["--partial-out"] = flags.partial_out or str(default_partial_name(shard))
    return out


def _write_shard(
    run: ShardRun,
    opts: GateOptions,
    user_skip: tuple[str, ...],
    shard: Shard,
    partial_out: str | None,
    quiet: bool,
) -> int:
    """A --shard run writes its partial file instead of any report. Its exit code: 0 once
    written, unless a check errored (its error is in the file too, and `merge` reports it)."""
    from edgegate.partial import check_payload, default_partial_name, fingerprint, write_partial

    gate = run.gate
    fp = fingerprint(
        opts.policy,
        opts.strict,
        opts.only,
        user_skip,
        opts.cli_claims,
        opts.settings,
        gate.inputs,
        shard[1],
    )
    out = write_partial(
        partial_out or default_partial_name(shard),
        command="check",
        shard=shard,
        fingerprint=fp,
        payload=check_payload(gate, shard, run.measured, run.sharded),
    )
    code = 0
    for o in gate.outcomes:
        if o.result.status is Status.ERROR:
            click.echo(f"edgegate: {o.name}: error: {terminal(o.result.summary)}", err=True)
            code = max(code, int(o.result.error_code))
    if not quiet:
        click.echo(
            f"edgegate: shard {shard[0]}/{shard[1]}: wrote {terminal(out)}; combine all {shard[1]} with "
            f"`edgegate merge edgegate-partial-*-of-{shard[1]}.json --policy FILE`",
            err=True,
        )
    return code
