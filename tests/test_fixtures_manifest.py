"""fixtures/MANIFEST.json agrees with the committed fixture files (numpy recomputation).

Independent of edgegate's readers: a tiny safetensors parser here, gguf.GGUFReader for
GGUF. A rebuilt fixture that drifts (different bytes, zeros, shapes) fails this test.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "fixtures" / "MANIFEST.json"
PRUNABLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ST_DTYPES = {
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "U32": "<u4",
    "U8": "u1",
    "I8": "i1",
    "I32": "<i4",
    "I64": "<i8",
    "BOOL": "u1",
}

if not MANIFEST.exists():  # pragma: no cover - the fixtures are committed
    pytest.fail(f"{MANIFEST} missing: run python fixtures/build.py", pytrace=False)
DATA: dict[str, Any] = json.loads(MANIFEST.read_text())
FIXTURES: dict[str, Any] = DATA["fixtures"]


def _safetensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    out = {}
    for name, m in json.loads(raw[8 : 8 + n]).items():
        if name != "__metadata__":
            s, e = m["data_offsets"]
            out[name] = (
                m["dtype"],
                np.frombuffer(raw[8 + n + s : 8 + n + e], ST_DTYPES[m["dtype"]]).reshape(
                    m["shape"]
                ),
            )
    return out


def _is_zero(dtype: str, a: np.ndarray) -> np.ndarray:
    return (a & 0x7FFF) == 0 if dtype == "BF16" else a == 0


def _kind(name: str) -> str:
    for k in PRUNABLE:
        if f"{k}." in name:
            return k
    if "embed_tokens" in name:
        return "embed"
    return "lm_head" if name.startswith("lm_head") else "norm" if "norm" in name else "other"


def _bf16(dt: str, a: np.ndarray) -> np.ndarray:
    return (a.astype(np.uint32) << 16).view(np.float32) if dt == "BF16" else a.astype(np.float32)


def _st_dir(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    out: dict[str, tuple[str, np.ndarray]] = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(_safetensors(f))
    return out


def _gguf(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    gguf = pytest.importorskip("gguf")
    layer = {
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    top = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output.weight": "lm_head.weight",
        "output_norm.weight": "model.norm.weight",
    }
    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        p = t.name.split(".")
        name = top.get(t.name) or f"model.layers.{p[1]}.{layer[p[2]]}.weight"
        shape = tuple(int(x) for x in reversed(t.shape))
        # q/k rows are stored permuted; zeros, zero rows and 2:4 groups are row-order invariant
        out[name] = ("F32", gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape))
    return out


def _mlx(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    q = json.loads((path / "config.json").read_text()).get("quantization")
    raw = _st_dir(path)
    out = {}
    for name, (dt, a) in raw.items():
        base = name.rsplit(".", 1)[0]
        if name.endswith((".scales", ".biases")):
            continue
        if q and dt == "U32":
            bits, gs = q["bits"], q["group_size"]
            per = 32 // bits
            vals = np.stack([(a >> (bits * i)) & ((1 << bits) - 1) for i in range(per)], axis=-1)
            vals = vals.reshape(a.shape[0], -1, gs).astype(np.float32)
            # MLX dequantises in the scales' dtype (bf16): round after the multiply and the add.
            # ml_dtypes' cast is an implementation independent of the fixture builder's.
            bf16 = ml_dtypes.bfloat16
            prod = (vals * _bf16(*raw[base + ".scales"])[..., None]).astype(bf16).astype(np.float32)
            w = (prod + _bf16(*raw[base + ".biases"])[..., None]).astype(bf16).astype(np.float32)
            out[name] = ("F32", w.reshape(a.shape[0], -1))
        else:
            out[name] = (dt, a)
    return out


def _onnx(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    out = {}
    for init in onnx.load(str(path / "model.onnx")).graph.initializer:
        a = numpy_helper.to_array(init)
        out[init.name.removesuffix(".T")] = ("F32", a.T if init.name.endswith(".T") else a)
    return out


def _compressed(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    raw = _st_dir(path)
    out = {}
    for name, (dt, a) in raw.items():
        if name.endswith((".bitmask", ".shape", ".row_offsets")):
            continue
        if name.endswith(".compressed"):
            base = name.removesuffix(".compressed")
            rows, cols = raw[base + ".shape"][1].ravel().tolist()
            bits = np.unpackbits(raw[base + ".bitmask"][1], axis=1, bitorder="little")[:, :cols]
            w = np.zeros((rows, cols), dtype=a.dtype)
            w[bits == 1] = a.ravel()
            out[base + ".weight"] = (dt, w)
        else:
            out[name] = (dt, a)
    return out


def _load(entry: dict[str, Any]) -> dict[str, tuple[str, str, np.ndarray]]:
    """canonical HF name -> (kind, dtype, logical array as a reader should see it)."""
    path = REPO / entry["path"]
    loaders = {
        "safetensors": _st_dir,
        "gguf": _gguf,
        "mlx": _mlx,
        "onnx": _onnx,
        "compressed-tensors": _compressed,
    }
    if entry["format"] not in loaders:
        raise AssertionError(f"manifest test does not know format {entry['format']!r}; extend it")
    return {n: (_kind(n), dt, a) for n, (dt, a) in loaders[entry["format"]](path).items()}


def test_manifest_shape() -> None:
    assert DATA["version"] == 1
    assert "dense" in FIXTURES
    for name, e in FIXTURES.items():
        for key in (
            "path",
            "format",
            "dtype",
            "claimed_sparsity",
            "files",
            "total_bytes",
            "expected",
        ):
            assert key in e, (name, key)
        assert (REPO / e["path"]).exists(), name


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_files_unchanged(name: str) -> None:
    e = FIXTURES[name]
    for f in e["files"]:
        data = (REPO / f["path"]).read_bytes()
        assert len(data) == f["bytes"], f["path"]
        assert hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
    assert sum(f["bytes"] for f in e["files"]) == e["total_bytes"]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_expected_numbers(name: str) -> None:
    e = FIXTURES[name]
    exp = e["expected"]
    tensors = _load(e)
    assert len(tensors) == len(exp["tensors"])
    kinds: dict[str, list[int]] = {}
    tot = [0, 0]
    for name_, (kind, dt, a) in tensors.items():
        z = _is_zero(dt, a)
        zeros, numel = int(z.sum()), int(a.size)
        k = kinds.setdefault(kind, [0, 0])
        k[0] += zeros
        k[1] += numel
        tot[0] += zeros
        tot[1] += numel
        t = exp["tensors"][name_]
        assert (t["zeros"], t["numel"], t["kind"], t["shape"]) == (
            zeros,
            numel,
            kind,
            list(a.shape),
        ), name_
        neg = int((a == 0x8000).sum()) if dt == "BF16" else int(((a == 0) & np.signbit(a)).sum())
        assert t["neg_zeros"] == neg, name_
        if a.ndim == 2:
            assert t["zero_rows"] == int(z.all(axis=1).sum()), name_
            g = z.reshape(a.shape[0], -1, 4).sum(axis=2)
            assert t["nm24_conformant_groups"] == int((g >= 2).sum()), name_
    for kind, (zeros, numel) in kinds.items():
        assert (exp["by_kind"][kind]["zeros"], exp["by_kind"][kind]["numel"]) == (zeros, numel), (
            kind
        )
    pz = sum(kinds[k][0] for k in PRUNABLE)
    pn = sum(kinds[k][1] for k in PRUNABLE)
    assert (exp["prunable"]["zeros"], exp["prunable"]["numel"]) == (pz, pn)
    assert exp["prunable"]["sparsity"] == pytest.approx(pz / pn)
    assert (exp["all"]["zeros"], exp["all"]["numel"]) == tuple(tot)


def test_trained_model_beats_random() -> None:
    dense = FIXTURES["dense"]["eval_ppl"]
    assert dense < DATA["random_init_eval_ppl"] / 50
    if "llamacpp_eval_ppl" in FIXTURES.get("gguf/dense-f16", {}):
        assert FIXTURES["gguf/dense-f16"]["llamacpp_eval_ppl"] == pytest.approx(dense, rel=0.01)


@pytest.mark.parametrize("name", [n for n in ("claimed50",) if n in FIXTURES])
def test_claimed50_lies(name: str) -> None:
    e = FIXTURES[name]
    assert e["claimed_sparsity"] == 0.5
    assert e["expected"]["prunable"]["sparsity"] == pytest.approx(1 / 3, abs=1e-4)
    assert e["expected"]["by_kind"]["o_proj"]["zeros"] == 0
    assert e["expected"]["by_kind"]["down_proj"]["zeros"] == 0


def test_names_follow_hf_layout() -> None:
    names = FIXTURES["dense"]["expected"]["tensors"]
    assert all(re.match(r"^(model\.|lm_head\.)", n) for n in names)
