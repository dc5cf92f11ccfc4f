"""compressed-tensors sparse checkpoints.

compressed-tensors 0.20 (the venv's version) no longer ships the sparse compressors, so the
files are laid out here as its sparse-bitmask / sparse-24-bitmask compressors wrote them
(values in row-major mask order, little-endian packed bitmask rows, int64 shape), and the
reader's numpy decompression is checked against the dense originals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from edgegate.checkpoint import Format, open_checkpoint
from edgegate.checkpoint.claims import from_checkpoint_dir
from edgegate.errors import CheckpointError

Q = "model.layers.0.self_attn.q_proj"
UP = "model.layers.0.mlp.up_proj"


def _pack(mask: np.ndarray) -> np.ndarray:
    # The library packs with numpy.packbits(mask, axis=-1, bitorder="little"); the golden
    # test below pins the bit order independently.
    return np.packbits(mask, axis=-1, bitorder="little")


def test_bitmask_bit_order_golden() -> None:
    mask = np.array([[1, 0, 1, 0, 0, 0, 0, 0, 1, 1]], dtype=bool)
    assert _pack(mask).tolist() == [[0b00000101, 0b00000011]]


def _bitmask_parts(prefix: str, w: np.ndarray) -> dict[str, np.ndarray]:
    mask = w != 0
    counts = mask.sum(axis=1)
    return {
        f"{prefix}.shape": np.array(w.shape, dtype=np.int64),
        f"{prefix}.compressed": w[mask],
        f"{prefix}.bitmask": _pack(mask),
        f"{prefix}.row_offsets": (np.cumsum(counts) - counts).astype(np.int64),
    }


def _mask24(w: np.ndarray) -> np.ndarray:
    groups = np.abs(w).reshape(-1, 4)
    top2 = np.argsort(-groups, axis=1, kind="stable")[:, :2]
    mask = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(mask, top2, True, axis=1)
    return mask.reshape(w.shape)


def _sparse24_parts(prefix: str, w: np.ndarray) -> dict[str, np.ndarray]:
    mask = _mask24(w)
    return {
        f"{prefix}.shape": np.array(w.shape, dtype=np.int64).reshape(-1, 1),
        f"{prefix}.compressed": w[mask].reshape(w.shape[0], w.shape[1] // 2),
        f"{prefix}.bitmask": _pack(mask),
    }


def _config(fmt: str, structure: str, sparsity: float) -> dict:
    return {
        "model_type": "llama",
        "quantization_config": {
            "quant_method": "compressed-tensors",
            "format": fmt,
            "sparsity_config": {
                "format": fmt,
                "global_sparsity": sparsity,
                "sparsity_structure": structure,
                "targets": ["Linear"],
                "ignore": ["lm_head"],
            },
        },
    }


def test_sparse_bitmask_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    q = rng.standard_normal((6, 20)).astype(np.float16)  # 20 cols: bitmask rows pad to 3 bytes
    q[rng.random(q.shape) < 0.5] = 0
    q[2] = 0  # an all-zero row
    norm = np.ones(20, np.float32)
    save_file(
        {**_bitmask_parts(Q, q), "model.layers.0.input_layernorm.weight": norm},
        str(tmp_path / "model.safetensors"),
    )
    (tmp_path / "config.json").write_text(
        json.dumps(_config("sparse-bitmask", "unstructured", 0.5))
    )
    with open_checkpoint(tmp_path) as ck:
        assert ck.format is Format.COMPRESSED_TENSORS
        assert ck.metadata["sparsity_config"]["format"] == "sparse-bitmask"
        infos = {t.name: t for t in ck.tensors()}
        assert set(infos) == {f"{Q}.weight", "model.layers.0.input_layernorm.weight"}
        qi = infos[f"{Q}.weight"]
        nnz = int((q != 0).sum())
        assert qi.shape == (6, 20) and qi.dtype == "F16"
        assert (
            qi.nbytes == 2 * 8 + nnz * 2 + 6 * 3 + 6 * 8
        )  # shape + values + bitmask + row_offsets
        native = ck.read_native(qi)
        assert native.dtype == np.float16
        np.testing.assert_array_equal(native, q)
        np.testing.assert_array_equal(ck.read(qi), q.astype(np.float32))
        assert int((native == 0).sum()) == q.size - nnz


def test_sparse24_roundtrip_and_claims(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    up = rng.standard_normal((8, 16)).astype(np.float32)
    up[~_mask24(up)] = 0.0
    up[0, 0:4] = [0.0, 0.0, 0.0, 5.0]  # a group with one nonzero: the mask still keeps 2 slots
    save_file(_sparse24_parts(UP, up), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(_config("sparse-24-bitmask", "2:4", 0.0)))
    ck = open_checkpoint(tmp_path)
    (info,) = list(ck.tensors())
    assert info.name == f"{UP}.weight" and info.shape == (8, 16)
    assert info.nbytes == 2 * 8 + 8 * 8 * 4 + 8 * 2
    np.testing.assert_array_equal(ck.read(info), up)
    claims = from_checkpoint_dir(tmp_path)
    assert claims.structure == "2:4" and claims.sparsity == 0.5
    assert claims.source["sparsity"] == "config.json sparsity_config"


def test_mask_count_disagrees_with_values(tmp_path: Path) -> None:
    q = np.array([[1.0, 0.0, 2.0, 0.0]], np.float32)
    parts = _bitmask_parts(Q, q)
    parts[f"{Q}.compressed"] = np.array([1.0, 2.0, 3.0], np.float32)
    save_file(parts, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps(_config("sparse-bitmask", "unstructured", 0.5))
    )
    ck = open_checkpoint(tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'model.layers.0.self_attn.q_proj.weight': bitmask marks 2 values but 3",
    ):
        ck.read(next(ck.tensors()))


def test_missing_part(tmp_path: Path) -> None:
    parts = _bitmask_parts(Q, np.ones((2, 8), np.float32))
    del parts[f"{Q}.bitmask"]
    save_file(parts, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps(_config("sparse-bitmask", "unstructured", 0.0))
    )
    with pytest.raises(CheckpointError, match=r"missing part\(s\) bitmask"):
        open_checkpoint(tmp_path)


def test_unsupported_sparse_format(tmp_path: Path) -> None:
    save_file({"w": np.ones(2, np.float32)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(_config("marlin-24", "2:4", 0.5)))
    with pytest.raises(CheckpointError, match="sparsity format 'marlin-24' is not supported"):
        open_checkpoint(tmp_path)
