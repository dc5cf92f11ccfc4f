"""Fidelity: how far the compressed model's next-token distribution moves from the dense one's,
token by token, on the very tokens perplexity scores.

Two models can share a perplexity and still disagree on many tokens (one gains where the other
loses). Per scored token t, with P the dense and Q the compressed next-token distribution:

- KL(P || Q) = sum over the whole vocabulary of p(v) (log p(v) - log q(v)), from the runtime's
  float32 logits (max subtracted first: no overflow, no underflow into log 0; exponentials in
  float32, sums in float64: ``compare_rows``); a negative rounding residue is clipped to 0;
- top-1 agreement: both models' most likely next token is the same;
- each model's probability of the token that actually follows (exp of its perplexity NLL).

Memory: the logits of a chunk stay in each model's own process (the pass that scores
perplexity keeps them, ``Backend.score_tokens_kept``); this process reads ``ROW_BUDGET`` floats
of each at a time and keeps only the per-token numbers (Gemma's 262,144-token vocabulary makes
a 512-token chunk 0.5 GB in float32). Side by side, it holds at most ``HANDOVER_BUDGET`` floats
of each model's chunk, to compare them while both models score the next chunk.

Statistics: tokens of one chunk share their context, so chunks are the independent units:
every aggregate gets a 95% bootstrap CI with chunks resampled (the same chunks for both models:
paired), BCa from ``scipy.stats.bootstrap``; n = chunks.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgegate.backends.together import Both
from edgegate.errors import BackendError, InputError
from edgegate.progress import NullProgress, Progress
from edgegate.settings import DEFAULT_BACKEND_TIMEOUT

if TYPE_CHECKING:
    from edgegate.backends.base import Backend
    from edgegate.perplexity import Chunking, PPLComparison

# floats of one model's logits per read: 16 rows of a 262k vocabulary (64 MB once in float64)
ROW_BUDGET = 1 << 22
# floats of one model's chunk handed over to this process (side by side) to be compared while
# the models score the next chunk: 256 rows of a 262k vocabulary, 256 MiB in float32 per model,
# so 512 MiB for both at most (a 512-token chunk scores 255 rows: all of it); the rows beyond
# are compared before the next chunk is scored, the models waiting as they do in turn
HANDOVER_BUDGET = 1 << 26
TEST = "paired bootstrap over chunks (BCa, scipy.stats.bootstrap; chunks resampled, n = chunks)"
QUANTILES = {"median_kl": 0.5, "p90_kl": 0.9, "p99_kl": 0.99, "p999_kl": 0.999}


def _exp_shifted(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: exp(x - max) in float32 (numpy's vectorized exp), its sum accumulated in float64,
    and the log-sum-exp in float64."""
    m = x.max(axis=1, keepdims=True)
    e = x - m
    np.exp(e, out=e)
    s = e.sum(axis=1, dtype=np.float64)
    return e, s, m[:, 0].astype(np.float64) + np.log(s)


