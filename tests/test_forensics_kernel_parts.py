"""Large tensors scanned as row ranges by several threads give exactly the whole-tensor counts."""

from __future__ import annotations

import itertools
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from edgegate.checkpoint import open_checkpoint
from edgegate.checkpoint.base import TensorInfo
from edgegate.errors import CheckpointError
from edgegate.forensics import scan as S
from edgegate.forensics.zeros import merge_stats, row_parts, rows_of, tensor_stats


def _bf16(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) < 0.5] = 0.0
    w[rng.random(shape) < 0.1] = -0.0
    return w


@pytest.mark.parametrize("cols", [64, 24, 12, 7])
@pytest.mark.parametrize("part_bytes", [1, 300, 4096])
def test_merged_row_parts_equal_the_whole(cols: int, part_bytes: int) -> None:
    rng = np.random.default_rng(cols + part_bytes)
    w = _weights(rng, (45, cols))
    w[3] = 0.0  # an all-zero row
    w[:, 1] = -0.0  # an all-zero column
    w[7, 0], w[9, 2], w[11, 3] = np.nan, np.inf, -np.inf
    bits = _bf16(w)
    whole = tensor_stats(bits, "BF16", block_elems=64)
    ranges = row_parts(bits, part_bytes)
    assert (
        ranges[0][0] == 0
        and ranges[-1][1] == 45
        and all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    )
    assert len(ranges) == (
        1 if part_bytes >= bits.nbytes else min(45, -(-bits.nbytes // part_bytes))
    )
    got = merge_stats(
        [tensor_stats(rows_of(bits, a, b), "BF16", block_elems=64) for a, b in ranges]
    )
    z = w == 0
    assert (got.zeros, got.nan, got.inf, got.numel, got.rows) == (int(z.sum()), 1, 2, w.size, 45)
    assert (whole.zeros, whole.nan, whole.inf) == (got.zeros, got.nan, got.inf)
    assert got.row_zeros is not None and got.row_zeros.tolist() == z.sum(axis=1).tolist()
    assert got.col_all_zero is not None and got.col_all_zero.tolist() == z.all(axis=0).tolist()
    assert got.nm_groups == whole.nm_groups and got.nm_ok == whole.nm_ok
    for nm in got.nm_ok:
        n, m = int(nm[0]), int(nm[2])
        assert got.nm_ok[nm] == int((z.reshape(45, cols // m, m).sum(axis=2) >= n).sum())


def test_one_d_tensors_are_not_split() -> None:
    v = np.zeros(10_000, dtype=np.float32)
    assert row_parts(v, 16) == [(0, 1)]


def _write(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    tensors = {
        "model.embed_tokens.weight": _bf16(rng.standard_normal((300, 64))).view(ml_dtypes.bfloat16),
        "model.layers.0.mlp.down_proj.weight": _bf16(_weights(rng, (64, 200))).view(
            ml_dtypes.bfloat16
        ),
        "model.layers.0.mlp.up_proj.weight": _bf16(_weights(rng, (200, 64))).view(
            ml_dtypes.bfloat16
        ),
        "model.layers.0.self_attn.q_proj.weight": _bf16(_weights(rng, (64, 64))).view(
            ml_dtypes.bfloat16
        ),
        "model.layers.0.input_layernorm.weight": _bf16(np.ones(64)).view(ml_dtypes.bfloat16),
    }
    f = tmp_path / "model.safetensors"
    save_file(tensors, str(f))
    return f


def test_threaded_split_scan_matches_single_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = _write(tmp_path)
    with open_checkpoint(f) as ck:
        one = S.scan_checkpoint(ck, threads=1)
    monkeypatch.setattr(
        S, "PART_BYTES", 1000
    )  # every 2-D tensor here is split into many row ranges
    for threads in (2, 3):
        with open_checkpoint(f) as ck:
            many = S.scan_checkpoint(ck, threads=threads)
        assert [t.to_dict() for t in many.tensors] == [t.to_dict() for t in one.tensors]
        assert many.structure == one.structure and many.overall == one.overall


def test_worker_error_reaches_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a read failing in the middle of a threaded scan (a mock: a file that opens cleanly and
    # then fails to map cannot be made portably) must surface as that error, not hang
    f = _write(tmp_path)
    monkeypatch.setattr(S, "PART_BYTES", 1000)
    with open_checkpoint(f) as ck:
        real = ck.read_native

        def flaky(info: TensorInfo) -> np.ndarray:
            if "up_proj" in info.name:
                raise CheckpointError("cannot map tensor data", path=f, field=info.name)
            return real(info)

        monkeypatch.setattr(ck, "read_native", flaky)
        with pytest.raises(CheckpointError, match="cannot map"):
            S.scan_checkpoint(ck, threads=2)
