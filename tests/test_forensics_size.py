"""Size projections against hand-computed formulas, and measured bytes of real files."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from edgegate.checkpoint import open_checkpoint
from edgegate.forensics.scan import scan_checkpoint
from edgegate.forensics.size import (
    TensorSize,
    bitmask_bytes,
    csr_bytes,
    elem_bytes,
    size_report,
    two_four_bytes,
)


def test_formulas_by_hand() -> None:
    # 4 x 16 bf16 with 32 non-zeros
    assert bitmask_bytes(4, 16, 32, 2) == 32 * 2 + 4 * 2 + 4 * 8 + 16  # 120
    assert two_four_bytes(4, 16, 2) == 32 * 2 + 4 * 2 + 16  # 88
    assert csr_bytes(4, 16, 32, 2) == 32 * 2 + 32 * 4 + 5 * 4  # 212
    # width not a multiple of 8: the bitmask rounds up per row
    assert bitmask_bytes(3, 10, 7, 4) == 7 * 4 + 3 * 2 + 3 * 8 + 16
    assert csr_bytes(1, 2**31, 5, 2) == 5 * 2 + 5 * 8 + 2 * 4  # int64 column indices
    assert elem_bytes("BF16", 0, 1) == 2 and elem_bytes("Q4_K", 144, 256) == 144 / 256


def test_projection_per_tensor_and_total(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"\0" * 1000)
    lin = TensorSize(
        rows=4,
        cols=16,
        numel=64,
        nnz=32,
        stored_nbytes=128,
        elem_bytes=2,
        prunable=True,
        two_four=True,
    )
    norm = TensorSize(
        rows=0,
        cols=16,
        numel=16,
        nnz=16,
        stored_nbytes=32,
        elem_bytes=2,
        prunable=False,
        two_four=False,
    )
    rep = size_report("safetensors", [f], [lin, norm], 0.4)
    assert rep.projected == {
        "dense": 128 + 32,
        "sparse-bitmask": 120 + 32,
        "2:4": 88 + 32,
        "csr": 212 + 32,
    }
    assert rep.disk_bytes == 1000 and rep.tensor_bytes == 160 and rep.saving_as_shipped == 0.0
    assert rep.verdict.startswith("40.0% sparse but stored dense as safetensors: 0 bytes saved")
    assert "as 2:4 the same tensors would take 120 B (25.0% saved)" in rep.verdict
    not24 = TensorSize(4, 16, 64, 40, 128, 2, True, False)
    assert size_report("safetensors", [], [not24], 0.4).projected["2:4"] is None


def test_dense_format_pruned_model_saves_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 64)).astype(np.float32)
    w[:, ::2] = 0.0
    tensors = {"model.layers.0.mlp.up_proj.weight": w, "model.norm.weight": np.ones(64, np.float32)}
    save_file(
        {k: v.astype(ml_dtypes.bfloat16) for k, v in tensors.items()},
        str(tmp_path / "model.safetensors"),
    )
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with open_checkpoint(tmp_path) as ck:
        res = scan_checkpoint(ck)
    sz = res.size
    st_file = tmp_path / "model.safetensors"
    assert sz.files == (
        (str(st_file), st_file.stat().st_size),
    )  # the weight files the reader lists
    assert sz.disk_bytes == st_file.stat().st_size
    assert sz.tensor_bytes == (32 * 64 + 64) * 2 and sz.saving_as_shipped == 0.0
    assert sz.projected["dense"] == (32 * 64 + 64) * 2
    # up_proj: 1024 non-zeros of 2048, 32 rows of 64 -> values + 8-byte bitmask rows + offsets + shape
    assert sz.projected["sparse-bitmask"] == 1024 * 2 + 32 * 8 + 32 * 8 + 16 + 64 * 2
    assert sz.projected["2:4"] == 1024 * 2 + 32 * 8 + 16 + 64 * 2  # every 4-group has 2 zeros
    assert "0 bytes saved" in sz.verdict
