"""Parsers that raised on hostile values (issue 22): each is now exit 2 naming the file and
the field or tensor, never exit 3 "internal error".

- digits that are not ASCII: ``"²".isdigit()`` is true but ``int("²")`` raises (GGUF block
  names, compressed-tensors ``sparsity_structure``);
- a layer index of 5,000 digits (Python's int-size guard raises ValueError);
- GGUF metadata arrays nested 100,000 deep (RecursionError);
- config.json shape fields of the wrong type or range (``"two"`` heads, ``-16``, ``"x"``,
  ``1e999``, which JSON parsers read as infinity);
- the study spec loader, which had none of the policy loader's guards: a YAML alias bomb
  hung it, keys that are numbers raised TypeError.

Checkpoints are the real fixtures copied and edited (config.json), or written by the
safetensors and gguf libraries; the GGUF with nested arrays is raw bytes (no writer nests
arrays that deep on purpose).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "fixtures" / "models"


def _cli(*args: str, timeout: float = 120) -> tuple[int, str]:
    try:
        r = subprocess.run(
            [sys.executable, "-m", "edgegate.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"edgegate {' '.join(args)[:200]} hung ({timeout} s)")
    out = r.stdout + r.stderr
    assert "Traceback" not in out and "internal error" not in out, out[-2000:]
    return r.returncode, out


def _gguf(path: Path, names: list[str]) -> None:
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_head_count(2)
    for name in names:
        w.add_tensor(name, np.ones((4, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ------------------------------------------------------------------ digits


def test_superscript_digit_in_a_gguf_block_name(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    _gguf(p, ["blk.0.ffn_down.weight", "blk.².ffn_down.weight"])
    code, out = _cli("scan", str(p), "-q")
    assert code == 0, out  # not a block: an ordinary tensor, measured like any other


def test_huge_block_index_in_a_gguf_name(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    _gguf(p, ["blk.0.ffn_down.weight", "blk." + "7" * 5000 + ".ffn_down.weight"])
    code, out = _cli("scan", str(p), "-q")
    assert code == 2 and "implausible" in out and "m.gguf" in out, out


def test_huge_layer_index_in_a_safetensors_name(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    save_file(
        {
            "model.layers.0.mlp.down_proj.weight": np.ones((4, 4), np.float32),
            "model.layers." + "9" * 5000 + ".mlp.down_proj.weight": np.ones((4, 4), np.float32),
        },
        str(d / "model.safetensors"),
    )
    code, out = _cli("scan", str(d), "-q")
    assert (
        code == 2 and "layer index" in out and "implausible" in out and "model.safetensors" in out
    ), out


@pytest.mark.parametrize("structure", ["²:4", "2:⁴", "1:" + "4" * 5000])
def test_hostile_sparsity_structure(structure: str, tmp_path: Path) -> None:
    d = tmp_path / "ct"
    shutil.copytree(FIX / "compressed-tensors" / "nm24-24bitmask", d)
    cfg = json.loads((d / "config.json").read_text("utf-8"))
    block = cfg.get("compression_config") or cfg["quantization_config"]
    block["sparsity_config"]["sparsity_structure"] = structure
    (d / "config.json").write_text(json.dumps(cfg), "utf-8")
    code, out = _cli("scan", str(d), "-q")
    assert code == 0, out  # an unreadable structure implies no sparsity; the scan measures
    assert (
        "(claimed: " in out and "claim: sparsity 50.0% (from config.json sparsity_config)" in out
    ), out


# ------------------------------------------------------------------ GGUF nesting


def _nested_gguf(depth: int) -> bytes:
    key = b"edgegate.nested"
    head = (
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 1)
        + struct.pack("<Q", len(key))
        + key
        + struct.pack("<I", 9)
    )
    body = struct.pack("<IQ", 9, 1) * depth + struct.pack(
        "<IQ", 0, 0
    )  # ARRAY of ARRAY ... of 0 uint8
    return head + body


def test_gguf_arrays_nested_100000_deep(tmp_path: Path) -> None:
    p = tmp_path / "deep.gguf"
    p.write_bytes(_nested_gguf(100_000))
    code, out = _cli("scan", str(p), "-q")
    assert (
        code == 2 and "nested more than" in out and "deep.gguf" in out and "edgegate.nested" in out
    ), out


# ------------------------------------------------------------------ config.json fields


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("num_attention_heads", '"two"'),
        ("hidden_size", "-16"),
        ("head_dim", '"x"'),
        ("head_dim", "1e999"),
        ("num_key_value_heads", "2.5"),
        ("num_attention_heads", "true"),
        ("head_dim", "[16]"),
    ],
)
@pytest.mark.parametrize("command", ["scan", "check"])
def test_config_field_of_wrong_type_or_range(
    field: str, raw: str, command: str, tmp_path: Path
) -> None:
    d = tmp_path / "m"
    shutil.copytree(FIX / "dense", d)
    cfg = (d / "config.json").read_text("utf-8")
    cfg = (
        cfg.replace("{", "{" + f'"{field}": {raw}, ', 1)
        if f'"{field}"' not in cfg
        else re.sub(rf'"{field}": [^,\n]+', f'"{field}": {raw}', cfg)
    )
    if field == "hidden_size":  # the fixture's head_dim would hide hidden_size // heads
        cfg = re.sub(r'"head_dim": [^,\n]+,\s*', "", cfg)
    (d / "config.json").write_text(cfg, "utf-8")
    if command == "scan":
        code, out = _cli("scan", str(d), "-q")
    else:
        pol = tmp_path / "p.yaml"
        pol.write_text(
            "version: 1\nname: t\nchecks:\n  sparsity: {required: false}\n  size: {}\n", "utf-8"
        )
        code, out = _cli(
            "check", str(FIX / "dense"), str(d), "--policy", str(pol), "-q", "--no-hash"
        )
    assert code == 2, out
    assert field in out and "config.json" in out and "positive integer" in out, out


# ------------------------------------------------------------------ study spec


def _spec(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(body, "utf-8")
    return p


def test_study_spec_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    lol = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lol.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    body = (
        "version: 1\npolicy: strict\nlols:\n"
        + "\n".join("  " + line for line in lol)
        + "\ndescription: *l\nvariants: [{name: v, path: x}]\ndense: d\n"
    )
    code, out = _cli("study", str(_spec(tmp_path, body)), "--table-only", timeout=60)
    assert code == 2 and "aliases" in out and "study.yaml" in out, out


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            "version: 1\n1: x\nfoo: y\npolicy: strict\n",
            "unknown key(s) 1, foo",
        ),  # keys of two types: sorted() raised
        (
            "version: 1\npolicy: strict\ndense: d\nvariants: [{name: v, path: x, 1: a, z: b}]\n",
            "unknown key(s) 1, z",
        ),
        ("version: 1\npolicy: strict\nname: [a\n", "line 4: not valid YAML"),
        (
            "version: 1\npolicy: strict\npolicy: default\n",
            "duplicate key 'policy'",
        ),  # PyYAML kept the last one
        ("- just\n- a list\n", "expected a mapping at the top level"),
    ],
)
def test_study_spec_hostile_structure(body: str, fragment: str, tmp_path: Path) -> None:
    code, out = _cli("study", str(_spec(tmp_path, body)), "--table-only")
    assert code == 2 and "study.yaml" in out and fragment in out, out
