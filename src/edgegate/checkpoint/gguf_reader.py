"""GGUF reader (own header parser + np.memmap; gguf's dequantisers), HF names and layout.

GGUF stores dims in ggml order (fastest first); reversed, they are the row-major logical
shape, which for linears is HF's ``[out, in]``. llama.cpp's converter
permutes Q/K rows for llama-family archs (rotary pairs interleaved); we invert that so a
tensor lines up element-for-element with its HF counterpart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.checkpoint.base import Checkpoint, Format, TensorInfo
from edgegate.checkpoint.gguf_header import ArraySummary, RawTensor, read_header
from edgegate.checkpoint.names import make_info
from edgegate.errors import CheckpointError

# Archs whose converter (convert_hf_to_gguf LlamaModel and subclasses) permutes Q/K rows.
PERMUTED_QK_ARCHS = frozenset({"llama", "granite", "granitemoe", "deci"})

# Preferred HF leaf names when gguf's name tables offer several spellings per tensor type.
_PREFERRED_LEAVES = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "input_layernorm",
    "post_attention_layernorm",
    "pre_feedforward_layernorm",
    "post_feedforward_layernorm",
    "q_norm",
    "k_norm",
)
_PREFERRED_GLOBAL = ("model.embed_tokens", "lm_head", "model.norm")

_NATIVE = {
    "F32": np.float32,
    "F16": np.float16,
    "F64": np.float64,
    "BF16": np.uint16,
    "I8": np.int8,
    "I16": np.int16,
    "I32": np.int32,
    "I64": np.int64,
}


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K permutation ``reshape(n_head, 2, r/n_head/2, ...).swapaxes(1, 2)``."""
    rows = w.shape[0]
    if n_head <= 0 or rows % (2 * n_head):
        raise ValueError(f"{rows} rows cannot be split into {n_head} heads of rotary pairs")
    rest = w.shape[1:]
    return (
        np.asarray(w).reshape(n_head, rows // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)
    )


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
        cands = [
            *tmap.arch_block_mappings_cfg.get(arch, {}).get(t, ()),
            *tmap.block_mappings_cfg.get(t, ()),
            *tmap.mappings_cfg.get(t, ()),
        ]
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


def gguf_config(meta: dict[str, Any]) -> dict[str, str | int | float]:
    """An HF-config-like dict from GGUF metadata (per-layer arrays give their first value):
    the architecture's name, and the numbers of the keys in ``_CONFIG_KEYS``."""
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else "unknown"
    cfg: dict[str, str | int | float] = {"model_type": arch, "architecture": arch}
    for key, hf in _CONFIG_KEYS.items():
        v = meta.get(f"{arch}.{key}")
        if isinstance(v, list):
            v = v[0] if v else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            cfg[hf] = v
    tokens = meta.get("tokenizer.ggml.tokens")
    if "vocab_size" not in cfg and tokens is not None:
        cfg["vocab_size"] = tokens.count if isinstance(tokens, ArraySummary) else len(tokens)
    if "num_key_value_heads" not in cfg and "num_attention_heads" in cfg:
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    return cfg


def _plain(v: Any) -> Any:
    return {"array_type": v.type, "count": v.count} if isinstance(v, ArraySummary) else v


MAX_BLOCKS = 1024  # far above any real model; the name table costs time per block


def _blocks_used(tensors: list[RawTensor], path: Path) -> int:
    """Blocks the name table must cover: those the tensor names use. The declared block_count
    is not trusted, since a lying one (e.g. 10**9) would make building the table hang."""
    top = -1
    for t in tensors:
        head, _, rest = t.name.partition(".")
        bid = rest.partition(".")[0]
        if head == "blk" and bid.isascii() and bid.isdigit():  # "²".isdigit(), yet int("²") raises
            if len(bid) > 9 or int(bid) >= MAX_BLOCKS:
                raise CheckpointError(
                    f"block index {bid} is implausible (more than {MAX_BLOCKS} layers)",
                    path=path,
                    field=f"tensor '{t.name}'",
                    hint="the GGUF is corrupt",
                )
            top = max(top, int(bid))
    return top + 1


class GGUFCheckpoint(Checkpoint):
    def __init__(self, path: Path) -> None:
        import gguf

        sizes = {int(t): (int(b), int(n)) for t, (b, n) in gguf.GGML_QUANT_SIZES.items()}
        header = read_header(path, sizes)
        cfg = gguf_config(header.metadata)
        from edgegate.checkpoint.config_fields import check_shape_fields

        check_shape_fields(cfg, path)  # metadata may hold a float NaN or a negative head count
        arch = str(cfg["architecture"])
        table = name_table(arch, _blocks_used(header.tensors, path))
        self._raw: dict[str, RawTensor] = {}
        self._infos: list[TensorInfo] = []
        for t in header.tensors:
            qname = gguf.GGMLQuantizationType(t.qtype).name
            shape = tuple(reversed(t.ne))
            self._raw[t.name] = t
            self._infos.append(
                make_info(t.name, canonical_name(t.name, table), shape, qname, t.nbytes, path)
            )
        meta = {
            k: _plain(v)
            for k, v in header.metadata.items()
            if not k.startswith("tokenizer.ggml.") and k != "tokenizer.chat_template"
        }
        meta["gguf.version"] = header.version
        super().__init__(
            path=path, format=Format.GGUF, files=[path], config=cfg, metadata={"gguf": meta}
        )
        self._permute = arch in PERMUTED_QK_ARCHS
        self._arch = arch
        self._n_head = int(cfg.get("num_attention_heads") or 0)
        self._n_head_kv = int(cfg.get("num_key_value_heads") or self._n_head)

    def tensors(self) -> Iterator[TensorInfo]:
        yield from self._infos

    def _tensor(self, info: TensorInfo) -> RawTensor:
        t = self._raw.get(info.name)
        if t is None:
            raise CheckpointError(
                "no such tensor in this checkpoint", path=self.path, field=f"tensor '{info.name}'"
            )
        return t

    def _stored(self, info: TensorInfo, t: RawTensor) -> np.ndarray:
        """The raw data as a read-only memmap: element type for plain types, else uint8 blocks
        with one row of ``ne[0]`` elements per last axis (what gguf.quants.dequantize takes)."""
        native = _NATIVE.get(info.dtype)
        rows = tuple(reversed(t.ne[1:]))
        if native is not None:
            dt, shape = np.dtype(native), (*rows, t.ne[0])
        else:
            row_bytes = t.nbytes // max(1, int(np.prod(rows, dtype=np.int64)))
            dt, shape = np.dtype(np.uint8), (*rows, row_bytes)
        if t.nbytes == 0:
            return np.zeros(shape, dt)
        return np.memmap(self.path, dtype=dt, mode="r", offset=t.start, shape=shape)

    def _logical(self, info: TensorInfo, arr: np.ndarray) -> np.ndarray:
        arr = arr.reshape(info.shape)
        if self._permute and info.name.endswith(
            (".attn_q.weight", ".attn_q.bias", ".attn_k.weight", ".attn_k.bias")
        ):
            heads = self._n_head if ".attn_q." in info.name else self._n_head_kv
            if heads <= 0:
                key = "head_count" if ".attn_q." in info.name else "head_count_kv"
                raise CheckpointError(
                    f"metadata lacks a positive {self._arch}.attention.{key}, needed to undo "
                    "llama.cpp's Q/K row permutation",
                    path=self.path,
                    field=f"tensor '{info.name}'",
                    hint="re-convert with llama.cpp's convert_hf_to_gguf.py",
                )
            try:
                arr = unpermute_qk(arr, heads)
            except ValueError as e:
                raise CheckpointError(
                    f"cannot undo llama.cpp's Q/K permutation: {e}",
                    path=self.path,
                    field=f"tensor '{info.name}'",
                    hint="head_count metadata disagrees with the tensor shape",
                ) from None
        return arr

    def read_native(self, info: TensorInfo) -> np.ndarray:
        if info.dtype not in _NATIVE:
            return self.read(info)  # quantised: zeros only exist after dequantisation
        return self._logical(info, self._stored(info, self._tensor(info)))

    def read(self, info: TensorInfo) -> np.ndarray:
        t = self._tensor(info)
        raw = self._stored(info, t)
        try:
            if info.dtype == "BF16":
                data = (raw.astype(np.uint32) << 16).view(np.float32)
            elif info.dtype in _NATIVE:
                with np.errstate(over="ignore"):
                    data = raw.astype(np.float32)
            else:
                data = _dequantize(raw, t.qtype, t.ne[0])
        except NotImplementedError:
            raise CheckpointError(
                f"gguf cannot dequantize type {info.dtype}",
                path=self.path,
                field=f"tensor '{info.name}'",
                hint="upgrade the gguf package",
            ) from None
        except (ValueError, TypeError) as e:
            raise CheckpointError(
                f"cannot decode {info.dtype} data: {e}",
                path=self.path,
                field=f"tensor '{info.name}'",
            ) from None
        return self._logical(info, data)


DEQUANT_CHUNK_BYTES = 8 << 20  # dequantise ~8 MiB of blocks at a time: bounds the temporaries


def _dequantize(raw: np.ndarray, qtype: int, ne0: int) -> np.ndarray:
    from gguf import GGMLQuantizationType, quants

    q = GGMLQuantizationType(qtype)
    flat = raw.reshape(-1, raw.shape[-1])
    out = np.empty((flat.shape[0], ne0), dtype=np.float32)
    step = max(1, DEQUANT_CHUNK_BYTES // max(1, flat.shape[1]))
    for i in range(0, flat.shape[0], step):
        out[i : i + step] = quants.dequantize(np.asarray(flat[i : i + step]), q)
    return out.reshape(*raw.shape[:-1], ne0)
