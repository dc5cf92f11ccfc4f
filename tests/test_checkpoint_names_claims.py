"""Name classification, what a checkpoint claims about itself, and tensor pairing across
checkpoints (parsing ``--claim`` and its precedence: tests/test_runner.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from edgegate.checkpoint import ModuleKind, kind_of, open_checkpoint, pair_tensors
from edgegate.checkpoint.claims import Claims, from_checkpoint_dir, from_mapping
from edgegate.checkpoint.names import classify, is_artifact
from edgegate.errors import CheckpointError, InputError


@pytest.mark.parametrize(
    ("name", "layer", "kind"),
    [
        ("model.layers.12.self_attn.q_proj.weight", 12, ModuleKind.Q),
        ("model.layers.0.self_attn.k_proj.bias", 0, ModuleKind.K),
        ("model.layers.3.self_attn.v_proj.weight", 3, ModuleKind.V),
        ("model.layers.3.self_attn.o_proj.weight", 3, ModuleKind.O),
        ("model.layers.1.mlp.gate_proj.weight", 1, ModuleKind.GATE),
        ("model.layers.1.mlp.up_proj.weight", 1, ModuleKind.UP),
        ("model.layers.1.mlp.down_proj.weight", 1, ModuleKind.DOWN),
        ("model.layers.1.mlp.down_proj.scales", 1, ModuleKind.DOWN),
        ("model.embed_tokens.weight", None, ModuleKind.EMBED),
        ("lm_head.weight", None, ModuleKind.HEAD),
        ("model.norm.weight", None, ModuleKind.NORM),
        ("model.layers.2.input_layernorm.weight", 2, ModuleKind.NORM),
        ("model.layers.2.pre_feedforward_layernorm.weight", 2, ModuleKind.NORM),
        ("model.layers.2.self_attn.q_norm.weight", 2, ModuleKind.NORM),
        ("model.layers.2.self_attn.rotary_emb.inv_freq", 2, ModuleKind.OTHER),
        ("blk.7.attn_q.weight", 7, ModuleKind.Q),
        ("blk.7.ffn_down.weight", 7, ModuleKind.DOWN),
        ("blk.7.attn_output.weight", 7, ModuleKind.O),
        ("token_embd.weight", None, ModuleKind.EMBED),
        ("output.weight", None, ModuleKind.HEAD),
        ("output_norm.weight", None, ModuleKind.NORM),
        ("rope_freqs.weight", None, ModuleKind.OTHER),
    ],
)
def test_classify(name: str, layer: int | None, kind: ModuleKind) -> None:
    assert classify(name) == (layer, kind)
    assert kind_of(name) is kind


def test_prunable_and_artifacts() -> None:
    assert kind_of("model.layers.0.mlp.down_proj.weight").prunable
    assert not kind_of("model.embed_tokens.weight").prunable
    assert is_artifact("rope_freqs.weight") and is_artifact(
        "model.layers.0.self_attn.rotary_emb.inv_freq"
    )
    assert not is_artifact("model.norm.weight")


def test_from_mapping_values_and_sources() -> None:
    c = from_mapping(
        {"sparsity": "50%", "speedup": "1.5x", "size_reduction": 0.3, "method": "wanda"}, "policy"
    )
    assert (c.sparsity, c.speedup, c.size_saving, c.method) == (0.5, 1.5, 0.3, "wanda")
    assert c.source == dict.fromkeys(("sparsity", "speedup", "size_saving", "method"), "policy")
    meta = from_mapping({"sparsity": 0.5, "scope": "row"}, "pruning_meta.json", strict=False)
    assert meta.to_dict()["source"] == {"sparsity": "pruning_meta.json"}
    assert Claims().is_empty() and not meta.is_empty()
    with pytest.raises(InputError, match=r"unknown claim 'scope' \(known claims: sparsity"):
        from_mapping({"scope": "row"}, "policy")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("half", r"claim 'sparsity' must be a number, got 'half'"),
        ("50", r"claim 'sparsity' must be a fraction in \[0, 1\], got '50' \(write sparsity=0.5"),
        ("nan", r"must be a finite number"),
    ],
)
def test_from_mapping_errors(value: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as ei:
        from_mapping({"sparsity": value}, "policy")
    assert "\n" not in str(ei.value)


def test_config_sparsity_wins_over_pruning_meta(tmp_path: Path) -> None:
    (tmp_path / "pruning_meta.json").write_text(json.dumps({"sparsity": 0.4, "method": "wanda"}))
    sc = {"format": "sparse-bitmask", "global_sparsity": 0.5, "sparsity_structure": "2:4"}
    c = from_checkpoint_dir(tmp_path, {"quantization_config": {"sparsity_config": sc}})
    assert (c.sparsity, c.structure, c.method) == (0.5, "2:4", "wanda")
    assert c.source == {
        "sparsity": "config.json sparsity_config",
        "structure": "config.json sparsity_config",
        "method": "pruning_meta.json",
    }


def test_pruning_meta_claims(tmp_path: Path) -> None:
    (tmp_path / "pruning_meta.json").write_text(
        json.dumps({"method": "wanda", "sparsity": 0.5, "targets": ["q_proj"]})
    )
    c = from_checkpoint_dir(tmp_path)
    assert (c.sparsity, c.method, c.source["sparsity"]) == (0.5, "wanda", "pruning_meta.json")
    (tmp_path / "pruning_meta.json").write_text("{bad")
    with pytest.raises(CheckpointError, match=r"pruning_meta.json: not valid JSON"):
        from_checkpoint_dir(tmp_path)
    (tmp_path / "pruning_meta.json").write_text(json.dumps({"sparsity": 7}))
    with pytest.raises(
        InputError, match=r"pruning_meta.json: claims.sparsity: claim 'sparsity' must be a fraction"
    ):
        from_checkpoint_dir(tmp_path)


def test_no_claims(tmp_path: Path) -> None:
    assert from_checkpoint_dir(tmp_path).is_empty()


def _ckpt(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    path.mkdir()
    save_file(tensors, str(path / "model.safetensors"))
    return path


def test_pair_tensors(tmp_path: Path) -> None:
    names = [f"model.layers.{i}.mlp.down_proj.weight" for i in range(8)]
    a = open_checkpoint(_ckpt(tmp_path / "a", {n: np.ones((2, 3), np.float32) for n in names}))
    b = open_checkpoint(
        _ckpt(
            tmp_path / "b",
            {
                **{n: np.zeros((2, 3), np.float32) for n in names},
                "model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(
                    2, np.float32
                ),  # ignored artifact
            },
        )
    )
    pairs = pair_tensors(a, b)
    assert [p[0].canonical for p in pairs] == [p[1].canonical for p in pairs]
    assert {p[0].canonical for p in pairs} == set(names)

    c = open_checkpoint(
        _ckpt(
            tmp_path / "c",
            {n: np.ones((2, 3), np.float32) for n in names[:1]}
            | {"extra.weight": np.ones(1, np.float32)},
        )
    )
    with pytest.raises(
        CheckpointError,
        match=r"7 tensor\(s\) of the dense checkpoint missing from the compressed one: "
        r"model.layers.1.mlp.down_proj.weight, .*\(2 more\); 1 tensor\(s\) only in the compressed one: extra.weight",
    ):
        pair_tensors(a, c)

    d = open_checkpoint(
        _ckpt(
            tmp_path / "d",
            {n: np.ones((2, 3) if n != names[3] else (1, 3), np.float32) for n in names},
        )
    )
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'model.layers.3.mlp.down_proj.weight': shape \[1, 3\] in the compressed checkpoint but \[2, 3\]",
    ):
        pair_tensors(a, d)


def test_pair_tied_head(tmp_path: Path) -> None:
    emb = np.ones((5, 3), np.float32)
    tied = open_checkpoint(_ckpt(tmp_path / "tied", {"model.embed_tokens.weight": emb}))
    untied = open_checkpoint(
        _ckpt(tmp_path / "untied", {"model.embed_tokens.weight": emb, "lm_head.weight": emb})
    )
    assert [p[0].canonical for p in pair_tensors(tied, untied)] == ["model.embed_tokens.weight"]
    assert [p[0].canonical for p in pair_tensors(untied, tied)] == ["model.embed_tokens.weight"]
    other = open_checkpoint(
        _ckpt(
            tmp_path / "other",
            {"model.embed_tokens.weight": emb, "lm_head.weight": np.ones((4, 3), np.float32)},
        )
    )
    with pytest.raises(CheckpointError, match=r"only in the compressed one: lm_head\.weight"):
        pair_tensors(tied, other)
