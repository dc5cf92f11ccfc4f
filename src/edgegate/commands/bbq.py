"""`edgegate bbq run|score`: BBQ bias transitions between a dense and a compressed model.

``run`` scores both models through a runtime; ``score`` takes predictions files (BBQ rows
carrying a model's answer) and, with ``--against``, compares them with the same statistics.
Exit code 1 when a verdict fails or the result is inconclusive (too few items is never a pass;
``--allow-inconclusive`` makes it exit 0, still printed as inconclusive), 0 when it passes.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from edgegate import checks
from edgegate.backends import RUNTIME_CHOICES, parse_runtimes
from edgegate.checks.base import CheckResult, Status
from edgegate.checks.sections import bbq_section
from edgegate.cli_options import workers_option
from edgegate.errors import DatasetError, InputError
from edgegate.escape import terminal
from edgegate.partial import parse_shard
from edgegate.policy import check_default
from edgegate.report.bbq_text import emit_check_result, fmt_number
from edgegate.settings import RunSettings, Shard


def _policy(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


_policy_opts = [
    click.option(
        "--max-srs-increase-abs",
        type=float,
        default=None,
        help="Absolute SRS increase allowed (0.05).",
    ),
    click.option(
        "--max-srs-increase-rel",
        type=float,
        default=None,
        help="SRS increase relative to dense (0.25).",
    ),
    click.option("--alpha", type=float, default=None, help="Significance level (0.05)."),
    click.option(
        "--min-items", type=int, default=None, help="Fewer paired items is inconclusive (100)."
    ),
    click.option(
        "--min-items-per-category",
        type=int,
        default=None,
        help="Fewer paired items in a category makes its verdicts inconclusive (50).",
    ),
    click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout."),
    click.option(
        "--allow-inconclusive",
        is_flag=True,
        help="Exit 0 on an inconclusive result (default: exit 1, like fail_on_inconclusive).",
    ),
]


def _with_policy_opts(f: Any) -> Any:
    for opt in reversed(_policy_opts):
        f = opt(f)
    return f


@click.group(name="bbq")
def command() -> None:
    """BBQ bias transitions between a dense and a compressed model."""


@command.command(name="run")
@click.argument("dense", type=click.Path(path_type=Path))
@click.argument("compressed", type=click.Path(path_type=Path))
@click.option(
    "--runtime",
    default=check_default("bbq", "runtime"),
    show_default=True,
    metavar="NAME",
    help=f"One of {', '.join(RUNTIME_CHOICES)} (auto: where the compressed model ships).",
)
@click.option(
    "--data", default=None, help="Folder of upstream BBQ *.jsonl, or hf:NAME (needs network)."
)
@click.option(
    "--items",
    type=int,
    default=check_default("bbq", "items"),
    show_default=True,
    help="Stratified sample size (0: all).",
)
@click.option("--seed", type=int, default=check_default("bbq", "seed"), show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["letter", "loglik"]),
    default=check_default("bbq", "mode"),
    show_default=True,
)
@click.option(
    "--condition",
    type=click.Choice(["ambig", "disambig", "both"]),
    default=check_default("bbq", "condition"),
    show_default=True,
)
@click.option(
    "--seeds",
    type=int,
    default=check_default("bbq", "seeds"),
    show_default=True,
    help="Sampled answers per item (with --temperature).",
)
@click.option(
    "--temperature", type=float, default=check_default("bbq", "temperature"), show_default=True
)
@click.option(
    "--permute/--no-permute",
    default=check_default("bbq", "permute_options"),
    show_default=True,
    help="Ask every item with its options rotated 3 ways (position control; an item's answer is its majority).",
)
@click.option(
    "--disambig-items",
    type=int,
    default=check_default("bbq", "disambig_items"),
    show_default=True,
    help="Disambiguated items scored too, for validity (dense accuracy vs chance) and the accuracy verdict.",
)
@click.option(
    "--sequential/--fixed-n",
    default=check_default("bbq", "sequential"),
    show_default=True,
    help="Score in looks and stop once a failure is decided (group-sequential); --fixed-n scores every item.",
)
@click.option(
    "--looks",
    type=click.IntRange(1, 10),
    default=check_default("bbq", "looks"),
    show_default=True,
    help="Looks of a sequential run (the first needs --min-items ambiguous items).",
)
@click.option("--threads", type=int, default=None)
@workers_option
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Result cache (~/.cache/edgegate).",
)
@click.option(
    "--timeout",
    "http_timeout",
    type=click.FloatRange(min=0.001),
    default=None,
    metavar="SECONDS",
    help="Per-request timeout for --runtime openai (default 60 or $EDGEGATE_HTTP_TIMEOUT).",
)
@click.option(
    "--max-retries",
    "http_retries",
    type=click.IntRange(0, 100),
    default=None,
    metavar="N",
    help="Retries per request for --runtime openai (default 5 or $EDGEGATE_HTTP_MAX_RETRIES).",
)
@click.option(
    "--shard",
    "shard_text",
    metavar="I/N",
    help="Score only shard I of N; write a partial file for `edgegate merge`.",
)
@click.option(
    "--partial-out",
    metavar="FILE",
    help="Partial file of a --shard run (default edgegate-partial-I-of-N.json).",
)
@_with_policy_opts
def run_cmd(
    dense: Path,
    compressed: Path,
    runtime: str,
    data: str | None,
    items: int,
    seed: int,
    mode: str,
    condition: str,
    seeds: int,
    temperature: float,
    permute: bool,
    disambig_items: int,
    sequential: bool,
    looks: int,
    threads: int | None,
    workers: int | None,
    cache_dir: Path | None,
    http_timeout: float | None,
    http_retries: int | None,
    shard_text: str | None,
    partial_out: str | None,
    as_json: bool,
    allow_inconclusive: bool,
    **policy: Any,
) -> None:
    """Score DENSE and COMPRESSED on BBQ and test the change in stereotyped answers."""
    from edgegate.checks import bbq as check
    from edgegate.checks.base import CheckContext
    from edgegate.progress import make_progress

    runtime = _one_runtime(data, runtime)
    section = {
        "runtime": runtime,
        "data": data,
        "items": items,
        "seed": seed,
        "mode": mode,
        "condition": condition,
        "seeds": seeds,
        "temperature": temperature,
        "permute_options": permute,
        "disambig_items": disambig_items,
        "sequential": sequential,
        "looks": looks,
        **_policy(**policy),
    }
    settings = RunSettings(
        threads=threads,
        workers=workers,
        cache_dir=str(cache_dir) if cache_dir else None,
        seed=seed,
    )
    shard = parse_shard(shard_text) if shard_text else None
    if partial_out and shard is None:
        raise InputError("--partial-out needs --shard I/N", field="--partial-out")
    ctx = CheckContext(
        compressed_path=compressed,
        dense_path=dense,
        section=check.SECTION.from_policy(section),
        settings=settings,
        shard=shard,
        progress=make_progress(),
    )
    from edgegate.backends._http import http_settings

    with http_settings(http_timeout, http_retries):  # bound a hung server
        if shard is None:
            sys.exit(emit_check_result(checks.run("bbq", ctx), as_json, allow_inconclusive))
            return
        measured = check.measure(ctx, shard)
    out = _write_partial(ctx, shard, section, partial_out, measured)
    click.echo(
        f"edgegate: wrote {terminal(out)}; combine the shards with `edgegate merge PARTS...`",
        err=True,
    )


def _one_runtime(data: str | None, runtime: str) -> str:
    """Refuse a run without BBQ data or with other than one runtime; that runtime."""
    if not data:
        raise DatasetError(
            "no BBQ data given", field="--data", hint="pass --data DIR with BBQ *.jsonl, or hf:NAME"
        )
    names = parse_runtimes([runtime], RUNTIME_CHOICES)
    if len(names) != 1:
        raise InputError(
            f"one runtime scores both models, got {', '.join(names) or 'none'}",
            field="--runtime",
            hint=f"choose one of {', '.join(RUNTIME_CHOICES)}",
        )
    return names[0]


def _write_partial(
    ctx: Any, shard: Shard, section: Mapping[str, Any], partial_out: str | None, measured: Any
) -> Path:
    """The partial file of ``edgegate bbq run --shard i/n``."""
    from edgegate.environment import HubInput, InputDescription, describe_input, endpoint_input
    from edgegate.partial import default_partial_name, input_identity, software, write_partial

    if measured is None:  # the check measured nothing (e.g. no dense model)
        raise InputError(f"shard {shard[0]}/{shard[1]} scored nothing", field="--shard")
    inputs: list[InputDescription | HubInput] = []
    for role, p in (("dense", ctx.dense_path), ("compressed", ctx.compressed_path)):
        remote = section.get("runtime") == "openai"
        inputs.append(endpoint_input(role, str(p)) if remote else describe_input(role, Path(p)))
    data = str(section.get("data"))
    inputs.append(
        describe_input("bbq_data", Path(data))
        if Path(data).exists()
        else {"role": "bbq_data", "kind": "hub", "path": data}
    )
    fp = {
        "section": {k: v for k, v in section.items() if k != "data"},
        "inputs": [input_identity(d) for d in inputs],
        "software": software(),
        "shard_count": shard[1],
    }
    return write_partial(
        partial_out or default_partial_name(shard),
        command="bbq",
        shard=shard,
        fingerprint=fp,
        payload={"checks": {"bbq": measured}},
    )


@command.command(name="score")
@click.argument("predictions", type=click.Path(path_type=Path))
@click.option(
    "--answer-field", required=True, help="Field holding the predicted answer (dotted for nested)."
)
@click.option(
    "--against",
    type=click.Path(path_type=Path),
    default=None,
    help="Baseline predictions (e.g. the dense model's).",
)
@click.option(
    "--against-field", default=None, help="Answer field in --against (default: --answer-field)."
)
@_with_policy_opts
def score_cmd(
    predictions: Path,
    answer_field: str,
    against: Path | None,
    against_field: str | None,
    as_json: bool,
    allow_inconclusive: bool,
    **policy: Any,
) -> None:
    """Score a predictions file (BBQ rows with answers); with --against, compare to a baseline."""
    result = score_files(
        predictions, answer_field, against, against_field or answer_field, _policy(**policy)
    )
    sys.exit(emit_check_result(result, as_json, allow_inconclusive))


def score_files(
    predictions: Path,
    answer_field: str,
    against: Path | None,
    against_field: str,
    policy: Mapping[str, Any],
) -> CheckResult:
    from edgegate.bbq.evaluation import evaluate, summarize
    from edgegate.bbq.metrics import model_metrics
    from edgegate.bbq.predictions import load_predictions
    from edgegate.bbq.targets import derive_all

    comp = load_predictions(predictions, answer_field)
    base = load_predictions(against, against_field) if against is not None else None
    uids: Sequence[str] = sorted(comp.items)
    if base is not None:
        uids = sorted(set(comp.items) & set(base.items))
        if not uids:
            raise DatasetError(
                "no item in common with --against",
                path=str(against),
                hint="both files must hold the same BBQ items",
            )
    derived = derive_all([comp.items[u] for u in uids])
    keep = set(derived.targets)
    info = {
        "source": str(predictions),
        "condition": ",".join(sorted({it.condition for it in derived.items})) or "-",
        "n_loaded": len(uids),
        "n_used": len(keep),
        "excluded": {"count": len(derived.excluded), "reasons": derived.exclusion_summary()},
    }
    by_uid = {it.uid: it for it in derived.items}
    c_ans = [a for a in comp.answers if a.uid in keep]
    if base is None:
        groups = model_metrics(c_ans, by_uid, derived.targets)
        from dataclasses import asdict

        m = {"data": info, "model": {k: asdict(v) for k, v in groups.items()}}
        o = groups["overall"]
        summary = (
            f"BBQ SRS {fmt_number(o.srs)} USR {fmt_number(o.usr)} over {o.n_valid} valid answers ({o.n_failures} parse failures); "
            "measured only: one file has no baseline, so nothing was judged (pass --against)"
        )
        # one model's rates are a measurement, not a verdict: never printed as PASS
        return CheckResult(
            "bbq", Status.SKIPPED if o.n_valid else Status.INCONCLUSIVE, summary, (), m
        )
    b_ans = [a for a in base.answers if a.uid in keep]
    verdicts, evaluated = evaluate(
        list(derived.items), derived.targets, b_ans, c_ans, bbq_section(policy)
    )
    m = {"data": info, **evaluated}
    return CheckResult.from_verdicts("bbq", verdicts, m, summarize(verdicts, evaluated))
