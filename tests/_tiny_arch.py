"""Tiny checkpoints of the mainstream architectures, built inside the tests with transformers.

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
BOS, EOS, UNK, PAD = 1, 2, 0, 3
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
_COMMON: dict[str, Any] = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, initializer_range=0.05,
)
# architecture -> (config class, model class, extra config)
ARCHS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"head_dim": 16, "tie_word_embeddings": False}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"head_dim": 16, "sliding_window": None, "tie_word_embeddings": False}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 16, "sliding_window": 128, "query_pre_attn_scalar": 16}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 16, "sliding_window": 128, "query_pre_attn_scalar": 16}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16, "tie_word_embeddings": True}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"tie_word_embeddings": False, "original_max_position_embeddings": 512}),
}


def build_tokenizer(out: Path, text: str) -> Path:
    """tokenizer.model (SentencePiece BPE) + the HF tokenizer files transformers derives from it."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        # BBQ's letter mode needs " A", " B", " C" as single tokens: answer lines teach those merges
        sentence_iterator=iter([ln for ln in text.split("\n") if ln.strip()] + ["Answer: A or B or C"] * 64),
        model_prefix=str(out / "tokenizer"), vocab_size=VOCAB, model_type="bpe", byte_fallback=True,
        character_coverage=1.0, unk_id=UNK, bos_id=BOS, eos_id=EOS, pad_id=PAD,
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>", "<|end|>", "<|endoftext|>"], split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        allow_whitespace_only_pieces=True, num_threads=1, minloglevel=2,
    )
    (out / "tokenizer.vocab").unlink(missing_ok=True)
    cfg = {
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "chat_template": GEMMA_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    tok = AutoTokenizer.from_pretrained(str(out))
    tok.save_pretrained(str(out))  # adds tokenizer.json (the fast tokenizer transformers runs)
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


def build_pair(arch: str, root: Path, tok_dir: Path, *, seed: int = 0, dtype: str = "bfloat16") -> tuple[Path, Path]:
    """(dense dir, pruned dir) for ``arch`` under ``root``."""
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
