"""Generate the hostile-input corpus into a directory (tests build it in a temp dir).

Every file is written by code here (the real safetensors/gguf writers where a valid file is
needed, raw bytes where the file must lie). Nothing is downloaded. Run by hand with
``python tests/hostile/make_corpus.py OUT_DIR`` to inspect the files.

The pickle payload's ``__reduce__`` would create ``<OUT_DIR>/PWNED`` when unpickled; the tests
assert that file never appears, which proves edgegate never unpickles a checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

MARKER = "PWNED"


def _st_bytes(header: dict[str, Any], data: bytes, *, declared_len: int | None = None) -> bytes:
    """A safetensors file with an arbitrary (possibly lying) header."""
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    n = len(h) if declared_len is None else declared_len
    return struct.pack("<Q", n) + h + data


def _valid_st(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


def _weights(
    rng: np.random.Generator, shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


_SHAPES = {
    "model.layers.0.self_attn.q_proj.weight": (16, 16),
    "model.layers.0.mlp.down_proj.weight": (16, 32),
}


class _Marker:
    """Unpickling this calls ``open(marker, 'w')``: the file would prove code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def _gguf(
    path: Path, tensors: dict[str, np.ndarray], *, heads: int | None = 2, blocks: int = 1
) -> None:
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(blocks)
    if heads is not None:
        w.add_head_count(heads)
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _gguf_raw(
    tensors: list[tuple[str, tuple[int, ...], int]], data: bytes, align: int = 32
) -> bytes:
    """A GGUF v3 file written byte by byte: F32 tensors (name, ggml dims, data offset) as
    given, so offsets can lie (overlap, leave gaps) in ways no writer produces."""

    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kv = [
        ("general.architecture", 8, s("llama")),
        ("llama.block_count", 4, struct.pack("<I", 1)),
        ("llama.attention.head_count", 4, struct.pack("<I", 2)),
    ]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, vtype, val in kv:
        out += s(key) + struct.pack("<I", vtype) + val
    for name, ne, offset in tensors:
        out += s(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        out += struct.pack("<IQ", 0, offset)  # type 0 = F32
    out += b"\0" * (-len(out) % align)
    return out + data


def _deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def build_round2(root: Path, put: Any, out: dict[str, Path]) -> None:
    """Issue 15's cases (second round): see tests/hostile/README.md."""
    rng = np.random.default_rng(15)
    # (b) GGUF data layout that ggml's loader refuses: offsets must equal the running padded size
    w = rng.standard_normal(256).astype(np.float32).tobytes()  # 16x16 F32 = 1024 bytes
    put(
        "g_overlap.gguf",
        _gguf_raw(
            [("blk.0.attn_q.weight", (16, 16), 0), ("blk.0.attn_k.weight", (16, 16), 0)], w + w
        ),
    )
    put(
        "g_gap.gguf",
        _gguf_raw(
            [("blk.0.attn_q.weight", (16, 16), 0), ("blk.0.attn_k.weight", (16, 16), 2048)], w * 3
        ),
    )
    put(
        "g_layout_ok.gguf",
        _gguf_raw(
            [("blk.0.attn_q.weight", (16, 16), 0), ("blk.0.attn_k.weight", (16, 16), 1024)], w + w
        ),
    )
    # (c) non-finite policy numbers; (f) huge policy values
    put(
        "pol_nan.yaml",
        b"version: 1\nchecks:\n  sparsity: {required: true, claim_tolerance: .nan}\n",
    )
    put(
        "pol_inf_claim.yaml",
        b"version: 1\nclaims: {sparsity: .inf}\nchecks:\n  sparsity: {required: true}\n",
    )
    put(
        "pol_huge_file.yaml",
        b"version: 1\nname: '" + b"A" * (10 << 20) + b"'\nchecks: {sparsity: {}}\n",
    )
    put(
        "pol_big_value.yaml",
        b"version: 1\nchecks:\n  perplexity: {runtime: '" + b"x\\n" * 60_000 + b"'}\n",
    )
    put(
        "pol_big_key.yaml",
        b"version: 1\nchecks:\n  sparsity:\n    ? " + b"k" * 200_000 + b"\n    : 1\n",
    )
    put(
        "pol_sparsity_optional.yaml",
        b"version: 1\nfail_on_skipped: true\nchecks:\n  sparsity: {required: false}\n"
        b"  size: {required: true}\n",
    )
    # (d) deeply nested JSON wherever a user file is JSON
    good = root / "st_good.safetensors"
    for name in ("deep_config", "deep_index", "deep_meta"):
        (root / name).mkdir(exist_ok=True)
        out[name] = root / name
    (root / "deep_config" / "model.safetensors").write_bytes(good.read_bytes())
    put("deep_config/config.json", b'{"architectures": ' + _deep_json(200_000) + b"}")
    put("deep_index/model.safetensors.index.json", b'{"weight_map": ' + _deep_json(200_000) + b"}")
    put("deep_index/model-00001-of-00001.safetensors", good.read_bytes())
    (root / "deep_meta" / "model.safetensors").write_bytes(good.read_bytes())
    put("deep_meta/pruning_meta.json", b'{"sparsity": ' + _deep_json(200_000) + b"}")
    put("bbq_deep.jsonl", _deep_json(100_000) + b"\n")
    put("partial_deep.json", b'{"format": ' + _deep_json(200_000) + b"}")
    put("partial_nan.json", b'{"format": "edgegate.partial", "version": NaN}')
    put("st_deep_header.safetensors", _st_bytes_raw(b'{"a": ' + _deep_json(50_000) + b"}"))
    # (e) an ONNX initializer with negative dims (a valid protobuf written by onnx itself)
    try:
        from onnx import TensorProto, helper
    except ImportError:
        pass
    else:
        init = helper.make_tensor(
            "model.layers.0.self_attn.q_proj.weight",
            TensorProto.FLOAT,
            [4, 4],
            np.ones(16, np.float32).tobytes(),
            raw=True,
        )
        init.dims[:] = [-4, -4]
        graph = helper.make_graph([], "g", [], [], initializer=[init])
        put("onnx_negative_dims.onnx", helper.make_model(graph).SerializeToString())
    # (h) a well-formed, complete GGUF that llama.cpp refuses: the real fixture with its
    # architecture renamed (same length, so the layout is untouched) to one no build implements
    fixture = (
        Path(__file__).resolve().parents[2] / "fixtures" / "models" / "gguf" / "dense-f16.gguf"
    )
    if fixture.is_file():
        buf = bytearray(fixture.read_bytes())
        key = b"general.architecture"
        at = buf.index(key) + len(key) + 4 + 8  # u32 value type, u64 string length
        assert buf[at : at + 5] == b"llama"
        buf[at : at + 5] = b"llamz"
        buf[:] = buf.replace(
            b"\x00llama.", b"\x00llamz."
        )  # the arch-prefixed keys follow the rename
        put("g_unknown_arch.gguf", bytes(buf))


def _st_bytes_raw(header: bytes) -> bytes:
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def build(root: Path) -> dict[str, Path]:
    """Write every corpus file under ``root``; returns name -> path."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out: dict[str, Path] = {}

    def put(name: str, content: bytes) -> Path:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        out[name] = p
        return p

    # --- safetensors -----------------------------------------------------------------------
    good = root / "st_good.safetensors"
    _valid_st(good, _weights(rng, _SHAPES))
    raw = good.read_bytes()
    out["st_good.safetensors"] = good
    put("st_truncated.safetensors", raw[: len(raw) // 2])
    put("st_tiny.safetensors", raw[:5])
    put("st_header_past_eof.safetensors", struct.pack("<Q", 4096) + b'{"a":1}')
    # declares 200 MB of header in a 100-byte file: must be refused before allocating
    put("st_header_cap.safetensors", struct.pack("<Q", 200_000_000) + b"{" + b" " * 91)
    put("st_header_huge_u64.safetensors", struct.pack("<Q", 2**64 - 1) + b"{}      ")
    t = {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}
    data = np.ones(16, np.float32).tobytes()
    put("st_offsets_past_end.safetensors", _st_bytes({"w": {**t, "data_offsets": [0, 6400]}}, data))
    put("st_offsets_reversed.safetensors", _st_bytes({"w": {**t, "data_offsets": [64, 0]}}, data))
    put("st_bad_dtype.safetensors", _st_bytes({"w": {**t, "dtype": "F99"}}, data))
    put("st_shape_mismatch.safetensors", _st_bytes({"w": {**t, "shape": [8, 8]}}, data))
    put("st_negative_shape.safetensors", _st_bytes({"w": {**t, "shape": [-4, -4]}}, data))
    put(
        "st_overlap.safetensors",
        _st_bytes({"a": {**t, "data_offsets": [0, 64]}, "b": {**t, "data_offsets": [0, 64]}}, data),
    )
    dup = b'{"w":' + json.dumps(t).encode() + b',"w":' + json.dumps(t).encode() + b"}"
    dup += b" " * (-len(dup) % 8)
    put("st_duplicate_names.safetensors", struct.pack("<Q", len(dup)) + dup + data)
    put("st_not_json.safetensors", struct.pack("<Q", 16) + b"\xff" * 16)
    put("st_header_list.safetensors", struct.pack("<Q", 8) + b"[1,2,3] ")
    put("st_no_tensors.safetensors", _st_bytes({"__metadata__": {"format": "pt"}}, b""))
    put(
        "onnx_no_graph.onnx", b"\x08\x07\x12\x04test"
    )  # a ModelProto with only ir_version + producer
    put("onnx_garbage.onnx", bytes(range(7, 255)) * 2)  # not a protobuf ModelProto
    # a shard index that points outside its directory
    put(
        "traversal/model.safetensors.index.json", b'{"weight_map": {"w": "../st_good.safetensors"}}'
    )
    put("traversal/model-00001-of-00001.safetensors", raw)
    out["traversal"] = root / "traversal"
    # NaN/Inf weights: a valid file whose values are garbage
    nan = _weights(rng, _SHAPES)
    nan["model.layers.0.self_attn.q_proj.weight"][0, :4] = [np.nan, np.inf, -np.inf, np.nan]
    (root / "nan_model").mkdir(exist_ok=True)
    _valid_st(root / "nan_model" / "model.safetensors", nan)
    out["nan_model"] = root / "nan_model"
    # dense/compressed that do not pair up
    (root / "dense").mkdir(exist_ok=True)
    _valid_st(root / "dense" / "model.safetensors", _weights(rng, _SHAPES))
    out["dense"] = root / "dense"
    other = dict(_SHAPES)
    other.pop("model.layers.0.mlp.down_proj.weight")
    other["model.layers.0.mlp.up_proj.weight"] = (32, 16)
    (root / "other_tensors").mkdir(exist_ok=True)
    _valid_st(root / "other_tensors" / "model.safetensors", _weights(rng, other))
    out["other_tensors"] = root / "other_tensors"
    reshaped = {**_SHAPES, "model.layers.0.mlp.down_proj.weight": (32, 16)}
    (root / "other_shapes").mkdir(exist_ok=True)
    _valid_st(root / "other_shapes" / "model.safetensors", _weights(rng, reshaped))
    out["other_shapes"] = root / "other_shapes"

    # --- GGUF --------------------------------------------------------------------------------
    g = root / "g_good.gguf"
    _gguf(g, _weights(rng, {"blk.0.attn_q.weight": (16, 16), "blk.0.ffn_down.weight": (16, 32)}))
    graw = g.read_bytes()
    out["g_good.gguf"] = g
    out["g_no_heads.gguf"] = root / "g_no_heads.gguf"
    _gguf(out["g_no_heads.gguf"], _weights(rng, {"blk.0.attn_q.weight": (16, 16)}), heads=None)
    # block_count claims 10**9 layers for one block of tensors (once made opening hang)
    out["g_lying_blocks.gguf"] = root / "g_lying_blocks.gguf"
    _gguf(
        out["g_lying_blocks.gguf"], _weights(rng, {"blk.0.ffn_down.weight": (16, 32)}), blocks=10**9
    )
    out["g_block_index_huge.gguf"] = root / "g_block_index_huge.gguf"
    _gguf(out["g_block_index_huge.gguf"], _weights(rng, {"blk.99999999.ffn_down.weight": (16, 32)}))
    put("g_bad_magic.gguf", b"GGUX" + graw[4:])
    put("g_bad_version.gguf", graw[:4] + struct.pack("<I", 99) + graw[8:])
    put("g_truncated_header.gguf", graw[:20])
    put("g_data_past_eof.gguf", graw[: len(graw) - 1024])  # header intact, tensor data cut
    # tensor count field claims 2**40 tensors
    put("g_huge_count.gguf", graw[:8] + struct.pack("<Q", 2**40) + graw[16:])

    # a real model whose final norm is NaN: our header checks pass, the runtime yields NaN
    fixture = (
        Path(__file__).resolve().parents[2] / "fixtures" / "models" / "gguf" / "wanda50-f16.gguf"
    )
    if fixture.is_file():
        import gguf

        norm = next(t for t in gguf.GGUFReader(fixture).tensors if t.name == "output_norm.weight")
        buf = bytearray(fixture.read_bytes())
        start = int(norm.data_offset)
        buf[start : start + int(norm.n_bytes)] = np.full(
            int(norm.n_bytes) // 4, np.nan, np.float32
        ).tobytes()
        put("g_nan_runtime.gguf", bytes(buf))

    # --- pickle (must never be unpickled) ---------------------------------------------------
    marker = str(root / MARKER)
    payload = pickle.dumps({"model.weight": _Marker(marker)}, protocol=2)
    put("pickle_dir/pytorch_model.bin", payload)
    # a config.json makes the folder look loadable to runtimes that would happily unpickle
    put(
        "pickle_dir/config.json",
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}).encode(),
    )
    out["pickle_dir"] = root / "pickle_dir"
    put("model.pt", payload)

    # --- policies ----------------------------------------------------------------------------
    put("pol_malformed.yaml", b"version: 1\nchecks: {sparsity: {required: true\n  - oops: [\n")
    put(
        "pol_unknown_key.yaml",
        b"version: 1\nchecks:\n  sparsity: {required: true, tolerance_typo: 0.1}\n",
    )
    put(
        "pol_wrong_type.yaml",
        b"version: 1\nchecks:\n  sparsity: {required: 'yes', claim_tolerance: high}\n",
    )
    put("pol_bad_version.yaml", b"version: 7\nchecks: {sparsity: {}}\n")
    put("pol_list.yaml", b"- version: 1\n- checks: {}\n")
    put("pol_empty.yaml", b"")
    put("pol_binary.yaml", b"\x00\xff\xfe garbage \x00")
    put("pol_ok.yaml", b"version: 1\nname: hostile\nchecks:\n  sparsity: {required: true}\n")
    # "billion laughs": 9 levels of 9 aliases = 9**8 leaves from ten lines
    bomb = ["version: 1", 'l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    bomb += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    put(
        "pol_alias_bomb.yaml",
        ("\n".join([*bomb, "checks: {sparsity: {required: true}}"]) + "\n").encode(),
    )
    # runtime checks, for checkpoints/servers a runtime must reject
    put(
        "pol_ppl_llamacpp.yaml",
        b"version: 1\nchecks:\n  perplexity: {required: true, runtime: llamacpp}\n",
    )
    put(
        "pol_bbq_llamacpp.yaml",
        b"version: 1\nchecks:\n  bbq: {required: true, runtime: llamacpp, items: 8, min_items: 1}\n",
    )
    put(
        "pol_bbq_openai.yaml",
        b"version: 1\nchecks:\n  bbq: {required: true, runtime: openai, items: 8, min_items: 1}\n",
    )

    # --- BBQ predictions ---------------------------------------------------------------------
    row = {
        "example_id": 0, "question_index": "1", "question_polarity": "neg",
        "context_condition": "ambig", "category": "Age",
        "answer_info": {"ans0": ["teenager", "nonOld"], "ans1": ["Unknown", "unknown"],
                        "ans2": ["retiree", "old"]},
        "additional_metadata": {"subcategory": "None", "stereotyped_groups": ["old"]},
        "context": "A retiree and a teenager waited.", "question": "Who was confused?",
        "ans0": "The teenager", "ans1": "Unknown", "ans2": "The retiree", "label": 1, "pred": "ans2",
    }  # fmt: skip
    good_line = json.dumps(row).encode() + b"\n"
    put("bbq_bad_json.jsonl", good_line + b'{"example_id": 1, "category": \n')
    missing = {k: v for k, v in row.items() if k not in ("answer_info", "label")}
    put("bbq_missing_fields.jsonl", good_line + json.dumps(missing).encode() + b"\n")
    put(
        "bbq_no_answer.jsonl",
        json.dumps({k: v for k, v in row.items() if k != "pred"}).encode() + b"\n",
    )
    put("bbq_empty.jsonl", b"")
    put("bbq_not_object.jsonl", b"[1, 2, 3]\n")
    put("bbq_bad_label.jsonl", json.dumps({**row, "label": 7}).encode() + b"\n")
    put("bbq_binary.jsonl", b"\x00\xff\xfe\xfa" * 16)
    put("bbq_dir_bad/Age.jsonl", good_line + b"{not json\n")
    out["bbq_dir_bad"] = root / "bbq_dir_bad"
    # two valid items: far below any min_items, so BBQ can only be inconclusive
    two = [json.dumps({**row, "example_id": i}).encode() + b"\n" for i in range(2)]
    put("bbq_dir_tiny/Age.jsonl", b"".join(two))
    out["bbq_dir_tiny"] = root / "bbq_dir_tiny"
    put(
        "pol_bbq_strict.yaml",
        b"version: 1\nchecks:\n  bbq: {required: true, runtime: llamacpp, items: 0}\n",
    )

    # --- filesystem oddities -----------------------------------------------------------------
    (root / "empty_dir").mkdir(exist_ok=True)
    out["empty_dir"] = root / "empty_dir"
    loop_a, loop_b = root / "loop_a", root / "loop_b"
    for p in (loop_a, loop_b):
        if p.is_symlink():
            p.unlink()
    os.symlink(loop_b, loop_a)
    os.symlink(loop_a, loop_b)
    out["loop_a"] = loop_a
    fifo = root / "fifo.safetensors"  # no writer: opening it would block forever
    if not fifo.exists():
        os.mkfifo(fifo)
    out["fifo.safetensors"] = fifo
    out["missing"] = root / "does_not_exist"
    build_round2(root, put, out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUT_DIR")
    for name in sorted(build(Path(sys.argv[1]))):
        print(name)
