"""transformers runtime: BBQ items/s and work efficiency with batching and token trees on and off.

Same checkpoint, same items, same process; three settings of the backend:
  one-by-one   batch_size=1,  reuse_prefix=False  (one forward pass per prompt)
  batched      batch_size=16, reuse_prefix=False  (left-padded batches + attention mask)
  trees        batch_size=16, reuse_prefix=True   (token trees: each distinct prefix once)
for letter mode (one next-token distribution per item), letter mode with the options rotated
three ways (--permute: rotations share context and question) and loglik mode (three answers
per context). Prints items/s and the ratios against one-by-one, the work efficiency (the
fewest positions any scorer needs / positions evaluated), and how many answers differ from
one-by-one (bf16 weights: the batch layout moves scores by float noise, which can flip a
near-tie; in float32 the paths agree to 3e-5, tests/test_backend_transformers.py).

    PYTHONPATH=src python benchmarks/transformers_batching.py [MODEL_DIR] [--items 96]

MODEL_DIR defaults to gemma-3-270m built by benchmarks/_gemma.py under $EDGEGATE_MODELS
(default /work/models/gemma3-270m-hf).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"one-by-one": (1, False), "batched": (16, False), "trees": (16, True)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", type=Path)
    ap.add_argument("--items", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="letter,letter-permute,loglik")
    args = ap.parse_args()
    model = args.model
    if model is None:
        from _gemma import build_gemma_hf  # beside this script, so on its path

        model = build_gemma_hf(
            Path(os.environ.get("EDGEGATE_MODELS", "/work/models")) / "gemma3-270m-hf"
        )
    from edgegate.backends.transformers_backend import TransformersBackend
    from edgegate.bbq.dataset import load, stratified_sample
    from edgegate.bbq.scoring import ScoreConfig, Scorer

    items = stratified_sample(
        load(REPO.parent / "shared" / "bbq" / "data", condition="ambig"), args.items, seed=0
    )
    b = TransformersBackend(model, n_ctx=1024, threads=args.threads)
    print(
        f"{model}: {b.info()['dtype']} on {b.device}, {len(items)} BBQ items, {args.threads} threads",
        flush=True,
    )
    for mode in args.modes.split(","):
        # letter-permute: each item asked with its options rotated 3 ways (shared context+question)
        cfg = (
            ScoreConfig(mode="letter", permute=True)
            if mode == "letter-permute"
            else ScoreConfig(mode=mode)
        )
        Scorer(b, cfg).score(items[:4])  # warm-up (allocator, kernels)
        rates: dict[str, float] = {}
        effs: dict[str, float] = {}
        answers: dict[str, list[int | None]] = {}
        for name, (bs, reuse) in SETTINGS.items():
            b.batch_size, b.reuse_prefix = bs, reuse
            scorer, before = Scorer(b, cfg), b.tokens_evaluated
            t = time.perf_counter()
            got = scorer.score(items)
            rates[name] = len(items) / (time.perf_counter() - t)
            effs[name] = scorer.minimal.nodes / (b.tokens_evaluated - before)
            answers[name] = [a.choice for a in got]
        base = rates["one-by-one"]
        print(
            f"{mode:7s} "
            + "  ".join(
                f"{k} {v:.2f} items/s ({v / base:.2f}x, efficiency {effs[k]:.3f})"
                for k, v in rates.items()
            )
            + "  answers differing from one-by-one: "
            + ", ".join(
                f"{k} {sum(x != y for x, y in zip(v, answers['one-by-one'], strict=True))}/{len(v)}"
                for k, v in answers.items()
                if k != "one-by-one"
            ),
            flush=True,
        )
    b.close()


if __name__ == "__main__":
    main()
