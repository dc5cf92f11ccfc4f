"""Tokenizer identity across formats and runtimes (the same tokenizer stored as GGUF
metadata and as tokenizer.json must tokenize identically), and a real mismatch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgegate.backends import available, open_backend
from edgegate.backends.tokenizer import compare_tokenizers, require_same_tokenizer
from edgegate.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
pytestmark = pytest.mark.skipif(
    not (available("llamacpp") and available("onnx")),
    reason="llama-cpp-python and onnxruntime needed",
)


def test_gguf_and_tokenizer_json_agree() -> None:
    gguf = open_backend("llamacpp", MODELS / "gguf" / "dense-f16.gguf", n_ctx=64, threads=1)
    onnx = open_backend("onnx", MODELS / "onnx" / "dense", n_ctx=64, threads=1)
    cmp = require_same_tokenizer(gguf, onnx, ("<|im_start|>user\nhi<|im_end|>",))
    assert cmp.identical and cmp.probes == 16 and cmp.n_vocab == (512, 512)


def test_swapped_ids_are_detected(tmp_path: Path) -> None:
    other = tmp_path / "onnx"
    shutil.copytree(MODELS / "onnx" / "dense", other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a = next(k for k, v in vocab.items() if v == 260)
    b = next(k for k, v in vocab.items() if v == 261)
    vocab[a], vocab[b] = 261, 260
    (other / "tokenizer.json").write_text(json.dumps(tok))
    dense = open_backend("onnx", MODELS / "onnx" / "dense", n_ctx=64, threads=1)
    bad = open_backend("onnx", other, n_ctx=64, threads=1)
    cmp = compare_tokenizers(dense, bad)
    assert not cmp.identical and "differs at token" in (cmp.mismatch or "")
    with pytest.raises(InputError, match="tokenizer differs"):
        require_same_tokenizer(dense, bad)
