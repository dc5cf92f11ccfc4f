"""Convert a Hugging Face Llama-family directory (safetensors) to GGUF for llama.cpp.

Pure numpy + the ``gguf`` package: no torch, no model code, nothing from the checkpoint is
executed. bf16 is handled as raw ``uint16`` bit patterns (a bf16 value is the top half of
the float32 with the same value), so ``outtype="bf16"`` copies bf16 weights bit-exactly.
The tensor names and the q/k row permutation are in ``gguf_layout`` (re-exported here);
reading the HF directory is in ``gguf_source``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgegate.checkpoint.gguf_layout import (
    ARCHITECTURES,
    ArchSpec,
    gguf_tensor_name,
    hf_tensor_name,
    permute_qk,
    unpermute_qk,
)
from edgegate.checkpoint.gguf_source import (
    _cfg_int,
    _load,
    _read_json,
    _rope_theta,
    _scan_safetensors,
    _Shape,
    _StTensor,
    _to_f32,
)
from edgegate.checkpoint.names import small_int
from edgegate.errors import CheckpointError, InputError
from edgegate.progress import NullProgress, Progress

if TYPE_CHECKING:
    from gguf import GGMLQuantizationType, GGUFWriter

__all__ = [
    "ARCHITECTURES",
    "OUTTYPES",
    "ArchSpec",
    "gguf_tensor_name",
    "hf_tensor_name",
    "permute_qk",
    "unpermute_qk",
    "write_gguf",
]

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
Q8_0_BLOCK = 32
F16_OVERFLOW = 65520.0  # the smallest magnitude that rounds to inf in float16


# --------------------------------------------------------------------------- writer
def write_gguf(
    hf_dir: str | Path,
    out_path: str | Path,
    outtype: str = "f16",
    *,
    progress: Progress | None = None,
) -> Path:
    """Write ``hf_dir`` (config.json, tokenizer.json, *.safetensors) as a GGUF file.

    ``outtype``: f32, f16, bf16 or q8_0 for 2-D weights (q8_0 falls back to f16 for rows not
    a multiple of 32); 1-D norm weights are always f32 as llama.cpp expects.
    """
    import gguf

    progress = progress or NullProgress()
    hf_dir, out_path = Path(hf_dir), Path(out_path)
    if outtype not in OUTTYPES:
        raise InputError(
            f"unknown GGUF outtype '{outtype}'",
            field="outtype",
            hint="use one of: " + ", ".join(OUTTYPES),
        )
    cfg_path = hf_dir / "config.json"
    cfg = _read_json(cfg_path)
    spec = _checked_architecture(cfg, cfg_path)
    shape = _Shape.of(cfg, cfg_path)
    tensors = _scan_safetensors(hf_dir)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out_path), spec.gguf_arch)
    _add_metadata(w, hf_dir, cfg, cfg_path, outtype, shape)

    with progress.task(f"writing {out_path.name}", total=len(tensors)) as advance:
        for name, data, qtype in _convert(spec, tensors, outtype, shape.n_head, shape.n_head_kv):
            w.add_tensor(name, data, raw_dtype=qtype)
            advance(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_path


def _checked_architecture(cfg: dict[str, Any], cfg_path: Path) -> ArchSpec:
    """The writer's mapping for the config's architecture; refuses odd shape fields, an
    unsupported architecture and a quantized checkpoint."""
    from edgegate.checkpoint.config_fields import check_shape_fields

    check_shape_fields(cfg, cfg_path)  # "two" heads or a head_dim of 1e999: exit 2 naming the field
    archs = cfg.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    if arch not in ARCHITECTURES:
        raise CheckpointError(
            f"architecture {arch!r} is not supported by the GGUF writer",
            path=cfg_path,
            field="architectures",
            hint="supported: " + ", ".join(ARCHITECTURES),
        )
    spec = ARCHITECTURES[arch]
    if cfg.get("quantization_config"):
        qc = cfg["quantization_config"]
        method = qc.get("quant_method", "?") if isinstance(qc, dict) else "?"
        raise CheckpointError(
            f"quantized/compressed checkpoint ({method}) cannot be converted",
            path=cfg_path,
            field="quantization_config",
            hint="convert the dense (decompressed) safetensors directory",
        )
    return spec


def _add_metadata(
    w: GGUFWriter, hf_dir: Path, cfg: dict[str, Any], cfg_path: Path, outtype: str, shape: _Shape
) -> None:
    """The GGUF key/values llama.cpp reads: hyperparameters, file type, tokenizer (in this order)."""
    import gguf

    ftype = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[outtype]
    w.add_name(hf_dir.name)
    w.add_context_length(_cfg_int(cfg, "max_position_embeddings", cfg_path))
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(_cfg_int(cfg, "intermediate_size", cfg_path))
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(shape.head_dim)
    if shape.head_dim != shape.n_embd // shape.n_head:
        w.add_key_length(shape.head_dim)
        w.add_value_length(shape.head_dim)
    w.add_rope_freq_base(_rope_theta(cfg, cfg_path))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_vocab_size(shape.n_vocab)
    w.add_file_type(int(ftype))
    if outtype == "q8_0":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(w, hf_dir, cfg, shape.n_vocab)


def _convert(
    spec: ArchSpec, tensors: dict[str, _StTensor], outtype: str, n_head: int, n_head_kv: int
) -> Iterator[tuple[str, np.ndarray, GGMLQuantizationType | None]]:
    import gguf
    from gguf import GGMLQuantizationType as Q

    for hf_name in sorted(tensors, key=_order_key):
        gname = gguf_tensor_name(spec, hf_name)
        if gname is None:
            continue
        t = tensors[hf_name]
        arr = _load(t)
        if spec.permute_qk and hf_name.endswith("self_attn.q_proj.weight"):
            arr = permute_qk(arr, n_head)
        elif spec.permute_qk and hf_name.endswith("self_attn.k_proj.weight"):
            arr = permute_qk(arr, n_head_kv)
        arr = np.ascontiguousarray(arr)
        if arr.ndim == 1 or outtype == "f32":
            yield gname, _to_f32(arr, t.dtype), None
        elif outtype == "bf16":
            if t.dtype == "BF16":  # bit-exact copy
                yield gname, arr.view(np.uint8).reshape(*arr.shape[:-1], -1), Q.BF16
            else:
                yield gname, gguf.quants.quantize(_to_f32(arr, t.dtype), Q.BF16), Q.BF16
        elif outtype == "q8_0" and arr.shape[-1] % Q8_0_BLOCK == 0:
            yield gname, gguf.quants.quantize(_to_f32(arr, t.dtype), Q.Q8_0), Q.Q8_0
        else:
            f32 = _to_f32(arr, t.dtype)
            finite = np.abs(f32[np.isfinite(f32)])
            if finite.size and finite.max() >= F16_OVERFLOW:
                raise CheckpointError(
                    f"|value| {finite.max():.4g} overflows float16",
                    field=hf_name,
                    hint="write with outtype bf16 or f32",
                )
            yield gname, f32.astype(np.float16), None


def _order_key(name: str) -> tuple[int, int, str]:
    """Embedding first, then layers in numeric order, then final norm / head."""
    parts = name.split(".")
    if len(parts) > 2 and parts[1] == "layers" and small_int(parts[2]) is not None:
        return (1, int(parts[2]), name)
    return (0 if "embed" in name else 2, 0, name)


# --------------------------------------------------------------------------- tokenizer
_TOKEN_NORMAL, _TOKEN_CONTROL, _TOKEN_USER, _TOKEN_UNUSED = 1, 3, 4, 5


def _pre_tokenizer_name(pre: Any, path: Path) -> str:
    """llama.cpp's name for the pre-tokenizer: only GPT-2's regex byte-level split for now."""
    if isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    kind = pre.get("type") if isinstance(pre, dict) else pre
    raise CheckpointError(
        f"pre-tokenizer {kind!r} is not supported by the GGUF writer",
        path=path,
        field="pre_tokenizer",
        hint="supported: ByteLevel with GPT-2 regex",
    )


def _token_id(tok: Any, vocab: dict[str, int]) -> int | None:
    if isinstance(tok, dict):
        tok = tok.get("content")
    return vocab.get(tok) if isinstance(tok, str) else None


def _add_tokenizer(w: GGUFWriter, hf_dir: Path, cfg: dict[str, Any], n_vocab: int) -> None:
    tj_path = hf_dir / "tokenizer.json"
    tj = _read_json(tj_path)
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise CheckpointError(
            f"tokenizer model {model.get('type')!r} is not supported",
            path=tj_path,
            field="model.type",
            hint="supported: BPE (byte-level, GPT-2 style)",
        )
    pre = _pre_tokenizer_name(tj.get("pre_tokenizer"), tj_path)
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    special: set[int] = set()
    added: set[int] = set()
    for a in tj.get("added_tokens") or []:
        vocab[a["content"]] = a["id"]
        (special if a.get("special") else added).add(a["id"])
    if max(vocab.values(), default=-1) >= n_vocab:
        raise CheckpointError(
            f"tokenizer has ids up to {max(vocab.values())} but vocab_size is {n_vocab}",
            path=tj_path,
            hint="config.json vocab_size must cover every token id",
        )
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [_TOKEN_UNUSED] * n_vocab
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = _TOKEN_CONTROL if i in special else _TOKEN_USER if i in added else _TOKEN_NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)

    tc_path = hf_dir / "tokenizer_config.json"
    tc = _read_json(tc_path) if tc_path.exists() else {}
    bos = _token_id(tc.get("bos_token"), vocab)
    bos = bos if bos is not None else cfg.get("bos_token_id")
    eos = _token_id(tc.get("eos_token"), vocab)
    eos = eos if eos is not None else cfg.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0]
    pad = _token_id(tc.get("pad_token"), vocab)
    if isinstance(bos, int):
        w.add_bos_token_id(bos)
    if isinstance(eos, int):
        w.add_eos_token_id(eos)
    if isinstance(pad, int):
        w.add_pad_token_id(pad)
    im_end = vocab.get("<|im_end|>")
    if im_end is not None and im_end != eos:
        w.add_eot_token_id(im_end)  # ChatML turns end here; llama.cpp stops generation on it
    w.add_add_bos_token(bool(tc.get("add_bos_token", _post_processor_adds_bos(tj, bos))))
    w.add_add_eos_token(bool(tc.get("add_eos_token", False)))
    template = tc.get("chat_template")
    jinja = hf_dir / "chat_template.jinja"  # transformers >= 4.43 may save it on its own
    if template is None and jinja.exists():
        template = jinja.read_text(encoding="utf-8")
    if template:
        w.add_chat_template(template)


def _post_processor_adds_bos(tj: dict[str, Any], bos: Any) -> bool:
    post = tj.get("post_processor") or {}
    single = post.get("single") if isinstance(post, dict) else None
    if not isinstance(single, list) or not isinstance(bos, int):
        return False
    return any(isinstance(p, dict) and "SpecialToken" in p for p in single)
