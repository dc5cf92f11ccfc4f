"""edgegate's llama.cpp perplexity throughput vs a bare llama-cpp-python eval loop.

Both score the same chunks of the same token stream (llama-perplexity chunking: n_ctx chunks,
second half scored) in the same process, alternating runs so drift hits both. The baseline
is what a user would write by hand: Llama(logits_all=True), reset + eval per chunk, then a
numpy log-softmax of the scored rows. Goal: edgegate >= 0.9x the baseline's tokens/s.

    python benchmarks/ppl_speed.py [--model X.gguf] [--n-ctx 512] [--threads 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def bare_ppl(llm, chunks: tuple[tuple[int, ...], ...], first: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    nll_sum, n = 0.0, 0
    for chunk in chunks:
        llm.reset()
        llm.eval(list(chunk))
        logits = np.asarray(llm.scores[first - 1 : len(chunk) - 1], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
        tgt = np.asarray(chunk[first:])
        nll_sum += float((lse - logits[np.arange(len(tgt)), tgt]).sum())
        n += len(tgt)
    dt = time.perf_counter() - t0
    return math.exp(nll_sum / n), sum(len(c) for c in chunks) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "fixtures/models/gguf/dense-f16.gguf")
    ap.add_argument("--text", type=Path, default=None, help="default: the embedded evaluation text")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import llama_cpp

    from edgegate.backends import open_backend
    from edgegate.perplexity import bos_id, default_text, make_chunks, perplexity

    text = args.text.read_text(encoding="utf-8") if args.text else default_text()
    eg = open_backend("llamacpp", args.model, n_ctx=args.n_ctx, threads=args.threads)
    chunking = make_chunks(eg.tokenize(text, add_special=False), args.n_ctx, "chunked", bos_id(eg))
    bare = llama_cpp.Llama(
        model_path=str(args.model),
        n_ctx=args.n_ctx,
        n_batch=min(args.n_ctx, 512),
        n_ubatch=min(args.n_ctx, 512),
        n_threads=args.threads,
        n_threads_batch=args.threads,
        logits_all=True,
        verbose=False,
    )
    ours, base = [], []
    p_ours = p_base = math.nan
    for _ in range(args.rounds):
        p_base, tps = bare_ppl(bare, chunking.chunks, chunking.first)
        base.append(tps)
        r = perplexity(eg, chunking)
        p_ours = r.ppl
        ours.append(r.tokens_per_s)
    ratio = statistics.median(ours) / statistics.median(base)
    print(
        f"model {args.model.name}, n_ctx {args.n_ctx}, {len(chunking.chunks)} chunks, threads {args.threads}, "
        f"rounds {args.rounds}"
    )
    print(
        f"bare llama-cpp-python eval loop: {statistics.median(base):9.1f} tok/s   PPL {p_base:.4f}"
    )
    print(
        f"edgegate perplexity:             {statistics.median(ours):9.1f} tok/s   PPL {p_ours:.4f}"
    )
    print(
        f"ratio edgegate/bare: {ratio:.2f}x (goal >= 0.9x)   PPL rel. diff {abs(p_ours / p_base - 1):.2e}"
    )


if __name__ == "__main__":
    main()
