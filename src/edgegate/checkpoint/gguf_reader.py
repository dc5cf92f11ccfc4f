"""GGUF reader over gguf.GGUFReader (memory-mapped), with HF names and HF tensor layout.

GGUF stores dims in ggml order (fastest first); GGUFReader already hands data back in
row-major logical order, which for linears is HF's ``[out, in]``. llama.cpp's converter
permutes Q/K rows for llama-family archs (rotary pairs interleaved); we invert that so a
tensor lines up element-for-element with its HF counterpart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.checkpoint.base import Checkpoint, Format, TensorInfo
from edgegate.checkpoint.names import make_info
from edgegate.errors import CheckpointError

# Archs whose converter (convert_hf_to_gguf LlamaModel and subclasses) permutes Q/K rows.
PERMUTED_QK_ARCHS = frozenset({"llama", "granite", "granitemoe", "deci"})

# Preferred HF leaf names when gguf's name tables offer several spellings per tensor type.
_PREFERRED_LEAVES = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
    "post_feedforward_layernorm", "q_norm", "k_norm",
)
_PREFERRED_GLOBAL = ("model.embed_tokens", "lm_head", "model.norm")

_NATIVE = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16,
           "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64}


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K permutation ``reshape(n_head, 2, r/n_head/2, ...).swapaxes(1, 2)``."""
    rows = w.shape[0]
    if n_head <= 0 or rows % (2 * n_head):
        raise ValueError(f"{rows} rows cannot be split into {n_head} heads of rotary pairs")
    rest = w.shape[1:]
    return np.asarray(w).reshape(n_head, rows // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


def _pick(cands: list[str], block: bool) -> str | None:
    if block:
        ours = [c for c in cands if c.startswith("model.layers.{bid}.")]
        for c in ours:
            if c.rsplit(".", 1)[-1] in _PREFERRED_LEAVES:
                return c
        return ours[0] if ours else None
    for p in _PREFERRED_GLOBAL:
        if p in cands:
            return p
    ours = [c for c in cands if c.startswith("model.")]
    return ours[0] if ours else None


def name_table(arch_name: str, n_blocks: int) -> dict[str, str]:
    """GGUF base name (``blk.3.attn_q``) -> HF base name, from gguf's own tensor tables."""
    import gguf

    arch = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name), None)
    if arch is None:
        arch = gguf.MODEL_ARCH.LLAMA  # unknown arch: llama's table is the common core
    tmap = gguf.TensorNameMap(arch, n_blocks)
    table: dict[str, str] = {}
    for t in gguf.MODEL_TENSORS.get(arch, []):
        gname = gguf.TENSOR_NAMES[t]
        cands = [*tmap.arch_block_mappings_cfg.get(arch, {}).get(t, ()),
                 *tmap.block_mappings_cfg.get(t, ()), *tmap.mappings_cfg.get(t, ())]
        block = "{bid}" in gname
        hf = _pick(cands, block)
        if hf is None:
            continue
        if block:
            for bid in range(n_blocks):
                table[gname.format(bid=bid)] = hf.format(bid=bid)
        else:
            table[gname] = hf
    return table


def canonical_name(gguf_name: str, table: dict[str, str]) -> str:
    base, dot, param = gguf_name.rpartition(".")
    if dot and param in ("weight", "bias") and base in table:
        return f"{table[base]}.{param}"
    return table.get(gguf_name, gguf_name)


def _field(fields: dict[str, Any], key: str) -> Any:
    f = fields.get(key)
    if f is None:
        return None
    try:
        v = f.contents()
    except Exception:
        return None
    return v


_CONFIG_KEYS = {
    "block_count": "num_hidden_layers",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "context_length": "max_position_embeddings",
    "vocab_size": "vocab_size",
    "rope.freq_base": "rope_theta",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "attention.key_length": "head_dim",
}


def gguf_config(fields: dict[str, Any]) -> dict[str, Any]:
    """An HF-config-like dict from GGUF metadata (per-layer arrays give their first value)."""
    arch = _field(fields, "general.architecture") or "unknown"
    cfg: dict[str, Any] = {"model_type": arch, "architecture": arch}
    for key, hf in _CONFIG_KEYS.items():
        v = _field(fields, f"{arch}.{key}")
        if isinstance(v, list):
            v = v[0] if v else None
        if v is not None:
            cfg[hf] = v
    if "vocab_size" not in cfg and "tokenizer.ggml.tokens" in fields:
        cfg["vocab_size"] = len(fields["tokenizer.ggml.tokens"].data)
    if "num_key_value_heads" not in cfg and "num_attention_heads" in cfg:
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    return cfg


