"""`edgegate ppl DENSE COMPRESSED`: perplexity of both models on the same token stream (with
--kl, also the token-level fidelity of the compressed model's distributions, same pass).

stdout: a one-screen text summary, or the full result with --json. Progress on stderr.
Exit 2 when the tokenizers differ or the text is too short; 3 when the runtime fails.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgegate.backends import AUTO, LOCAL_RUNTIME_CHOICES
from edgegate.errors import InputError
from edgegate.policy import check_default

if TYPE_CHECKING:
    from edgegate.backends.auto import RuntimeChoice
    from edgegate.fidelity import FidelityResult
    from edgegate.perplexity import PPLComparison

MAX_TEXT_BYTES = 256 << 20


def comparison_dict(cmp: Any) -> dict[str, Any]:
    from edgegate.results import jsonable

    out: dict[str, Any] = jsonable(asdict(cmp))
    return out


@click.command(name="ppl")
@click.argument("dense", type=click.Path(path_type=Path))
@click.argument("compressed", type=click.Path(path_type=Path))
@click.option(
    "--runtime",
    default=check_default("perplexity", "runtime"),
    show_default=True,
    type=click.Choice(LOCAL_RUNTIME_CHOICES),
    help="Runtime that scores the tokens (auto: where the compressed model ships).",
)
@click.option(
    "--text",
    "text_file",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="UTF-8 text to score (default: edgegate's embedded evaluation text).",
)
@click.option(
    "--dataset",
    metavar="NAME",
    help="A hub dataset's test split instead (needs edgegate[hub]), e.g. wikitext.",
)
@click.option(
    "--dataset-config", metavar="NAME", help="The dataset's config, e.g. wikitext-2-raw-v1."
)
@click.option(
    "--n-ctx",
    type=click.IntRange(min=4),
    default=check_default("perplexity", "n_ctx"),
    show_default=True,
    help="Chunk size in tokens.",
)
@click.option(
    "--mode",
    type=click.Choice(["chunked", "full"]),
    default=check_default("perplexity", "mode"),
    show_default=True,
    help="chunked: llama-perplexity's method (score the second half of each chunk); full: score every token.",
)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the runtime.")
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
    "--max-retries",
    "http_retries",
    type=click.IntRange(0, 100),
    default=None,
    metavar="N",
    help="Retries per request for --runtime openai (default 5); --timeout also bounds each request.",
)
@click.option(
    "--kl",
    "with_kl",
    is_flag=True,
    help="Also compare the two next-token distributions in the same pass: KL divergence, top-1 agreement.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def command(
    dense: Path,
    compressed: Path,
    runtime: str,
    text_file: Path | None,
    dataset: str | None,
    dataset_config: str | None,
    n_ctx: int,
    mode: str,
    threads: int | None,
    cache_dir: Path | None,
    timeout: float,
    http_retries: int | None,
    with_kl: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Perplexity of DENSE and COMPRESSED, and the relative change with a paired CI."""
    from edgegate.perplexity import run_ppl
    from edgegate.progress import make_progress

    text = _checked_text(dense, compressed, text_file, dataset, dataset_config)
    from edgegate.backends._http import http_settings
    from edgegate.backends.auto import resolve_pair

    requested = runtime  # resolve `auto` once for the pair (backends/auto.py)
    choice = resolve_pair(dense, compressed, runtime)
    runtime = choice.runtime
    fid = None
    with http_settings(
        max_retries=http_retries
    ):  # a hung server is bounded; --timeout bounds each request via open_backend
        if with_kl:  # one pass: perplexity and the distributions compared as each chunk is scored
            from edgegate.fidelity import run_kl

            cmp, fid = run_kl(
                dense,
                compressed,
                runtime=runtime,
                text=text,
                n_ctx=n_ctx,
                mode=mode,
                threads=threads,
                cache_dir=cache_dir,
                timeout=timeout,
                progress=make_progress(quiet),
            )
        else:
            cmp = run_ppl(
                dense,
                compressed,
                runtime=runtime,
                text=text,
                n_ctx=n_ctx,
                mode=mode,  # type: ignore[arg-type]
                threads=threads,
                cache_dir=cache_dir,
                timeout=timeout,
                progress=make_progress(quiet),
            )
    _write_result(cmp, fid, choice, runtime=runtime, requested=requested, as_json=as_json)


def _checked_text(
    dense: Path,
    compressed: Path,
    text_file: Path | None,
    dataset: str | None,
    dataset_config: str | None,
) -> str | None:
    """Refuse missing checkpoints and a double text source; the text to score (None: the
    embedded evaluation text)."""
    from edgegate.perplexity import load_dataset_text

    for role, p in (("dense checkpoint", dense), ("compressed checkpoint", compressed)):
        if not p.exists():
            raise InputError(f"{role} not found", path=p)
    if text_file and dataset:
        raise InputError("give either --text or --dataset, not both", field="--text/--dataset")
    text: str | None = None
    if text_file:
        from edgegate.safe_read import read_text

        # a FIFO or /dev/zero is refused before reading; a real evaluation text is a few MB
        text = read_text(
            text_file,
            max_bytes=MAX_TEXT_BYTES,
            what="text file",
            field="--text",
            hint="pass a UTF-8 text file",
        )
    elif dataset:
        text = load_dataset_text(dataset, config=dataset_config)
    return text


def _write_result(
    cmp: PPLComparison,
    fid: FidelityResult | None,
    choice: RuntimeChoice,
    *,
    runtime: str,
    requested: str,
    as_json: bool,
) -> None:
    """The comparison (and the fidelity with --kl) on stdout: JSON, or the one-screen text."""
    if as_json:  # the runtime auto chose and why travel with the numbers
        from edgegate.fidelity import result_dict

        kl = {"fidelity": result_dict(fid)} if fid is not None else {}
        sys.stdout.write(
            json.dumps({**comparison_dict(cmp), **kl, "runtime_choice": choice.as_dict()}, indent=2)
            + "\n"
        )
        return
    d, c = cmp.dense, cmp.compressed
    lines = [
        f"runtime {runtime}"
        + (f" (auto: {choice.reason})" if requested == AUTO else "")
        + f", mode {d.mode}, n_ctx {d.n_ctx}: {d.n_chunks} chunks, {d.n_scored} scored tokens",
        f"dense       PPL {d.ppl:.4f} ± {d.se_ppl:.4f}   ({d.tokens_per_s:.0f} tok/s)",
        f"compressed  PPL {c.ppl:.4f} ± {c.se_ppl:.4f}   ({c.tokens_per_s:.0f} tok/s)",
        f"relative change {cmp.relative_change:+.2%}  95% CI [{cmp.ci_low:+.2%}, {cmp.ci_high:+.2%}]  "
        f"(n={cmp.n} chunks; {cmp.test})",
    ]
    if fid is not None:
        from edgegate.fidelity import text_lines

        lines += text_lines(fid)
    from edgegate.escape import terminal

    sys.stdout.write("\n".join(map(terminal, lines)) + "\n")  # the reason quotes paths
