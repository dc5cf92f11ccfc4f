"""llama.cpp specifics: HF directories are converted to a content-addressed GGUF cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgegate.backends import available, open_backend
from edgegate.backends.hf_to_gguf import WRITER, content_hash
from edgegate.backends.llamacpp_load import ensure_gguf

pytestmark = pytest.mark.skipif(
    not available("llamacpp"), reason="llama-cpp-python is not installed"
)
ROOT = Path(__file__).resolve().parents[1]
DENSE = ROOT / "fixtures" / "models" / "dense"
GGUF = ROOT / "fixtures" / "models" / "gguf" / "dense-f16.gguf"


def test_hf_dir_is_converted_once_and_reported(tmp_path: Path) -> None:
    b = open_backend("llamacpp", DENSE, n_ctx=64, threads=1, cache_dir=tmp_path)
    assert b.converted_from == DENSE
    # this fixture's BPE tokenizer is one llama.cpp's converter does not recognise: the Llama
    # fallback writer converts it, and the report says so
    assert b.model_path == tmp_path / "gguf" / f"{content_hash(DENSE, WRITER, 'f16')}.gguf"
    assert b.info()["converter"]["name"] == "edgegate-gguf-writer"
    assert b.info()["converted_from"] == str(DENSE)
    mtime = b.model_path.stat().st_mtime_ns
    ids = b.tokenize("Cora opens a heavy piano after lunch.")
    ref = open_backend("llamacpp", GGUF, n_ctx=64, threads=1)
    np.testing.assert_allclose(b.token_logprobs(ids), ref.token_logprobs(ids), atol=1e-3)
    assert ref.converted_from is None
    b.close()
    again, src = ensure_gguf(DENSE, tmp_path)
    assert src == DENSE and again.stat().st_mtime_ns == mtime  # cache hit, not rewritten


def test_changed_weights_change_the_cache_key(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(DENSE, copy)
    assert content_hash(copy, WRITER, "f16") == content_hash(DENSE, WRITER, "f16")
    assert content_hash(DENSE, WRITER, "bf16") != content_hash(DENSE, WRITER, "f16")
    raw = bytearray((copy / "model.safetensors").read_bytes())
    raw[-1] ^= 0x01
    (copy / "model.safetensors").write_bytes(bytes(raw))
    assert content_hash(copy, WRITER, "f16") != content_hash(DENSE, WRITER, "f16")


def test_not_a_gguf_is_a_clear_error(tmp_path: Path) -> None:
    from edgegate.errors import InputError

    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(InputError, match="not a GGUF file"):
        open_backend("llamacpp", bad)
