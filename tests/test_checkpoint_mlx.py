"""MLX reader: files written by mlx itself; numpy dequantisation checked against mx.dequantize."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgegate.checkpoint import Format, open_checkpoint
from edgegate.checkpoint.mlx_reader import unpack_codes
from edgegate.errors import CheckpointError

mx = pytest.importorskip("mlx.core")  # mlx is a product extra; the dev venv always has it

Q = "model.layers.0.self_attn.q_proj"
DOWN = "model.layers.0.mlp.down_proj"


def _make(
    tmp_path: Path, bits: int = 4, down_bits: int = 8, dtype: str = "float32"
) -> dict[str, object]:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((8, 64)).astype(np.float32)
    q[:, :32] = 0.0  # a whole group of zeros: quantises to exact zeros (scale 0, bias 0)
    down = rng.standard_normal((4, 128)).astype(np.float32)
    norm = np.ones(64, np.float32)
    norm[3] = 0.0
    arrays: dict[str, object] = {
        "model.layers.0.input_layernorm.weight": mx.array(norm).astype(getattr(mx, dtype))
    }
    refs: dict[str, object] = {}
    for name, w, b in ((Q, q, bits), (DOWN, down, down_bits)):
        wq, s, bi = mx.quantize(mx.array(w).astype(getattr(mx, dtype)), group_size=32, bits=b)
        arrays[f"{name}.weight"], arrays[f"{name}.scales"], arrays[f"{name}.biases"] = wq, s, bi
        refs[name] = np.array(mx.dequantize(wq, s, bi, group_size=32, bits=b).astype(mx.float32))
    mx.save_safetensors(str(tmp_path / "model.safetensors"), arrays, metadata={"format": "mlx"})
    cfg = {
        "model_type": "llama",
        "quantization": {
            "group_size": 32,
            "bits": bits,
            DOWN: {"group_size": 32, "bits": down_bits},
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return refs


@pytest.mark.parametrize(("bits", "down_bits"), [(4, 8), (2, 3), (6, 5)])
def test_dequantize_matches_mlx(tmp_path: Path, bits: int, down_bits: int) -> None:
    refs = _make(tmp_path, bits, down_bits)
    with open_checkpoint(tmp_path) as ck:
        assert ck.format is Format.MLX
        infos = {t.name: t for t in ck.tensors()}
        assert f"{Q}.scales" not in infos and f"{Q}.biases" not in infos
        qi = infos[f"{Q}.weight"]
        assert qi.shape == (8, 64) and qi.dtype == f"Q{bits}_G32"
        # packed codes + fp32 scales + fp32 biases (2 groups per row)
        assert qi.nbytes == 8 * 64 * bits // 8 + 2 * (8 * 2 * 4)
        np.testing.assert_allclose(ck.read(qi), refs[Q], rtol=0, atol=1e-6)
        di = infos[f"{DOWN}.weight"]
        assert di.shape == (4, 128) and di.dtype == f"Q{down_bits}_G32"
        np.testing.assert_allclose(ck.read(di), refs[DOWN], rtol=0, atol=1e-6)
        native = ck.read_native(qi)
        assert (
            native.dtype == np.float32
            and int((native == 0).sum()) == int((refs[Q] == 0).sum()) >= 8 * 32
        )
        assert ck.metadata["quantization"]["bits"] == bits


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_scales_bit_exact(tmp_path: Path, dtype: str) -> None:
    refs = _make(tmp_path, dtype=dtype)
    ck = open_checkpoint(tmp_path)
    for name in (Q, DOWN):
        info = next(t for t in ck.tensors() if t.name == f"{name}.weight")
        # MLX rounds to the scales' dtype after the multiply and after the add; so do we.
        np.testing.assert_array_equal(ck.read(info), refs[name])
    norm = next(t for t in ck.tensors() if t.name.endswith("input_layernorm.weight"))
    assert int((ck.read(norm) == 0).sum()) == 1


def test_unpack_codes_golden() -> None:
    # 4-bit codes 0..7 packed little-endian into one word: 0x76543210
    word = np.array([[0x76543210]], dtype=np.uint32)
    np.testing.assert_array_equal(unpack_codes(word, 4, 8), [[0, 1, 2, 3, 4, 5, 6, 7]])
    # 3-bit stream: codes 1..7 then 0 fill 24 bits; 10 codes of 3 bits span words
    codes = [1, 2, 3, 4, 5, 6, 7, 0, 5, 3]
    stream = sum(c << (3 * i) for i, c in enumerate(codes))
    words = np.array([[stream & 0xFFFFFFFF, stream >> 32, 0]], dtype=np.uint32)
    np.testing.assert_array_equal(unpack_codes(words, 3, 10), [codes])


def test_unquantized_mlx_dir(tmp_path: Path) -> None:
    mx.save_safetensors(
        str(tmp_path / "model.safetensors"),
        {f"{Q}.weight": mx.zeros((2, 2))},
        metadata={"format": "mlx"},
    )
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    ck = open_checkpoint(tmp_path)
    assert ck.format is Format.MLX
    (info,) = list(ck.tensors())
    assert info.dtype == "F32" and int((ck.read_native(info) == 0).sum()) == 4


def test_config_disagrees_with_packing(tmp_path: Path) -> None:
    _make(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["quantization"]["bits"] = 8
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'model.layers.0.self_attn.q_proj.weight'.*do not fit group_size=32, bits=8",
    ):
        open_checkpoint(tmp_path)


def test_unsupported_mode(tmp_path: Path) -> None:
    _make(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["quantization"]["mode"] = "mxfp4"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="mode 'mxfp4' is not supported"):
        open_checkpoint(tmp_path)
