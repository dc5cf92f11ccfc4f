"""Perplexity of a token stream, and the paired comparison of two models on it.

Chunked mode reproduces llama-perplexity: the stream (tokenized with BOS) is cut into
``n_ctx``-token chunks, each chunk's first token is replaced by BOS, the chunk is evaluated
from an empty cache and only its second half is scored (positions n_ctx/2+1 .. n_ctx-1), so
every scored token sees at least n_ctx/2 tokens of context.

Full mode scores every token: chunks are BOS + (n_ctx-1) text tokens laid end to end, and
every text token is scored once (early tokens of a chunk see little context, so full-mode
perplexity is higher than chunked; the two are not comparable with each other).

Uncertainty: ``se_token`` is llama-perplexity's token-level standard error of the mean NLL
(turned into a PPL error by the delta method); it ignores correlation inside a chunk. The
comparison uses chunks as the independent units: a paired t interval over the per-chunk
difference of mean NLL, exponentiated into a relative PPL change.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgegate.backends.base import Backend
from edgegate.errors import BackendError, InputError
from edgegate.progress import NullProgress, Progress
from edgegate.settings import DEFAULT_BACKEND_TIMEOUT
from edgegate.stats import mean_t_interval

if TYPE_CHECKING:
    from edgegate.backends.pair import ModelPair

Mode = Literal["chunked", "full"]


@dataclass(frozen=True)
class Chunking:
    chunks: tuple[tuple[int, ...], ...]
    first: int  # score tokens[first:] of each chunk
    mode: str
    n_ctx: int
    n_stream_tokens: int


@dataclass(frozen=True)
class PPLResult:
    ppl: float
    se_ppl: float  # token-level (llama-perplexity's) standard error, delta method
    mean_nll: float
    n_chunks: int
    n_scored: int
    n_ctx: int
    mode: str
    chunk_nll: tuple[float, ...]  # mean NLL of each chunk (the paired units)
    seconds: float
    tokens_per_s: float  # evaluated (not just scored) tokens per second
    runtime: str = ""
    model: str = ""


@dataclass(frozen=True)
class PPLComparison:
    dense: PPLResult
    compressed: PPLResult
    relative_change: float  # ppl_c / ppl_d - 1
    ci_low: float
    ci_high: float
    n: int  # paired chunks
    test: str = "paired t interval over chunks of the mean-NLL difference, exponentiated"
    level: float = 0.95
    extra: dict[str, Any] = field(default_factory=dict)


def bos_id(backend: Backend) -> int | None:
    """The BOS the tokenizer adds, if it adds one (probe an empty string)."""
    with_special = backend.tokenize("", add_special=True)
    return int(with_special[0]) if with_special else None


def make_chunks(stream: Sequence[int], n_ctx: int, mode: Mode, bos: int | None) -> Chunking:
    if n_ctx < 4:
        raise InputError(f"n_ctx must be at least 4, got {n_ctx}", field="n_ctx")
    toks = list(stream)
    if mode == "chunked":
        if bos is not None and (not toks or toks[0] != bos):
            toks = [bos, *toks]  # llama-perplexity tokenizes with BOS
        n = len(toks) // n_ctx
        chunks = []
        for i in range(n):
            c = toks[i * n_ctx : (i + 1) * n_ctx]
            if bos is not None:
                c[0] = bos
            chunks.append(tuple(c))
        first = n_ctx // 2 + 1
    elif mode == "full":
        if bos is not None:
            if toks and toks[0] == bos:
                toks = toks[1:]
            step = n_ctx - 1
            chunks = [
                tuple([bos, *toks[s : s + step]]) for s in range(0, len(toks) - step + 1, step)
            ]
        else:
            chunks = [tuple(toks[s : s + n_ctx]) for s in range(0, len(toks) - n_ctx + 1, n_ctx)]
        first = 1
    else:
        raise InputError(
            f"unknown perplexity mode '{mode}'", field="mode", hint="use chunked or full"
        )
    if not chunks:
        raise InputError(
            f"the text has {len(toks)} tokens, fewer than one {n_ctx}-token chunk",
            field="n_ctx",
            hint="use a longer text or a smaller --n-ctx",
        )
    return Chunking(tuple(chunks), first, mode, n_ctx, len(toks))


def perplexity(
    backend: Backend,
    chunking: Chunking,
    *,
    progress: Progress | None = None,
    label: str = "",
) -> PPLResult:
    t0 = time.perf_counter()
    nll_chunks = chunk_nlls(
        backend, chunking, range(len(chunking.chunks)), progress=progress, label=label
    )
    return result_from_nlls(
        nll_chunks,
        n_ctx=chunking.n_ctx,
        mode=chunking.mode,
        n_eval=sum(len(c) for c in chunking.chunks),
        seconds=time.perf_counter() - t0,
        runtime=str(backend.runtime),
        model=str(backend.model_path),
    )


def chunk_nlls(
    backend: Backend,
    chunking: Chunking,
    indices: Sequence[int],
    *,
    progress: Progress | None = None,
    label: str = "",
) -> list[np.ndarray]:
    """Per-token NLL of the scored positions of the chunks ``indices`` (a shard scores a subset)."""
    prog = progress or NullProgress()
    nll_chunks: list[np.ndarray] = []
    with prog.task(f"perplexity {label}".strip(), total=len(indices)) as advance:
        for k in indices:
            chunk = chunking.chunks[k]
            lp = np.asarray(backend.score_tokens(chunk, chunking.first), dtype=np.float64)
            if lp.shape != (len(chunk) - chunking.first,) or not np.all(np.isfinite(lp)):
                raise BackendError(
                    f"{backend.runtime} returned invalid log-probabilities for a chunk"
                )
            nll_chunks.append(-lp)
            advance(1)
    return nll_chunks


def result_from_nlls(
    nll_chunks: Sequence[np.ndarray],
    *,
    n_ctx: int,
    mode: str,
    n_eval: int,
    seconds: float,
    runtime: str = "",
    model: str = "",
) -> PPLResult:
    """Perplexity from every chunk's per-token NLL: the one aggregation a single run and
    ``edgegate merge`` of sharded runs both call."""
    nll = np.concatenate(list(nll_chunks))
    mean = float(nll.mean())
    # llama-perplexity's uncertainty: sqrt(var(nll) / (N - 1)), then ppl * that
    se_nll = float(math.sqrt(max(float((nll**2).mean()) - mean**2, 0.0) / max(nll.size - 1, 1)))
    ppl = math.exp(mean)
    return PPLResult(
        ppl=ppl,
        se_ppl=ppl * se_nll,
        mean_nll=mean,
        n_chunks=len(nll_chunks),
        n_scored=int(nll.size),
        n_ctx=n_ctx,
        mode=mode,
        chunk_nll=tuple(float(c.mean()) for c in nll_chunks),
        seconds=seconds,
        tokens_per_s=n_eval / seconds if seconds > 0 else math.nan,
        runtime=runtime,
        model=model,
    )


def compare(dense: PPLResult, compressed: PPLResult, level: float = 0.95) -> PPLComparison:
    if dense.n_chunks != compressed.n_chunks or dense.n_scored != compressed.n_scored:
        raise InputError("the two perplexity runs did not score the same tokens")
    diff = np.asarray(compressed.chunk_nll) - np.asarray(dense.chunk_nll)
    # equal scored tokens per chunk, so the mean of chunk means is the overall mean NLL
    _, lo, hi = mean_t_interval(diff, level)
    rel = compressed.ppl / dense.ppl - 1.0
    return PPLComparison(
        dense,
        compressed,
        rel,
        math.expm1(lo) if math.isfinite(lo) else math.nan,
        math.expm1(hi) if math.isfinite(hi) else math.nan,
        int(diff.size),
        level=level,
    )


def compare_models(
    dense: Backend,
    compressed: Backend,
    text: str,
    *,
    n_ctx: int,
    mode: Mode = "chunked",
    progress: Progress | None = None,
) -> PPLComparison:
    """Tokenize ``text`` once with the dense model's tokenizer and score both models on the
    very same chunks. The caller checks that the tokenizers match (edgegate.backends.tokenizer)."""
    chunking = chunk_text(dense, text, n_ctx, mode)
    d = perplexity(dense, chunking, progress=progress, label="dense")
    c = perplexity(compressed, chunking, progress=progress, label="compressed")
    return compare(d, c)


def chunk_text(backend: Backend, text: str, n_ctx: int, mode: Mode) -> Chunking:
    """The chunks both models are scored on (tokenized by ``backend``, the dense model)."""
    return make_chunks(backend.tokenize(text, add_special=False), n_ctx, mode, bos_id(backend))


def default_text() -> str:
    from importlib.resources import files

    return files("edgegate").joinpath("data/eval_text.txt").read_text(encoding="utf-8")


def load_dataset_text(name: str, *, split: str = "test", config: str | None = None) -> str:
    """Join a hub dataset's text column (lazily imports ``datasets``; e.g. 'wikitext' with
    config 'wikitext-2-raw-v1')."""
    try:
        import datasets
    except ImportError as exc:
        raise InputError(
            "--dataset needs the 'datasets' package",
            hint="pip install 'edgegate[hub]' or pass --text FILE",
        ) from exc
    if name == "wikitext" and config is None:
        config = "wikitext-2-raw-v1"
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # network, missing dataset, bad split: all user-fixable
        raise InputError(f"cannot load dataset '{name}': {exc}", field="dataset") from exc
    column = "text" if "text" in ds.column_names else ds.column_names[0]
    return "\n\n".join(str(t) for t in ds[column])


def run_ppl(
    dense_path: str | Path,
    compressed_path: str | Path,
    *,
    runtime: str = "llamacpp",
    text: str | None = None,
    n_ctx: int = 512,
    mode: Mode = "chunked",
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = DEFAULT_BACKEND_TIMEOUT,
    progress: Progress | None = None,
) -> PPLComparison:
    """Open both models on ``runtime`` (each in its own process, ``timeout`` seconds per call),
    refuse differing tokenizers (InputError, exit 2), and compare them on ``text`` (default:
    the embedded evaluation text)."""
    from edgegate.backends.pair import OpenSettings, open_pair

    body = evaluation_text(text)
    settings = OpenSettings(n_ctx=n_ctx, threads=threads, cache_dir=cache_dir, timeout=timeout)
    with open_pair(runtime, (dense_path, compressed_path), settings) as pair:
        extra = same_tokenizer(pair, body)
        result = compare_models(
            pair.dense, pair.compressed, body, n_ctx=n_ctx, mode=mode, progress=progress
        )
        result.extra.update(extra)
        return result


def evaluation_text(text: str | None) -> str:
    """``text``, or the embedded evaluation text when None; an empty text is an input error."""
    body = default_text() if text is None else text
    if not body.strip():
        raise InputError("the evaluation text is empty", field="text")
    return body


def same_tokenizer(pair: ModelPair, body: str) -> dict[str, Any]:
    """Open both models of ``pair`` and prove their tokenizers identical on ``body`` (both
    must score the same token stream); returns what the report records about them."""
    from edgegate.backends.tokenizer import require_same_tokenizer

    dense, comp = pair.dense, pair.compressed
    tok = require_same_tokenizer(dense, comp, (body[:2000],))
    return {
        "tokenizer_probes": tok.probes,
        "dense_model": dense.info(),
        "compressed_model": comp.info(),
    }
