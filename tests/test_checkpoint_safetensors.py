"""safetensors reader: real files from safetensors.numpy, then hostile edits of their bytes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from edgegate.checkpoint import Format, open_checkpoint
from edgegate.checkpoint.safetensors_reader import read_header
from edgegate.errors import CheckpointError

Q = "model.layers.0.self_attn.q_proj.weight"
D = "model.layers.0.mlp.down_proj.weight"


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    # Truncation to bf16 is exact for values with <= 8 significant bits (all used below).
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _raw(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def test_single_file_reads_values_dtypes_and_metadata(tmp_path: Path) -> None:
    q = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.0
    d = np.array([[0.0, -0.0, 1.5, 2.0]], dtype=np.float16)
    save_file(
        {Q: q, D: d}, str(tmp_path / "model.safetensors"), metadata={"format": "pt", "note": "x"}
    )
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "llama", "num_hidden_layers": 1})
    )
    with open_checkpoint(tmp_path) as ck:
        assert ck.format is Format.SAFETENSORS
        assert ck.metadata["__metadata__"] == {"format": "pt", "note": "x"}
        assert ck.config is not None and ck.config["num_hidden_layers"] == 1
        infos = {t.name: t for t in ck.tensors()}
        assert infos[Q].shape == (3, 4) and infos[Q].dtype == "F32" and infos[Q].nbytes == 48
        assert infos[Q].layer == 0 and infos[Q].kind.value == "q_proj"
        assert infos[D].kind.value == "down_proj" and infos[D].nbytes == 8
        np.testing.assert_array_equal(ck.read(infos[Q]), q)
        native = ck.read_native(infos[D])
        assert native.dtype == np.float16 and isinstance(native, np.memmap)
        assert int((native == 0).sum()) == 2  # -0.0 counts as zero
        assert ck.read(infos[D]).dtype == np.float32


def test_bf16_native_is_uint16_view_and_read_is_exact(tmp_path: Path) -> None:
    vals = np.array([[1.0, -2.5, 0.0, 3.0], [0.5, -0.0, 96.0, -1.0]], dtype=np.float32)
    bits = _bf16_bits(vals)
    header = {"w": {"dtype": "BF16", "shape": [2, 4], "data_offsets": [0, 16]}}
    f = tmp_path / "m.safetensors"
    f.write_bytes(_raw(header, bits.tobytes()))
    ck = open_checkpoint(f)
    (info,) = list(ck.tensors())
    native = ck.read_native(info)
    assert native.dtype == np.uint16
    np.testing.assert_array_equal(native, bits)
    np.testing.assert_array_equal(ck.read(info), vals)
    # -0.0 in bf16 is 0x8000: zero counting must treat both signs as zero
    assert int(((native & 0x7FFF) == 0).sum()) == 2


def test_fp8_e4m3_decodes_known_codes(tmp_path: Path) -> None:
    codes = np.array(
        [0x00, 0x38, 0xB8, 0x7E, 0x01, 0x7F], dtype=np.uint8
    )  # 0, 1, -1, 448, 2^-9, nan
    f = tmp_path / "m.safetensors"
    f.write_bytes(
        _raw({"w": {"dtype": "F8_E4M3", "shape": [6], "data_offsets": [0, 6]}}, codes.tobytes())
    )
    ck = open_checkpoint(f)
    out = ck.read(next(ck.tensors()))
    np.testing.assert_array_equal(out[:5], [0.0, 1.0, -1.0, 448.0, 2.0**-9])
    assert np.isnan(out[5])


def test_nan_and_inf_do_not_crash(tmp_path: Path) -> None:
    w = np.array([[np.nan, np.inf, -np.inf, 0.0]], dtype=np.float32)
    save_file({Q: w}, str(tmp_path / "model.safetensors"))
    ck = open_checkpoint(tmp_path)
    out = ck.read(next(ck.tensors()))
    assert np.isnan(out[0, 0]) and np.isinf(out[0, 1]) and out[0, 3] == 0


def _sharded(tmp_path: Path) -> Path:
    save_file({Q: np.ones((2, 2), np.float32)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({D: np.zeros((2, 2), np.float32)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    wm = {Q: "model-00001-of-00002.safetensors", D: "model-00002-of-00002.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": wm})
    )
    return tmp_path


def test_sharded_directory(tmp_path: Path) -> None:
    ck = open_checkpoint(_sharded(tmp_path))
    infos = {t.name: t for t in ck.tensors()}
    assert set(infos) == {Q, D}
    assert infos[D].file.name == "model-00002-of-00002.safetensors"
    assert float(ck.read(infos[Q]).sum()) == 4.0
    assert len(ck.files) == 3  # two shards + index


def test_index_lists_tensor_missing_from_shard(tmp_path: Path) -> None:
    d = _sharded(tmp_path)
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    idx["weight_map"]["lm_head.weight"] = "model-00001-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(CheckpointError, match=r"lm_head.weight.*no shard contains it"):
        open_checkpoint(d)


def test_tensor_in_two_shards(tmp_path: Path) -> None:
    d = _sharded(tmp_path)
    save_file(
        {D: np.zeros((2, 2), np.float32), Q: np.ones((2, 2), np.float32)},
        str(d / "model-00002-of-00002.safetensors"),
    )
    with pytest.raises(CheckpointError, match=r"stored in two shards"):
        open_checkpoint(d)


def test_missing_shard_file(tmp_path: Path) -> None:
    d = _sharded(tmp_path)
    (d / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"shard 'model-00002-of-00002.safetensors'.*missing"):
        open_checkpoint(d)


def _good(tmp_path: Path) -> Path:
    f = tmp_path / "model.safetensors"
    save_file(
        {Q: np.arange(8, dtype=np.float32).reshape(2, 4), D: np.ones((2, 2), np.float32)}, str(f)
    )
    return f


def test_golden_header_bytes(tmp_path: Path) -> None:
    f = _good(tmp_path)
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    entries, _ = read_header(f)
    assert [(e.name, e.start - 8 - n, e.nbytes) for e in entries] == sorted(
        [
            (k, v["data_offsets"][0], v["data_offsets"][1] - v["data_offsets"][0])
            for k, v in header.items()
            if k != "__metadata__"
        ],
        key=lambda t: t[1],
    )
    assert entries[-1].start + entries[-1].nbytes == len(raw)


def test_truncated_file(tmp_path: Path) -> None:
    f = _good(tmp_path)
    f.write_bytes(f.read_bytes()[:-4])
    with pytest.raises(
        CheckpointError, match=r"model.safetensors.*(outside the data section|cover)"
    ):
        open_checkpoint(f)


def test_too_short_for_length_prefix(tmp_path: Path) -> None:
    f = tmp_path / "x.safetensors"
    f.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="truncated: file is 2 bytes"):
        open_checkpoint(f)


def test_header_length_larger_than_file(tmp_path: Path) -> None:
    f = tmp_path / "x.safetensors"
    f.write_bytes(struct.pack("<Q", 5000) + b"{}")
    with pytest.raises(
        CheckpointError, match=r"header length 5000 bytes exceeds the file size \(10 bytes\)"
    ):
        open_checkpoint(f)


def test_header_over_cap(tmp_path: Path) -> None:
    f = tmp_path / "x.safetensors"
    f.write_bytes(struct.pack("<Q", 200_000_000) + b"{}")
    with pytest.raises(CheckpointError, match="exceeds the 100000000-byte cap"):
        open_checkpoint(f)


def test_invalid_json(tmp_path: Path) -> None:
    f = tmp_path / "x.safetensors"
    body = b'{"a": '
    f.write_bytes(struct.pack("<Q", len(body)) + body)
    with pytest.raises(CheckpointError, match="not valid UTF-8 JSON"):
        open_checkpoint(f)


def test_duplicate_names(tmp_path: Path) -> None:
    f = tmp_path / "x.safetensors"
    rec = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    rec2 = '{"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}'
    body = f'{{"w": {rec}, "w": {rec2}}}'.encode()
    f.write_bytes(struct.pack("<Q", len(body)) + body + b"\0" * 8)
    with pytest.raises(CheckpointError, match=r"tensor 'w': duplicate tensor name"):
        open_checkpoint(f)


@pytest.mark.parametrize(
    ("rec", "message"),
    [
        (
            {"dtype": "F12", "shape": [2], "data_offsets": [0, 8]},
            r"tensor 'w': unknown dtype 'F12'",
        ),
        (
            {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]},
            r"tensor 'w': shape \[3\] x F32 needs 12 bytes",
        ),
        (
            {"dtype": "F32", "shape": [2], "data_offsets": [0, 80]},
            r"tensor 'w': data_offsets \[0, 80\] fall outside",
        ),
        ({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}, r"tensor 'w': shape \[-2\]"),
        (
            {"dtype": "F32", "shape": [2], "data_offsets": [0]},
            r"tensor 'w': data_offsets \[0\] is not a pair",
        ),
        (
            {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]},
            r"tensor 'w': data_offsets \[8, 0\] are reversed",
        ),
    ],
)
def test_lying_records(tmp_path: Path, rec: dict, message: str) -> None:
    f = tmp_path / "x.safetensors"
    f.write_bytes(_raw({"w": rec}, b"\0" * 8))
    with pytest.raises(CheckpointError, match=message) as ei:
        open_checkpoint(f)
    assert "\n" not in str(ei.value) and "x.safetensors" in str(ei.value)


def test_overlapping_offsets(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    f = tmp_path / "x.safetensors"
    f.write_bytes(_raw(header, b"\0" * 12))
    with pytest.raises(CheckpointError, match=r"tensor 'b': data overlaps tensor 'a'"):
        open_checkpoint(f)


def test_gap_and_trailing_bytes(tmp_path: Path) -> None:
    f = tmp_path / "x.safetensors"
    f.write_bytes(_raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8))
    with pytest.raises(CheckpointError, match=r"tensor 'a': gap of 4 unreferenced bytes"):
        open_checkpoint(f)
    f.write_bytes(_raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8))
    with pytest.raises(CheckpointError, match=r"data section is 8 bytes but tensors cover 4"):
        open_checkpoint(f)


def test_broken_config_json(tmp_path: Path) -> None:
    _good(tmp_path)
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(CheckpointError, match=r"config.json: not valid JSON"):
        open_checkpoint(tmp_path)


def test_packed_quant_hf_checkpoint_refused(tmp_path: Path) -> None:
    save_file(
        {"model.layers.0.self_attn.q_proj.qweight": np.zeros((2, 2), np.int32)},
        str(tmp_path / "model.safetensors"),
    )
    (tmp_path / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "gptq", "bits": 4}})
    )
    with pytest.raises(
        CheckpointError,
        match=r"config.json: quantization_config.quant_method: quantised with 'gptq'",
    ):
        open_checkpoint(tmp_path)
