"""Every committed fixture checkpoint reads, in its format, with the manifest's zero counts.

MANIFEST.json's per-tensor ``zeros`` were computed by the fixture builder (torch, at build
time) independently of these readers; ``neg_zeros`` checks -0.0 is seen as zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgegate.checkpoint import Checkpoint, Format, TensorInfo, open_checkpoint, pair_tensors
from edgegate.checkpoint.claims import from_checkpoint_dir
from edgegate.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "fixtures" / "MANIFEST.json"
FIXTURES: dict[str, Any] = json.loads(MANIFEST.read_text())["fixtures"] if MANIFEST.exists() else {}


def _zeros(ck: Checkpoint, info: TensorInfo) -> tuple[int, int]:
    """(zeros, negative zeros) as zero counting sees them: by bit pattern for bf16/f16."""
    x = np.asarray(ck.read_native(info))
    if x.dtype == np.uint16 and info.dtype == "BF16":
        return int(((x & 0x7FFF) == 0).sum()), int((x == 0x8000).sum())
    zero = x == 0
    return int(zero.sum()), int((zero & np.signbit(x)).sum()) if x.dtype.kind == "f" else 0


def test_manifest_present() -> None:
    assert FIXTURES, f"{MANIFEST} is missing or empty"


def _mlx_reference_zeros(path: Path) -> dict[str, int]:
    """Zeros of every quantised weight as mlx.core.dequantize computes it (the reference).

    The manifest dequantises MLX groups in float32 without MLX's rounding to the scales'
    dtype (bf16) after the multiply and the add, so its counts for these tensors differ
    from MLX's own; the reader matches mx.dequantize bit for bit."""
    mx = pytest.importorskip("mlx.core")
    cfg = json.loads((path / "config.json").read_text())["quantization"]
    arrays: dict[str, Any] = {}
    for f in sorted(path.glob("*.safetensors")):
        arrays.update(mx.load(str(f)))
    out = {}
    for name, w in arrays.items():
        base = name.removesuffix(".weight")
        if name.endswith(".weight") and f"{base}.scales" in arrays:
            deq = mx.dequantize(
                w,
                arrays[f"{base}.scales"],
                arrays[f"{base}.biases"],
                group_size=cfg["group_size"],
                bits=cfg["bits"],
            )
            out[name] = int(np.asarray((deq == 0).astype(mx.int32)).sum())
    return out


@pytest.mark.parametrize("key", sorted(FIXTURES))
def test_fixture_reads_with_manifest_zero_counts(key: str) -> None:
    fx = FIXTURES[key]
    with open_checkpoint(ROOT / fx["path"]) as ck:
        assert ck.format is Format(fx["format"]), f"{key}: detected {ck.format}"
        expected = {k: dict(v) for k, v in fx["expected"]["tensors"].items()}
        if fx["format"] == "mlx" and (fx.get("quantization") or {}).get("bits"):
            for name, zeros in _mlx_reference_zeros(ROOT / fx["path"]).items():
                expected[name]["zeros"] = zeros
        infos = {t.canonical: t for t in ck.tensors()}
        assert set(infos) == set(expected)
        for name, exp in expected.items():
            info = infos[name]
            assert list(info.shape) == exp["shape"], name
            assert info.kind.value == exp["kind"] and info.layer == exp["layer"], name
            zeros, neg = _zeros(ck, info)
            assert (zeros, neg) == (exp["zeros"], exp["neg_zeros"]), name
            values = ck.read(info)
            assert values.dtype == np.float32 and values.shape == tuple(exp["shape"])
            assert int((values == 0).sum()) == exp["zeros"], name
        assert ck.disk_bytes <= fx["total_bytes"]


# Single-file fixtures (GGUF) carry no claims: pruning_meta.json lives beside HF-style dirs.
@pytest.mark.parametrize(
    "key",
    sorted(
        k
        for k in FIXTURES
        if FIXTURES[k].get("pruning_meta") and (ROOT / FIXTURES[k]["path"]).is_dir()
    ),
)
def test_fixture_claims(key: str) -> None:
    fx = FIXTURES[key]
    claims = from_checkpoint_dir(ROOT / fx["path"])
    assert claims.sparsity == fx["claimed_sparsity"]
    assert claims.method == fx["pruning_meta"].get("method")
    assert claims.source["sparsity"] in ("pruning_meta.json", "config.json sparsity_config")


def test_every_fixture_pairs_with_dense() -> None:
    dense = open_checkpoint(ROOT / FIXTURES["dense"]["path"])
    for key, fx in FIXTURES.items():
        other = open_checkpoint(ROOT / fx["path"])
        try:
            pairs = pair_tensors(dense, other)
        except CheckpointError as e:  # pragma: no cover - the message is the diagnosis
            pytest.fail(f"{key}: {e}")
        assert len(pairs) == len(FIXTURES["dense"]["expected"]["tensors"])


def test_gguf_fixture_matches_dense_values() -> None:
    """Reading GGUF undoes the writer's Q/K permutation: values equal the HF bf16 ones."""
    keys = [
        k
        for k, fx in FIXTURES.items()
        if fx["format"] == "gguf" and fx.get("source", "").endswith("dense")
    ]
    assert keys
    dense = open_checkpoint(ROOT / FIXTURES["dense"]["path"])
    for key in keys:
        g = open_checkpoint(ROOT / FIXTURES[key]["path"])
        tol = FIXTURES[key].get("max_abs_diff_vs_source", 0.0) + 1e-12
        for a, b in pair_tensors(dense, g):
            diff = float(np.max(np.abs(dense.read(a) - g.read(b))))
            assert diff <= tol, f"{key}: {a.canonical} differs by {diff}"
