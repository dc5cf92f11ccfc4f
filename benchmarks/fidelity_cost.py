"""What the fidelity check costs over perplexity alone: the same pair, text and context scored
once by the perplexity pass (``ppl.run_ppl``) and once by the fidelity pass (``fidelity.run_kl``:
the same forward passes, each chunk's logits kept in the models' processes and compared a few
rows at a time), in the same run.

    nice -n 10 python benchmarks/fidelity_cost.py /work/models/gguf/gemma3-270m-f16.gguf \\
        /work/models/gguf/gemma3-270m-q4_k_m.gguf --threads 1

Printed: wall and CPU seconds of each pass (CPU: this process and the model processes it
waited for) and their ratios (on a shared machine wall time follows the load; CPU time less so);
peak memory of each pass, as the highest
sum of resident memory over this process and the two model processes (sampled every 0.1 s with
psutil) and as the sum of each process's own peak (VmHWM), and the ratios (goal: fidelity <=
1.5 x perplexity); then the fidelity numbers themselves (``edgegate ppl --kl``'s lines).
``--order`` runs fidelity first to see that the order does not decide the ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from edgegate import fidelity
from edgegate import perplexity as ppl


class TreeMemory:
    """Peak of the summed RSS of this process and its descendants, and each one's own peak."""

    def __init__(self, every: float = 0.1) -> None:
        self.every, self.peak_sum = every, 0
        self.hwm: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                    with open(f"/proc/{p.pid}/status") as fh:
                        hwm = next(
                            int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmHWM:")
                        )
                    self.hwm[p.pid] = max(self.hwm.get(p.pid, 0), hwm)
                except (psutil.Error, OSError, StopIteration):
                    continue
            self.peak_sum = max(self.peak_sum, total)
            self._stop.wait(self.every)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _cpu() -> float:
    """CPU seconds of this process and of the children it has waited for (the model processes,
    once closed)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dense", type=Path)
    ap.add_argument("compressed", type=Path)
    ap.add_argument("--runtime", default="llamacpp")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--text", type=Path, help="default: edgegate's embedded evaluation text")
    ap.add_argument("--order", choices=["ppl-first", "fidelity-first"], default="ppl-first")
    a = ap.parse_args()
    text = a.text.read_text(encoding="utf-8") if a.text else None
    kw: dict[str, Any] = {
        "runtime": a.runtime,
        "text": text,
        "n_ctx": a.n_ctx,
        "threads": a.threads,
    }
    runs: dict[str, tuple[float, float, TreeMemory, Any]] = {}
    order = ["perplexity", "fidelity"] if a.order == "ppl-first" else ["fidelity", "perplexity"]
    for name in order:
        t0, c0 = time.perf_counter(), _cpu()
        with TreeMemory() as mem:
            out = (
                ppl.run_ppl(a.dense, a.compressed, **kw)
                if name == "perplexity"
                else fidelity.run_kl(a.dense, a.compressed, **kw)
            )
        runs[name] = (time.perf_counter() - t0, _cpu() - c0, mem, out)
    (tp, cp, mp, cmp), (tf, cf, mf, (cmp_f, fid)) = runs["perplexity"], runs["fidelity"]
    gib = 1024**3
    print(
        f"pair: {a.dense.name} vs {a.compressed.name}, {a.runtime}, n_ctx {a.n_ctx}, threads {a.threads}, "
        f"{cmp.n} chunks, {cmp.dense.n_scored} scored tokens, order {a.order}"
    )
    print(f"wall: perplexity pass {tp:.1f} s, fidelity pass {tf:.1f} s, ratio {tf / tp:.2f}")
    print(f"CPU: perplexity pass {cp:.1f} s, fidelity pass {cf:.1f} s, ratio {cf / cp:.2f}")
    sp, sf = sum(mp.hwm.values()), sum(mf.hwm.values())
    print(
        f"peak memory, summed RSS of the process tree: perplexity {mp.peak_sum / gib:.2f} GiB, "
        f"fidelity {mf.peak_sum / gib:.2f} GiB, ratio {mf.peak_sum / mp.peak_sum:.2f}"
    )
    print(
        f"peak memory, sum of each process's VmHWM: perplexity {sp / gib:.2f} GiB, fidelity {sf / gib:.2f} GiB, "
        f"ratio {sf / sp:.2f}"
    )
    same = (
        cmp.dense.chunk_nll == cmp_f.dense.chunk_nll
        and cmp.compressed.chunk_nll == cmp_f.compressed.chunk_nll
    )
    print(
        f"perplexity {cmp.dense.ppl:.4f} -> {cmp.compressed.ppl:.4f} ({cmp.relative_change:+.2%}); "
        f"the fidelity pass's NLLs are bit-identical to the perplexity pass's: {same}"
    )
    print("\n".join(fidelity.text_lines(fid)))


if __name__ == "__main__":
    main()
