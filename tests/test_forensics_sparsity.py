"""Aggregation, claim-vs-actual and structure on an in-memory checkpoint with the fixture
model's dimensions (hidden 64, intermediate 192, 2 layers, 4 heads, 2 kv heads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgegate.checkpoint.base import Checkpoint, Format, TensorInfo
from edgegate.checkpoint.names import classify
from edgegate.forensics.scan import scan_checkpoint
from edgegate.forensics.sparsity import Aggregate, explain

H, INTER, LAYERS, HEADS, KV = 64, 192, 2, 4, 2
HD = H // HEADS
CONFIG = {"hidden_size": H, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
          "num_attention_heads": HEADS, "num_key_value_heads": KV}  # fmt: skip
SHAPES = {
    "self_attn.q_proj": (HEADS * HD, H),
    "self_attn.k_proj": (KV * HD, H),
    "self_attn.v_proj": (KV * HD, H),
    "self_attn.o_proj": (H, HEADS * HD),
    "mlp.gate_proj": (INTER, H),
    "mlp.up_proj": (INTER, H),
    "mlp.down_proj": (H, INTER),
}


class ArrayCheckpoint(Checkpoint):
    """A Checkpoint backed by numpy arrays (float32), for unit tests of the forensics."""

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        config: dict | None = None,
        metadata: dict | None = None,
    ):
        super().__init__(
            Path("mem://test"), Format.SAFETENSORS, [], config or CONFIG, metadata or {}
        )
        self.arrays = arrays

    def tensors(self) -> Iterator[TensorInfo]:
        for name, a in self.arrays.items():
            layer, kind = classify(name)
            yield TensorInfo(name, name, tuple(a.shape), "F32", a.nbytes, self.path, layer, kind)

    def read(self, info: TensorInfo) -> np.ndarray:
        return self.arrays[info.name].astype(np.float32)


def prune_rows(w: np.ndarray, frac: float) -> np.ndarray:
    """Zero the ``frac`` smallest-|w| entries of every row (row-uniform)."""
    w = w.copy()
    k = round(w.shape[1] * frac)
    idx = np.argsort(np.abs(w), axis=1)[:, :k]
    np.put_along_axis(w, idx, 0.0, axis=1)
    return w


def model(
    skip: tuple[str, ...] = ("o_proj", "down_proj"), frac: float = 0.5, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": rng.standard_normal((512, H)).astype(np.float32)
    }
    for layer in range(LAYERS):
        for n, s in SHAPES.items():
            w = rng.standard_normal(s).astype(np.float32)
            if not n.endswith(skip):
                w = prune_rows(w, frac)
            t[f"model.layers.{layer}.{n}.weight"] = w
        t[f"model.layers.{layer}.input_layernorm.weight"] = np.ones(H, np.float32)
    t["lm_head.weight"] = rng.standard_normal((512, H)).astype(np.float32)
    return t


def test_claimed_50_is_33_percent_and_says_why() -> None:
    res = scan_checkpoint(
        ArrayCheckpoint(model()), claims={"sparsity": 0.5}, claim_sources={"sparsity": "cli"}
    )
    # per layer: q 4096 + k 2048 + v 2048 + gate 12288 + up 12288 = 32768 pruned at 50%
    # of q+k+v+o+gate+up+down = 4096+2048+2048+4096+3*12288 = 49152 -> 16384 / 49152 = 1/3
    assert res.prunable.numel == 2 * 49152
    assert res.prunable.zeros == 2 * 16384
    assert res.prunable.sparsity == pytest.approx(1 / 3)
    assert res.kinds["o_proj"].zeros == 0 and res.kinds["down_proj"].zeros == 0
    assert res.kinds["q_proj"].sparsity == 0.5 and res.kinds["up_proj"].sparsity == 0.5
    assert res.layers[0].sparsity == pytest.approx(1 / 3)
    c = res.sparsity_claim
    assert c is not None and c.claimed == 0.5 and c.n == 98304 and c.source == "cli"
    assert c.reason.startswith(
        "o_proj and down_proj 0.0% -> prunable-linear sparsity 33.3% vs claimed 50.0% "
        "(kinds left dense: o_proj, down_proj"
    )
    assert res.structure.pattern == "unstructured (row-uniform)"
    assert res.structure.row_uniform_tensors == res.structure.pruned_tensors == 10


def test_claim_from_metadata_and_cli_wins() -> None:
    ck = ArrayCheckpoint(
        model(skip=()), metadata={"claims": {"sparsity": 0.4}, "claims_source": "pruning_meta.json"}
    )
    res = scan_checkpoint(ck)
    assert res.sparsity_claim is not None
    assert res.sparsity_claim.source == "pruning_meta.json" and res.sparsity_claim.claimed == 0.4
    assert (
        "vs claimed 40.0%" in res.sparsity_claim.reason
        and "every kind is above" in res.sparsity_claim.reason
    )
    res2 = scan_checkpoint(ck, claims={"sparsity": 0.5})
    assert res2.sparsity_claim is not None and res2.sparsity_claim.claimed == 0.5
    assert res2.sparsity_claim.reason.endswith("matches within 2.0%")


def test_no_claim_means_no_comparison() -> None:
    res = scan_checkpoint(ArrayCheckpoint(model()))
    assert res.sparsity_claim is None and res.claims == {}


def test_explain_names_dense_layers() -> None:
    kinds = {k: Aggregate(5, 10) for k in ("q_proj", "k_proj")}
    layers = {0: Aggregate(10, 20), 1: Aggregate(0, 20)}
    text = explain(0.5, Aggregate(10, 40), kinds, layers)
    assert "layers left dense: 1" in text and "25.0% vs claimed 50.0%" in text


def test_structure_zero_heads_rows_cols_and_nonuniform_rows() -> None:
    t = model(skip=tuple(SHAPES))  # nothing pruned
    q = t["model.layers.0.self_attn.q_proj.weight"]
    q[HD : 2 * HD] = 0.0  # head 1 of q: rows 16..31
    o = t["model.layers.1.self_attn.o_proj.weight"]
    o[:, 3 * HD :] = -0.0  # head 3 of o: columns 48..63
    up = t["model.layers.0.mlp.up_proj.weight"]
    up[7] = 0.0
    up[0, :10] = 0.0
    res = scan_checkpoint(ArrayCheckpoint(t))
    by = {r.name: r for r in res.tensors}
    sq = by["model.layers.0.self_attn.q_proj.weight"].structure
    assert sq is not None and (sq.zero_heads, sq.heads, sq.zero_rows, sq.zero_cols) == (1, 4, HD, 0)
    so = by["model.layers.1.self_attn.o_proj.weight"].structure
    assert so is not None and (so.zero_heads, so.heads, so.zero_cols, so.zero_rows) == (1, 4, HD, 0)
    su = by["model.layers.0.mlp.up_proj.weight"].structure
    assert su is not None and su.zero_rows == 1 and not su.row_uniform
    assert su.row_sparsity_max == 1.0 and su.row_sparsity_min == 0.0
    assert res.structure.zero_heads == 2 and res.structure.zero_rows == HD + 1
    assert res.structure.pattern == "unstructured"


def test_24_pattern_detected() -> None:
    t = model(skip=tuple(SHAPES))
    for name, w in t.items():
        if classify(name)[1].prunable:
            g = w.reshape(w.shape[0], -1, 4)
            idx = np.argsort(np.abs(g), axis=2)[..., :2]
            np.put_along_axis(g, idx, 0.0, axis=2)
    res = scan_checkpoint(ArrayCheckpoint(t))
    assert res.structure.nm_conformance == {"2:4": 1.0, "4:8": 1.0}
    assert res.structure.pattern == "2:4" and res.prunable.sparsity == 0.5
    assert res.size.projected["2:4"] is not None


def test_nan_inf_reported() -> None:
    t = model()
    t["lm_head.weight"][0, :3] = [np.nan, np.inf, -np.inf]
    res = scan_checkpoint(ArrayCheckpoint(t), threads=1)
    assert (res.nan, res.inf) == (1, 2)
    d = res.to_dict()
    assert d["nonfinite"] == {"nan": 1, "inf": 2}