def compare_rows(dense: np.ndarray, comp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(KL(dense || compressed) per row in nats, top-1 agreement per row) of two blocks of
    logits [rows, vocab]. Identical rows give exactly 0 and True.

    KL = sum p (d - c) - (lse_d - lse_c), with p = exp(d - lse_d): the exponentials and the
    products in float32, every sum and the log-sum-exps in float64. It agrees with a float64
    log-softmax of the same logits to 1e-7 nats plus 1e-6 of the value per token (measured on
    real gemma-3-270m logits, Q8_0 and 50% pruned: at most 4e-8 and 1e-6 nats), far below any
    threshold, at a third of the cost; this process compares while both models share its cores."""
    if dense.shape != comp.shape:
        raise InputError(
            f"the two models' logits differ in shape: {dense.shape} vs {comp.shape}",
            hint="both models must have the same vocabulary",
        )
    d = np.asarray(dense, dtype=np.float32)
    c = np.asarray(comp, dtype=np.float32)
    agree = np.argmax(d, axis=1) == np.argmax(c, axis=1)
    e, s, lse_d = _exp_shifted(d)
    lse_c = _exp_shifted(c)[2]
    weighted = d - c  # exact 0 where the logits agree, so identical rows give exactly 0
    weighted *= e
    kl = weighted.sum(axis=1, dtype=np.float64) / s - (lse_d - lse_c)
    return np.maximum(kl, 0.0), agree


@dataclass(frozen=True)
class ChunkScores:
    """Per scored token of one chunk: both models' NLL (perplexity) and, with fidelity, the KL
    and top-1 agreement."""

    nll_dense: np.ndarray
    nll_compressed: np.ndarray
    kl: np.ndarray
    top1: np.ndarray


@dataclass(frozen=True)
class PassResult:
    chunks: tuple[ChunkScores, ...]
    # per model ("dense", "compressed"): the wall time of its forward passes; "compare": this
    # process reading and comparing the logits. Side by side, a chunk is compared while both
    # models score the next one: the three overlap, so their sum exceeds the pass's wall time
    # (and the forward passes, sharing the cores with the comparison, take a little longer)
    seconds: dict[str, float]


def scored_pass(
    dense: Backend,
    comp: Backend,
    chunking: Chunking,
    indices: Sequence[int],
    *,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
    side_by_side: bool = False,
) -> PassResult:
    """Score the chunks ``indices`` with both models, keeping each chunk's logits in the
    models' processes just long enough to compare them ``ROW_BUDGET`` floats at a time.
    ``side_by_side``: the two processes score (and hand over logits) at the same time, where
    the cores hold both (backends/pool.py), and a chunk's logits, once handed over (up to
    ``HANDOVER_BUDGET`` floats per model), are compared while both score the next chunk; in
    turn, each chunk is scored and then compared. The numbers are the same either way: every
    block of rows is compared by the same call on the same bits."""
    if dense.n_vocab != comp.n_vocab or dense.n_vocab <= 0:
        raise InputError(
            f"the models' vocabularies differ ({dense.n_vocab:,} vs {comp.n_vocab:,} tokens): "
            "KL over the vocabulary needs the same one",
            field="checks.fidelity",
            hint="compare models that share a tokenizer and output layer",
        )
    rows = max(1, ROW_BUDGET // dense.n_vocab)
    held = HANDOVER_BUDGET // dense.n_vocab if side_by_side else 0  # rows handed over
    seconds = {"dense": 0.0, "compressed": 0.0, "compare": 0.0}
    out: list[ChunkScores] = []
    prog = progress or NullProgress()
    score = partial(_chunk_nll, first=chunking.first, clock=clock)
    todo = [chunking.chunks[k] for k in indices]
    with (
        Both(dense, comp, side_by_side) as both,
        prog.task("perplexity + fidelity", total=len(todo)) as advance,
    ):
        scoring = both.start(partial(score, chunk=todo[0])) if todo else None
        for i, chunk in enumerate(todo):
            assert scoring is not None
            (nll_d, s_d), (nll_c, s_c) = scoring.result()
            seconds["dense"] += s_d
            seconds["compressed"] += s_c
            n = len(chunk) - chunking.first
            kl, top1 = np.empty(n, dtype=np.float64), np.empty(n, dtype=bool)
            blocks = [(a, min(n, a + rows)) for a in range(0, n, rows)]
            t0 = clock()
            handed = [
                (a, b, *both(partial(_kept, start=a, stop=b))) for a, b in blocks if b <= held
            ]
            for a, b in blocks[len(handed) :]:
                d, c = both(partial(_kept, start=a, stop=b))
                kl[a:b], top1[a:b] = compare_rows(d, c)
            t1 = clock()
            if i + 1 < len(todo):  # side by side both score the next chunk from here on
                scoring = both.start(partial(score, chunk=todo[i + 1]))
            t2 = clock()
            for a, b, d, c in handed:
                kl[a:b], top1[a:b] = compare_rows(d, c)
            del handed  # this chunk's logits, before the next chunk's are read
            seconds["compare"] += (t1 - t0) + (clock() - t2)
            out.append(ChunkScores(nll_d, nll_c, kl, top1))
            advance(1)
    return PassResult(tuple(out), seconds)


def _chunk_nll(
    be: Backend, *, chunk: Sequence[int], first: int, clock: Callable[[], float]
) -> tuple[np.ndarray, float]:
    """One model's per-token NLLs of a chunk (its logits kept in its process), and the time."""
    t0 = clock()
    lp = np.asarray(be.score_tokens_kept(chunk, first), dtype=np.float64)
    if lp.shape != (len(chunk) - first,) or not np.all(np.isfinite(lp)):
        raise BackendError(f"{be.runtime} returned invalid log-probabilities for a chunk")
    return -lp, clock() - t0


