"""Cross-check of the fidelity check against llama.cpp's own ``llama-perplexity --kl-divergence``.

Same GGUF files, same text (edgegate's embedded evaluation text unless --text), same context
size, same threads, same machine. llama-perplexity first saves the dense model's logits
(``--kl-divergence-base``), then scores each compressed model against them; edgegate scores
both models in one pass (``edgegate ppl DENSE COMPRESSED --kl``). Printed per compressed
model: both tools' mean KL and same-top-token rate, their ratio/difference, and the ratio of
wall times (edgegate over llama-perplexity's base + KL runs).

Build llama-perplexity from the llama.cpp source vendored in the llama-cpp-python sdist:

    bash benchmarks/build_llama_tools.sh            # -> build/llama.cpp/bin/llama-perplexity
    python benchmarks/fidelity_crosscheck.py --llama-perplexity build/llama.cpp/bin/llama-perplexity \\
        --dense /work/models/gguf/gemma3-270m-f16.gguf \\
        /work/models/gguf/gemma3-270m-q8_0.gguf /work/models/gguf/gemma3-270m-q4_k_m.gguf

Results: ``studies/results/calibration/fidelity-crosscheck.json``. The issue's bar: mean KL
within 2% and top-1 within 0.5 points. llama-perplexity stores the base log-probabilities
quantized to 16 bits (its KL is computed from those), edgegate compares float32 logits in
float64: small KL values differ by that quantization.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "studies" / "results" / "calibration" / "fidelity-crosscheck.json"
_KLD = re.compile(r"Mean\s+KLD:\s+([0-9.eE+-]+)\s+±\s+([0-9.eE+-]+)")
_TOP = re.compile(r"Same top p:\s+([0-9.]+)\s+±\s+([0-9.]+)\s*%")
_NEEDS_NO_REPACK = re.compile(r"Q8_0", re.I)


def _run(cmd: list[str]) -> tuple[str, float]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
        raise SystemExit(f"{cmd[0]} exited {p.returncode}")
    return p.stdout + p.stderr, wall


def _llama_args(model: Path, args: argparse.Namespace, text: Path) -> list[str]:
    out = [
        str(args.llama_perplexity),
        "-m",
        str(model),
        "-f",
        str(text),
        "-c",
        str(args.n_ctx),
        "-t",
        str(args.threads),
        "-b",
        str(args.n_ctx),
    ]
    # llama.cpp's AMX Q8_0 path crashes on this machine's CPU (edgegate.backends.llamacpp turns
    # the extra buffer types off for Q8_0 models too): the same setting for both tools. A
    # native build of llama-perplexity also died with SIGILL in its Q4_K repacking here:
    # --no-repack for every model avoids it (repacking changes the memory layout, not the math)
    if args.no_repack or _NEEDS_NO_REPACK.search(model.name):
        out.append("--no-repack")
    return out


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("compressed", type=Path, nargs="+")
    ap.add_argument("--dense", type=Path, required=True)
    ap.add_argument("--llama-perplexity", type=Path, required=True)
    ap.add_argument("--text", type=Path, help="default: edgegate's embedded evaluation text")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-repack", action="store_true", help="pass --no-repack for every model")
    return ap.parse_args()


def _compare(
    args: argparse.Namespace, comp: Path, text: Path, base: Path, base_wall: float
) -> dict[str, Any]:
    """KL divergence and top-1 agreement of ``comp`` against the dense logits saved in
    ``base``, by llama-perplexity and by ``edgegate ppl --kl``, side by side."""
    log, kl_wall = _run(
        [*_llama_args(comp, args, text), "--kl-divergence-base", str(base), "--kl-divergence"]
    )
    kld, top = _KLD.search(log), _TOP.search(log)
    if not kld or not top:
        sys.stderr.write(log[-3000:])
        raise SystemExit("llama-perplexity printed no KL statistics")
    ours_out, ours_wall = _run(
        [
            str(Path(sys.executable).parent / "edgegate"),
            "ppl",
            str(args.dense),
            str(comp),
            "--runtime",
            "llamacpp",
            "--threads",
            str(args.threads),
            "--n-ctx",
            str(args.n_ctx),
            "--text",
            str(text),
            "--kl",
            "--json",
            "-q",
        ]
    )
    ours = json.loads(ours_out[ours_out.index("{") :])["fidelity"]
    row = {
        "compressed": comp.name,
        "llama_mean_kl": float(kld.group(1)),
        "llama_mean_kl_pm": float(kld.group(2)),
        "llama_top1": float(top.group(1)) / 100,
        "llama_top1_pm": float(top.group(2)) / 100,
        "edgegate_mean_kl": ours["mean_kl"]["value"],
        "edgegate_mean_kl_ci": [ours["mean_kl"]["ci_low"], ours["mean_kl"]["ci_high"]],
        "edgegate_top1": ours["top1_agreement"]["value"],
        "edgegate_tokens": ours["n_tokens"],
        "edgegate_chunks": ours["n_chunks"],
        "llama_wall_s": base_wall + kl_wall,
        "edgegate_wall_s": ours_wall,
        "n_ctx": args.n_ctx,
        "threads": args.threads,
    }
    row["kl_ratio"] = (
        row["edgegate_mean_kl"] / row["llama_mean_kl"] if row["llama_mean_kl"] else float("nan")
    )
    row["top1_diff_points"] = 100 * (row["edgegate_top1"] - row["llama_top1"])
    row["time_ratio"] = ours_wall / (base_wall + kl_wall)
    print(
        f"{comp.name}: mean KL edgegate {row['edgegate_mean_kl']:.5f} vs llama.cpp {row['llama_mean_kl']:.5f} "
        f"(ratio {row['kl_ratio']:.3f}); top-1 {100 * row['edgegate_top1']:.2f}% vs {100 * row['llama_top1']:.2f}% "
        f"({row['top1_diff_points']:+.2f} points); wall {ours_wall:.1f} s vs {base_wall + kl_wall:.1f} s "
        f"(ratio {row['time_ratio']:.2f})"
    )
    return row


def main() -> int:
    args = _parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        text = args.text or Path(tmp) / "eval_text.txt"
        if args.text is None:
            text.write_text(
                files("edgegate").joinpath("data/eval_text.txt").read_text(encoding="utf-8"),
                encoding="utf-8",
            )
        base = Path(tmp) / "dense.kld"
        _, base_wall = _run(
            [*_llama_args(args.dense, args, text), "--kl-divergence-base", str(base)]
        )
        print(f"llama-perplexity base (dense logits saved): {base_wall:.1f} s", file=sys.stderr)
        rows: list[dict[str, Any]] = []
        for comp in args.compressed:
            rows.append(_compare(args, comp, text, base, base_wall))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # rows of earlier invocations (other compressed models) are kept; a model measured again replaces its row
    old = json.loads(OUT.read_text())["rows"] if OUT.is_file() else []
    mine = {r["compressed"] for r in rows}
    OUT.write_text(
        json.dumps(
            {
                "dense": args.dense.name,
                "rows": [r for r in old if r["compressed"] not in mine] + rows,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
