"""Opening a model for llama.cpp: the GGUF to load (an HF directory converted with llama.cpp's
own converter), the load parameters llama-cpp-python does not expose, and what a refusal to
load means (the user's file or the runtime)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgegate.errors import BackendError, InputError
from edgegate.settings import default_cache_dir

# llama.cpp's extra CPU buffer types (AMX, repacked weights) are on by default. On CPUs with
# AMX, llama-cpp-python 0.3.36 crashes (SIGSEGV in the first decode) on every Q8_0 model tried
# (gemma-3-270m Q8_0, the Q8_0 test fixture; its F16 and Q4_K_M run): such models are loaded
# without them. "1"/"0" in this variable forces either way. Model info records the choice.
EXTRA_BUFFERS_ENV = "EDGEGATE_LLAMACPP_EXTRA_BUFFERS"


def extra_buffers_for(llama_cpp: Any, gguf: Path) -> tuple[bool, str]:
    """(load with llama.cpp's extra buffer types?, why)."""
    forced = os.environ.get(EXTRA_BUFFERS_ENV)
    if forced in ("0", "1"):
        return forced == "1", f"{EXTRA_BUFFERS_ENV}={forced}"
    if "AMX_INT8 = 1" not in llama_cpp.llama_print_system_info().decode(errors="replace"):
        return True, "llama.cpp's default"
    from edgegate.checkpoint.gguf_reader import GGUFCheckpoint

    try:
        with GGUFCheckpoint(gguf) as ck:
            q8 = any(t.dtype == "Q8_0" for t in ck.tensors())
    except Exception:  # llama.cpp reports an unreadable file itself, with its own cause
        return True, "llama.cpp's default"
    if q8:
        return (
            False,
            "Q8_0 weights on a CPU with AMX: llama.cpp's AMX Q8_0 path crashes, extra buffer types off",
        )
    return True, "llama.cpp's default"


@contextmanager
def patched_defaults(llama_cpp: Any, name: str, **fields: object) -> Iterator[None]:
    """llama_cpp.Llama takes no argument for some llama.cpp parameters: while it builds its
    parameters, hand it defaults with those fields set."""
    module = llama_cpp.llama.llama_cpp
    original = getattr(module, name)

    def patched() -> Any:
        params = original()
        for key, value in fields.items():
            setattr(params, key, value)
        return params

    setattr(module, name, patched)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextmanager
def extra_buffers(llama_cpp: Any, enabled: bool) -> Iterator[None]:
    """Load the model with or without llama.cpp's extra buffer types (``use_extra_bufts``)."""
    if enabled:
        yield
        return
    with patched_defaults(llama_cpp, "llama_model_default_params", use_extra_bufts=False):
        yield


# Scoring decodes a context once with its continuations as branches: sequence 0 holds the
# context, sequences 1..N_BRANCHES one continuation each (backends/branching.py). A unified KV
# buffer keeps all of n_ctx for every sequence (without it llama.cpp splits n_ctx between them).
N_BRANCHES = 7


def ensure_gguf(path: Path, cache_dir: Path | None) -> tuple[Path, Path | None]:
    """(GGUF to load, HF dir it was converted from or None)."""
    gguf, src, _ = ensure_gguf_with_info(path, cache_dir)
    return gguf, src


def ensure_gguf_with_info(
    path: Path, cache_dir: Path | None
) -> tuple[Path, Path | None, dict[str, str] | None]:
    """(GGUF to load, HF dir it was converted from or None, the converter's name/version)."""
    if path.is_file():
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise InputError(
                    "not a GGUF file (bad magic)",
                    path=path,
                    hint="llama.cpp loads .gguf files or HF safetensors directories",
                )
        return path, None, None
    if not (path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))):
        ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else []
        if len(ggufs) == 1:
            return ggufs[0], None, None
        raise InputError(
            "llama.cpp needs a .gguf file or an HF directory with config.json and safetensors",
            path=path,
        )
    # llama.cpp's own converter, run as a subprocess (backends/hf_to_gguf.py);
    # EDGEGATE_GGUF_OUTTYPE picks f16 (default), bf16, f32 or q8_0
    from edgegate.backends.hf_to_gguf import convert

    outtype = os.environ.get("EDGEGATE_GGUF_OUTTYPE", "f16").strip() or "f16"
    if outtype not in ("f16", "bf16", "f32", "q8_0"):
        raise InputError(
            f"EDGEGATE_GGUF_OUTTYPE={outtype!r}",
            field="EDGEGATE_GGUF_OUTTYPE",
            hint="f16, bf16, f32 or q8_0",
        )
    out, info = convert(path, cache_dir or default_cache_dir(), outtype)
    return out, path, info


# Metadata every llama.cpp model needs: without it the file is incomplete, the user's problem.
_REQUIRED_KEYS = ("general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.tokens")


def classify_refusal(gguf: Path, exc: Exception) -> InputError | BackendError:
    """llama.cpp says only "Failed to load model". Tell the cases apart with our own strict
    parser (the same layout rules as ggml's loader): a malformed or incomplete file is an
    input error (exit 2) with the precise cause; a well-formed, complete file that llama.cpp
    still refuses (an architecture or tensor type this build does not implement) is a
    runtime fault (exit 3): upgrading the runtime, not fixing the file, is the remedy."""
    import gguf as gguf_py

    from edgegate.checkpoint.gguf_header import read_header
    from edgegate.errors import CheckpointError, excerpt

    sizes = {int(t): (int(b), int(n)) for t, (b, n) in gguf_py.GGML_QUANT_SIZES.items()}
    try:
        header = read_header(gguf, sizes)
    except CheckpointError as bad:
        return CheckpointError(
            f"llama.cpp cannot load this GGUF: {bad.message}",
            path=gguf,
            field=bad.field,
            hint=bad.hint,
        )
    except OSError as bad:
        return InputError(
            f"llama.cpp cannot load this GGUF: cannot read it ({bad.strerror})", path=gguf
        )
    missing = [k for k in _REQUIRED_KEYS if k not in header.metadata]
    if missing or not header.tensors:
        what = f"metadata {', '.join(missing)}" if missing else "tensors"
        return InputError(
            f"llama.cpp cannot load this GGUF: it is incomplete (no {what})",
            path=gguf,
            hint="convert the full model (weights, tokenizer, config) with llama.cpp's converter",
        )
    arch = excerpt(header.metadata.get("general.architecture"), 60)
    return BackendError(
        f"llama.cpp refused a well-formed GGUF (architecture {arch}, {len(header.tensors)} tensors): {exc}",
        path=gguf,
        hint="this llama.cpp build cannot run it (an architecture or tensor type it lacks); upgrade "
        "llama-cpp-python, or run the model on another runtime",
    )
