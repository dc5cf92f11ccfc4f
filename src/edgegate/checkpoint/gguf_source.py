"""What the GGUF writer reads from a Hugging Face directory: the safetensors tensors (located
from their headers, loaded in their stored type) and the config.json fields it needs."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegate import safe_json
from edgegate.checkpoint.safetensors_reader import MAX_HEADER_BYTES
from edgegate.errors import CheckpointError

# --------------------------------------------------------------------------- safetensors
_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


@dataclass(frozen=True)
class _StTensor:
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in file
    end: int


def _scan_safetensors(hf_dir: Path) -> dict[str, _StTensor]:
    index = hf_dir / "model.safetensors.index.json"
    if index.exists():
        weight_map = _read_json(index).get("weight_map", {})
        if not isinstance(weight_map, dict):
            raise CheckpointError("weight_map is not an object", path=index, field="weight_map")
        files = sorted({hf_dir / f for f in weight_map.values()})
    else:
        files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise CheckpointError(
            "no *.safetensors weights found",
            path=hf_dir,
            hint="pass a Hugging Face directory saved with safe_serialization=True",
        )
    out: dict[str, _StTensor] = {}
    for f in files:
        with f.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise CheckpointError("truncated safetensors header", path=f)
            (n,) = struct.unpack("<Q", raw)
            if n > MAX_HEADER_BYTES:  # read(n) would allocate n bytes before finding the file short
                raise CheckpointError(
                    f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte cap", path=f
                )
            header = safe_json.loads(fh.read(n), where=f, error=CheckpointError)
        base = 8 + n
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            if meta["dtype"] not in _ST_DTYPES:
                raise CheckpointError(
                    f"dtype {meta['dtype']} is not supported",
                    path=f,
                    field=name,
                    hint="supported: " + ", ".join(_ST_DTYPES),
                )
            start, end = meta["data_offsets"]
            out[name] = _StTensor(f, meta["dtype"], tuple(meta["shape"]), base + start, base + end)
    return out


def _load(t: _StTensor) -> np.ndarray:
    """The tensor in its stored type (bf16 as uint16 bits)."""
    dt = np.dtype(_ST_DTYPES[t.dtype]).newbyteorder("<")
    count = (t.end - t.start) // dt.itemsize
    arr = np.fromfile(t.file, dtype=dt, count=count, offset=t.start)
    return arr.reshape(t.shape)


def _to_f32(arr: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


# --------------------------------------------------------------------------- config
def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(
            "file not found", path=path, hint="the GGUF writer needs a Hugging Face model directory"
        )
    data = safe_json.load(path, error=CheckpointError, expect_object=False)
    if not isinstance(data, dict):
        raise CheckpointError("expected a JSON object", path=path)
    return data


def _cfg_int(cfg: dict[str, Any], key: str, path: Path) -> int:
    v = cfg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise CheckpointError(f"expected a positive integer, got {v!r}", path=path, field=key)
    return v


def _rope_theta(cfg: dict[str, Any], path: Path) -> float:
    # transformers >= 5 nests RoPE settings under rope_parameters
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    rtype = (
        params.get("rope_type", params.get("type", "default"))
        if isinstance(params, dict)
        else "default"
    )
    if rtype not in ("default", None):
        raise CheckpointError(
            f"RoPE type '{rtype}' is not supported by the GGUF writer",
            path=path,
            field="rope_parameters",
            hint="supported: default",
        )
    theta = cfg.get("rope_theta", params.get("rope_theta") if isinstance(params, dict) else None)
    return float(theta) if theta is not None else 10000.0


@dataclass(frozen=True)
class _Shape:
    """The model dimensions the GGUF header needs, read from config.json."""

    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_layer: int
    n_vocab: int

    @classmethod
    def of(cls, cfg: dict[str, Any], cfg_path: Path) -> _Shape:
        n_embd = _cfg_int(cfg, "hidden_size", cfg_path)
        n_head = _cfg_int(cfg, "num_attention_heads", cfg_path)
        n_head_kv = cfg.get("num_key_value_heads") or n_head
        head_dim = cfg.get("head_dim") or n_embd // n_head
        n_layer = _cfg_int(cfg, "num_hidden_layers", cfg_path)
        n_vocab = _cfg_int(cfg, "vocab_size", cfg_path)
        return cls(n_embd, n_head, int(n_head_kv), int(head_dim), n_layer, n_vocab)
