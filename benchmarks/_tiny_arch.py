"""Tiny checkpoints of the mainstream architectures, built with transformers where a test or a
benchmark needs one (the tests import this module through pyproject's pytest ``pythonpath``).

One SentencePiece tokenizer (trained here on the bundled evaluation text, 512 pieces, byte
fallback, no normalisation: the tokenizer.model Llama, Mistral, Gemma and Phi-3 ship) and, per
architecture, a random-weight model from a small config plus a magnitude-pruned twin (the
smallest 50% of every linear weight inside the decoder layers set to zero). Everything is
written by the real libraries (sentencepiece, transformers' save_pretrained, safetensors).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

VOCAB = 512
# chat-turn markers (Gemma) and Phi-3's end tokens, which llama.cpp's phi3 vocabulary requires
SPECIAL_PIECES = ("<start_of_turn>", "<end_of_turn>", "<|end|>", "<|endoftext|>")
BOS, EOS, UNK, PAD = 1, 2, 0, 3
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
_COMMON: dict[str, Any] = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    bos_token_id=BOS,
    eos_token_id=EOS,
    pad_token_id=PAD,
    initializer_range=0.05,
)
# architecture -> (config class, model class, extra config)
ARCHS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"head_dim": 16, "tie_word_embeddings": False}),
    "mistral": (
        "MistralConfig",
        "MistralForCausalLM",
        {"head_dim": 16, "sliding_window": None, "tie_word_embeddings": False},
    ),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {"head_dim": 16, "sliding_window": 128, "query_pre_attn_scalar": 16},
    ),
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {"head_dim": 16, "sliding_window": 128, "query_pre_attn_scalar": 16},
    ),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16, "tie_word_embeddings": True}),
    "phi3": (
        "Phi3Config",
        "Phi3ForCausalLM",
        {"tie_word_embeddings": False, "original_max_position_embeddings": 512},
    ),
}


def build_tokenizer(out: Path, text: str, *, gemma: bool = False) -> Path:
    """tokenizer.model (SentencePiece BPE) + the HF tokenizer files transformers derives from it.
    ``gemma``: no dummy-prefix space and GemmaTokenizer, as Gemma's tokenizer (llama.cpp's
    converter writes add_space_prefix=false for Gemma); else Llama's SentencePiece setup."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        # BBQ's letter mode needs " A", " B", " C" as single tokens: answer lines teach those merges
        sentence_iterator=iter(
            [ln for ln in text.split("\n") if ln.strip()] + ["Answer: A or B or C"] * 64
        ),
        model_prefix=str(out / "tokenizer"),
        vocab_size=VOCAB,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        pad_id=PAD,
        user_defined_symbols=list(SPECIAL_PIECES),
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=not gemma,
        allow_whitespace_only_pieces=True,
        num_threads=1,
        minloglevel=2,
    )
    (out / "tokenizer.vocab").unlink(missing_ok=True)
    cfg = {
        "tokenizer_class": "GemmaTokenizer" if gemma else "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "chat_template": GEMMA_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    tok = AutoTokenizer.from_pretrained(str(out))
    # the turn markers are special tokens (as in Gemma's and Phi-3's tokenizers): the converter
    # then marks them so in the GGUF, and llama.cpp parses them in chat prompts as transformers does
    tok.add_special_tokens({"additional_special_tokens": [*SPECIAL_PIECES]})
    assert max(tok.convert_tokens_to_ids(list(SPECIAL_PIECES))) < VOCAB  # pieces, not new ids
    tok.save_pretrained(str(out))
    # transformers 5 keeps added tokens in tokenizer.json only; released checkpoints (and
    # llama.cpp's converter, which marks them CONTROL from it) also carry added_tokens_decoder
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    added = json.loads((out / "tokenizer.json").read_text())["added_tokens"]
    cfg["added_tokens_decoder"] = {
        str(a["id"]): {
            k: a[k] for k in ("content", "lstrip", "rstrip", "normalized", "single_word", "special")
        }
        for a in added
        if a["id"] < VOCAB
    }
    (out / "tokenizer_config.json").write_text(
        json.dumps(cfg, indent=2)
    )  # adds tokenizer.json (the fast tokenizer transformers runs)
    return out


def magnitude_prune(model: Any, sparsity: float = 0.5) -> None:
    """Zero the smallest-|w| fraction of every linear weight inside the decoder layers."""
    import torch

    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and ".layers." in name:
                w = mod.weight
                k = int(w.numel() * sparsity)
                if k:
                    thr = w.abs().flatten().kthvalue(k).values
                    w[w.abs() <= thr] = 0


def build_tokenizers(root: Path, text: str) -> dict[str, Path]:
    """{"llama": dir, "gemma": dir}: the two SentencePiece set-ups the architectures use."""
    return {
        "llama": build_tokenizer(root / "tok-llama", text),
        "gemma": build_tokenizer(root / "tok-gemma", text, gemma=True),
    }


def tokenizer_for(arch: str, toks: dict[str, Path]) -> Path:
    return toks["gemma" if arch.startswith("gemma") else "llama"]


def build_pair(
    arch: str, root: Path, tok_dir: Path, *, seed: int = 0, dtype: str = "bfloat16"
) -> tuple[Path, Path]:
    """(dense dir, pruned dir) for ``arch`` under ``root`` (``tok_dir``: see ``tokenizer_for``)."""
    import torch
    import transformers

    cfg_cls, model_cls, extra = ARCHS[arch]
    torch.manual_seed(seed)
    cfg = getattr(transformers, cfg_cls)(**{**_COMMON, **extra})
    model = getattr(transformers, model_cls)(cfg).to(getattr(torch, dtype)).eval()
    dense, pruned = root / f"{arch}-dense", root / f"{arch}-pruned"
    save(model, dense, tok_dir)
    magnitude_prune(model)
    save(model, pruned, tok_dir)
    return dense, pruned


def save(model: Any, out: Path, tok_dir: Path) -> None:
    model.save_pretrained(str(out), safe_serialization=True)
    for f in tok_dir.iterdir():
        if f.is_file():
            shutil.copy2(f, out / f.name)


def train_briefly(
    model_dir: Path, text: str, *, steps: int = 40, seq: int = 64, batch: int = 4, seed: int = 0
) -> None:
    """A few AdamW steps of next-token training on ``text`` (float32), saved back in the
    checkpoint's dtype: a model with real preferences, so runtimes can be compared on answers
    that are not coin flips between near-equal logits."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ids = torch.tensor(tok.encode(text, add_special_tokens=False), dtype=torch.long)
    saved_dtype = getattr(torch, json.loads((model_dir / "config.json").read_text())["dtype"])
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    torch.manual_seed(seed)
    gen = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        starts = gen.integers(0, len(ids) - seq, size=batch)
        x = torch.stack([torch.cat([torch.tensor([BOS]), ids[s : s + seq - 1]]) for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.to(saved_dtype)
    model.config.dtype = saved_dtype
    model.save_pretrained(str(model_dir), safe_serialization=True)
