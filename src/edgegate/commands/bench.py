"""`edgegate bench DENSE COMPRESSED`: interleaved latency/throughput comparison per runtime.

stdout: a table of medians and speedups with 95% CIs, or the full result (raw samples
included) with --json. Progress on stderr. A runtime that is not installed is reported as
skipped; exit 3 when every requested runtime failed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgegate.backends import LOCAL_RUNTIME_CHOICES
from edgegate.errors import BackendError, BackendUnavailable, ExitCode, InputError
from edgegate.escape import terminal
from edgegate.policy import check_default

if TYPE_CHECKING:
    from edgegate.backends.auto import RuntimeChoice
    from edgegate.speed.bench import BenchConfig
    from edgegate.speed.mechanism import Mechanism


def _runtimes(
    values: tuple[str, ...], dense: Path, compressed: Path
) -> tuple[list[str], RuntimeChoice | None]:
    """The runtimes to time, with ``auto`` resolved for the pair, and that choice."""
    from edgegate.backends import parse_runtimes
    from edgegate.backends.auto import AUTO, resolve_pair

    names = list(parse_runtimes(values) or check_default("speed", "runtimes"))
    choice = resolve_pair(dense, compressed) if AUTO in names else None
    if choice is not None:
        names = [choice.runtime if n == AUTO else n for n in names]
    return list(dict.fromkeys(names)), choice


def _mb(b: int | None) -> str:
    return f"{b / 2**20:.0f} MiB" if b else "n/a"


@click.command(name="bench")
@click.argument("dense", type=click.Path(path_type=Path))
@click.argument("compressed", type=click.Path(path_type=Path))
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    metavar="NAMES",
    help=f"Comma-separated runtimes: {', '.join(LOCAL_RUNTIME_CHOICES)} (auto: where the compressed model "
    "ships, the default; those that cannot load the paths are skipped).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Threads per model (also pins both to the same CPUs).",
)
@click.option(
    "--repetitions",
    type=click.IntRange(min=2),
    default=check_default("speed", "repetitions"),
    show_default=True,
    help="Measured runs per model, interleaved dense/compressed in ABBA order.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=check_default("speed", "warmup"),
    show_default=True,
    help="Unmeasured runs per model first.",
)
@click.option(
    "--prompt-tokens",
    type=click.IntRange(min=1),
    default=check_default("speed", "prompt_tokens"),
    show_default=True,
    help="Prefill length (random ids, fixed seed).",
)
@click.option(
    "--gen-tokens",
    type=click.IntRange(min=1),
    default=check_default("speed", "gen_tokens"),
    show_default=True,
    help="Greedy decode steps.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the random prompt.",
)
@click.option("--no-pin", is_flag=True, help="Do not pin the model processes to CPUs.")
@click.option(
    "--cache-dir", type=click.Path(path_type=Path), help="Where converted GGUF files are cached."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=1800,
    show_default=True,
    help="Seconds one runtime call may take before it is treated as hung.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Machine-readable result (raw samples included) on stdout.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def command(
    dense: Path,
    compressed: Path,
    runtimes: tuple[str, ...],
    threads: int | None,
    repetitions: int,
    warmup: int,
    prompt_tokens: int,
    gen_tokens: int,
    seed: int,
    no_pin: bool,
    cache_dir: Path | None,
    timeout: float,
    as_json: bool,
    quiet: bool,
) -> None:
    """Prefill/decode throughput, TTFT, peak RSS and load time of DENSE vs COMPRESSED."""
    from edgegate.progress import make_progress
    from edgegate.speed.bench import BenchConfig, bench_runtime
    from edgegate.speed.mechanism import speed_mechanism

    for role, p in (("dense checkpoint", dense), ("compressed checkpoint", compressed)):
        if not p.exists():
            raise InputError(f"{role} not found", path=p)
    names, choice = _runtimes(runtimes, dense, compressed)
    if choice is not None and not quiet:
        click.echo(f"edgegate: auto -> {choice.runtime}: {terminal(choice.reason)}", err=True)
    cfg = BenchConfig(
        prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens,
        repetitions=repetitions,
        warmup=warmup,
        threads=threads,
        seed=seed,
        pin=not no_pin,
        timeout=timeout,
        cache_dir=str(cache_dir) if cache_dir else None,
    )
    progress = make_progress(quiet)
    results: dict[str, Any] = {}
    mechanisms: dict[str, Mechanism] = {}
    failures: list[BackendError] = []
    from edgegate.backends import supports

    for rt in names:
        why = supports(rt, dense) or supports(rt, compressed)
        if why:
            results[rt] = {"skipped": f"cannot load these paths ({why})"}
            if not quiet:
                click.echo(f"edgegate: {rt} skipped: {terminal(why)}", err=True)
            continue
        try:
            results[rt] = bench_runtime(rt, dense, compressed, cfg, progress=progress)
            mechanisms[rt] = speed_mechanism(dense, compressed, rt)
        except BackendUnavailable as exc:
            results[rt] = {"skipped": exc.one_line()}
            if not quiet:
                click.echo(f"edgegate: {rt} skipped: {terminal(exc.one_line())}", err=True)
        except BackendError as exc:
            results[rt] = {"error": exc.to_dict()}
            failures.append(exc)
            click.echo(f"edgegate: {rt} failed: {terminal(exc.one_line())}", err=True)
    _write_results(results, mechanisms, cfg, choice, as_json=as_json)
    if failures and all(isinstance(r, dict) for r in results.values()):
        raise failures[0]
    if all(isinstance(r, dict) for r in results.values()):
        click.echo("edgegate: error: no runtime could be measured", err=True)
        sys.exit(int(ExitCode.RUNTIME_ERROR))


def _write_results(
    results: dict[str, Any],
    mechanisms: dict[str, Mechanism],
    cfg: BenchConfig,
    choice: RuntimeChoice | None,
    *,
    as_json: bool,
) -> None:
    """Each runtime's result on stdout: the JSON document, or the table with each mechanism's reason."""
    from edgegate.results import jsonable

    if as_json:
        out = {
            rt: (jsonable(asdict(r)) if not isinstance(r, dict) else r) for rt, r in results.items()
        }
        for rt, mech in mechanisms.items():
            out[rt]["mechanism"] = mech.to_dict()
            out[rt]["load"] = results[rt].load.to_dict() if results[rt].load is not None else None
        doc: dict[str, Any] = {"config": asdict(cfg), "runtimes": out}
        if choice is not None:
            doc["runtime_choice"] = choice.as_dict()
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(
            "\n".join(map(terminal, _table(results).split("\n"))) + "\n"
        )  # errors quote paths
        for rt, mech in mechanisms.items():
            sys.stdout.write(terminal(f"{rt}: {mech.reason}") + "\n")


def _table(results: dict[str, Any]) -> str:
    lines = [
        "| runtime | model | prefill tok/s | decode tok/s | TTFT ms | load s | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    notes: list[str] = []
    for rt, r in results.items():
        if isinstance(r, dict):
            notes.append(f"{rt}: {r.get('skipped') or r['error']['message']}")
            continue
        for m in ("dense", "compressed"):
            med = r.medians[m]
            info = r.dense if m == "dense" else r.compressed
            lines.append(
                f"| {rt} | {m} | {med['prefill_tps']:.1f} | {med['decode_tps']:.1f} | "
                f"{med['ttft_s'] * 1000:.1f} | {float(info['load_s']):.2f} | {_mb(r.peak_rss_bytes[m])} |"
            )
        for key, label in (("prefill_tps", "prefill"), ("decode_tps", "decode"), ("ttft", "TTFT")):
            s = r.speedups[key]
            notes.append(
                f"{rt} {label} speedup {s.point:.3f}x [95% CI {s.ci_low:.3f}, {s.ci_high:.3f}] (n={s.n})"
            )
        notes.append(
            f"{rt} threads={r.dense.get('threads')} cpus={list(r.cpus) if r.cpus else 'unpinned'} "
            f"prompt={r.config.prompt_tokens} gen={r.config.gen_tokens} reps={r.config.repetitions} "
            f"warmup={r.config.warmup}" + ("".join(f"; {n}" for n in r.notes))
        )
    return "\n".join([*lines, "", *notes])