def _kept(be: Backend, *, start: int, stop: int) -> np.ndarray:
    return np.asarray(be.kept_logits(start, stop))


# -- aggregation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class FidelityResult:
    n_chunks: int
    n_tokens: int
    mean_kl: Estimate  # nats per token
    median_kl: Estimate
    p90_kl: Estimate
    p99_kl: Estimate
    p999_kl: Estimate
    max_kl: float
    top1_agreement: Estimate  # share of tokens whose most likely next token is the same
    p_ref_dense: Estimate  # mean probability of the token that follows, dense
    p_ref_compressed: Estimate
    delta_p: Estimate  # mean of p_compressed(ref) - p_dense(ref)
    resamples: int
    seed: int
    level: float = 0.95
    test: str = TEST


Rows = Sequence[Any]  # one sequence of per-token values per chunk (lists or arrays)


def summarize(
    kl: Rows,
    top1: Rows,
    nll_dense: Rows,
    nll_compressed: Rows,
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> FidelityResult:
    """Every aggregate of the per-token numbers (one row per chunk) with its bootstrap CI."""
    K = _matrix(kl)
    A = _matrix(top1)
    Pd, Pc = np.exp(-_matrix(nll_dense)), np.exp(-_matrix(nll_compressed))
    if not (K.shape == A.shape == Pd.shape == Pc.shape) or K.size == 0:
        raise InputError(
            "fidelity: the per-token records of the chunks do not line up", field="checks.fidelity"
        )
    dp = Pc - Pd

    def boot(m: np.ndarray, q: float | None) -> Estimate:
        return _bootstrap(m, q, resamples=resamples, seed=seed, level=level)

    return FidelityResult(
        n_chunks=K.shape[0],
        n_tokens=int(K.size),
        mean_kl=boot(K, None),
        median_kl=boot(K, QUANTILES["median_kl"]),
        p90_kl=boot(K, QUANTILES["p90_kl"]),
        p99_kl=boot(K, QUANTILES["p99_kl"]),
        p999_kl=boot(K, QUANTILES["p999_kl"]),
        max_kl=float(K.max()),
        top1_agreement=boot(A, None),
        p_ref_dense=boot(Pd, None),
        p_ref_compressed=boot(Pc, None),
        delta_p=boot(dp, None),
        resamples=resamples,
        seed=seed,
        level=level,
    )


def _matrix(rows: Rows) -> np.ndarray:
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:  # every chunk scores the same number of tokens (ppl.make_chunks)
        raise InputError(
            f"fidelity: chunks of different lengths {sorted(lengths)[:4]}", field="checks.fidelity"
        )
    return np.asarray([np.asarray(r, dtype=np.float64) for r in rows], dtype=np.float64).reshape(
        len(rows), -1
    )


def _pooled(m: np.ndarray, q: float | None) -> Callable[..., np.ndarray]:
    """The statistic over the tokens of the chunks whose indices a resample drew (any batch shape)."""

    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        flat = m[np.asarray(idx, dtype=np.int64)].reshape(*np.shape(idx)[:-1], -1)
        return flat.mean(axis=-1) if q is None else np.quantile(flat, q, axis=-1)

    return stat


def _bootstrap(
    m: np.ndarray, q: float | None, *, resamples: int, seed: int, level: float
) -> Estimate:
    from scipy import stats as sps

    n = m.shape[0]
    stat = _pooled(m, q)
    point = float(stat(np.arange(n)))
    if n < 2:
        return Estimate(point, math.nan, math.nan)
    if np.all(m == m.flat[0]):  # every token the same (an A/A run): every resample is this value
        return Estimate(point, point, point)
    batch = max(1, 4_000_000 // m.size)  # bounded memory: ~4M floats per batch of resamples
    lo = hi = math.nan
    for method in ("BCa", "percentile"):  # BCa is undefined when the jackknife is flat
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = sps.bootstrap(
                (np.arange(n),),
                stat,
                n_resamples=resamples,
                confidence_level=level,
                method=method,
                vectorized=True,
                batch=batch,
                random_state=seed,
            )
        lo, hi = float(r.confidence_interval.low), float(r.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            break
    return Estimate(point, lo, hi)


def result_dict(res: FidelityResult) -> dict[str, Any]:
    from dataclasses import asdict

    from edgegate.results import jsonable

    out: dict[str, Any] = jsonable(asdict(res))
    return out


def run_kl(
    dense_path: str | Path,
    compressed_path: str | Path,
    *,
    runtime: str = "llamacpp",
    text: str | None = None,
    n_ctx: int = 512,
    mode: str = "chunked",
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = DEFAULT_BACKEND_TIMEOUT,
    progress: Progress | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[PPLComparison, FidelityResult]:
    """``ppl.run_ppl`` and the fidelity of the pair from the same pass: (perplexity
    comparison, fidelity). Tokenizers must agree (InputError, exit 2)."""
    from edgegate import perplexity as ppl
    from edgegate.backends.pair import OpenSettings, open_pair

    body = ppl.evaluation_text(text)
    opening = OpenSettings(n_ctx=n_ctx, threads=threads, cache_dir=cache_dir, timeout=timeout)
    with open_pair(runtime, (dense_path, compressed_path), opening) as pair:
        extra = ppl.same_tokenizer(pair, body)
        chunking = ppl.chunk_text(pair.dense, body, n_ctx, mode)  # type: ignore[arg-type]
        res = scored_pass(
            pair.dense, pair.compressed, chunking, range(len(chunking.chunks)), progress=progress
        )
        ident = {
            role: (str(be.runtime), str(be.model_path))
            for role, be in (("dense", pair.dense), ("compressed", pair.compressed))
        }
    n_eval = sum(len(c) for c in chunking.chunks)
    results = [
        ppl.result_from_nlls(
            [getattr(c, f"nll_{role}") for c in res.chunks],
            n_ctx=n_ctx,
            mode=mode,
            n_eval=n_eval,
            seconds=res.seconds[role],
            runtime=ident[role][0],
            model=ident[role][1],
        )
        for role in ("dense", "compressed")
    ]
    cmp = ppl.compare(results[0], results[1])
    cmp.extra.update(extra)
    fid = summarize(
        [c.kl for c in res.chunks],
        [c.top1 for c in res.chunks],
        [c.nll_dense for c in res.chunks],
        [c.nll_compressed for c in res.chunks],
        resamples=resamples,
        seed=seed,
    )
    return cmp, fid


def text_lines(res: FidelityResult) -> list[str]:
    """The one-screen summary `edgegate ppl --kl` prints."""

    def ci(e: Estimate, f: str = ".4g") -> str:
        return f"{e.value:{f}} [{e.ci_low:{f}}, {e.ci_high:{f}}]"

    return [
        f"KL(dense||compressed) nats/token: mean {ci(res.mean_kl)}  median {ci(res.median_kl)}",
        f"  p90 {ci(res.p90_kl)}  p99 {ci(res.p99_kl)}  p99.9 {ci(res.p999_kl)}  max {res.max_kl:.4g}",
        f"top-1 agreement {ci(res.top1_agreement, '.2%')}; p(next token) dense {res.p_ref_dense.value:.4f} "
        f"-> compressed {res.p_ref_compressed.value:.4f} (Δp {ci(res.delta_p, '+.4f')})",
        f"(95% CIs; n={res.n_chunks} chunks, {res.n_tokens} tokens; {res.test})",
    ]