class GGUFCheckpoint(Checkpoint):
    def __init__(self, path: Path) -> None:
        import gguf

        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
        if len(head) < 8 or size < 24:
            raise CheckpointError(f"truncated: {size} bytes is shorter than a GGUF header", path=path,
                                  hint="re-convert or re-download it")
        if head[:4] != b"GGUF":
            raise CheckpointError(f"bad magic {head[:4]!r}, expected b'GGUF'", path=path,
                                  hint="not a GGUF file (or a big-endian/corrupt one)")
        version = int.from_bytes(head[4:8], "little")
        if version not in (2, 3):
            raise CheckpointError(f"unsupported GGUF version {version} (expected 2 or 3)", path=path,
                                  hint="re-convert with a current llama.cpp")
        try:
            reader = gguf.GGUFReader(path, "r")
        except Exception as e:  # gguf raises ValueError/IndexError/numpy errors for short or lying files
            raise CheckpointError(f"truncated or corrupt GGUF ({type(e).__name__}: {e})", path=path,
                                  hint="metadata or tensor offsets run past the end of the file; "
                                       "re-convert or re-download it") from None
        fields = dict(reader.fields)
        cfg = gguf_config(fields)
        arch = str(cfg["architecture"])
        n_blocks = int(cfg.get("num_hidden_layers") or 0)
        table = name_table(arch, n_blocks)
        self._reader = reader
        self._by_name: dict[str, Any] = {}
        self._infos: list[TensorInfo] = []
        for t in reader.tensors:
            end = int(t.data_offset) + int(t.n_bytes)
            if end > size:
                raise CheckpointError(f"tensor data ends at byte {end}, past the end of the file ({size} bytes)",
                                      path=path, field=f"tensor '{t.name}'", hint="truncated file")
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            info = make_info(t.name, canonical_name(t.name, table), shape, t.tensor_type.name,
                             int(t.n_bytes), path)
            self._by_name[t.name] = t
            self._infos.append(info)
        meta = {k: _field(fields, k) for k in fields
                if not k.startswith(("tokenizer.ggml.", "GGUF.")) and k != "tokenizer.chat_template"}
        super().__init__(path=path, format=Format.GGUF, files=[path], config=cfg, metadata={"gguf": meta})
        self._permute = arch in PERMUTED_QK_ARCHS
        self._arch = arch
        self._n_head = int(cfg.get("num_attention_heads") or 0)
        self._n_head_kv = int(cfg.get("num_key_value_heads") or self._n_head)

    def tensors(self) -> Iterator[TensorInfo]:
        yield from self._infos

    def _tensor(self, info: TensorInfo) -> Any:
        t = self._by_name.get(info.name)
        if t is None:
            raise CheckpointError("no such tensor in this checkpoint", path=self.path, field=f"tensor '{info.name}'")
        return t

    def _logical(self, info: TensorInfo, arr: np.ndarray) -> np.ndarray:
        arr = arr.reshape(info.shape)
        if self._permute and info.name.endswith((".attn_q.weight", ".attn_q.bias", ".attn_k.weight", ".attn_k.bias")):
            heads = self._n_head if ".attn_q." in info.name else self._n_head_kv
            if heads <= 0:
                key = "head_count" if ".attn_q." in info.name else "head_count_kv"
                raise CheckpointError(f"metadata lacks a positive {self._arch}.attention.{key}, needed to undo "
                                      "llama.cpp's Q/K row permutation", path=self.path, field=f"tensor '{info.name}'",
                                      hint="re-convert with llama.cpp's convert_hf_to_gguf.py")
            try:
                arr = unpermute_qk(arr, heads)
            except ValueError as e:
                raise CheckpointError(f"cannot undo llama.cpp's Q/K permutation: {e}", path=self.path,
                                      field=f"tensor '{info.name}'", hint="head_count metadata disagrees with the tensor shape") from None
        return arr

    def read_native(self, info: TensorInfo) -> np.ndarray:
        t = self._tensor(info)
        native = _NATIVE.get(info.dtype)
        if native is None:
            return self.read(info)  # quantised: zeros only exist after dequantisation
        return self._logical(info, np.asarray(t.data).view(native))

    def read(self, info: TensorInfo) -> np.ndarray:
        from gguf import quants

        t = self._tensor(info)
        try:
            if info.dtype == "BF16":
                data = (np.asarray(t.data).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif info.dtype in _NATIVE:
                with np.errstate(over="ignore"):
                    data = np.asarray(t.data).view(_NATIVE[info.dtype]).astype(np.float32)
            else:
                data = np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        except NotImplementedError:
            raise CheckpointError(f"gguf cannot dequantize type {info.dtype}", path=self.path,
                                  field=f"tensor '{info.name}'", hint="upgrade the gguf package") from None
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"cannot decode {info.dtype} data: {e}", path=self.path,
                                  field=f"tensor '{info.name}'") from None
        return self._logical(info, data)
