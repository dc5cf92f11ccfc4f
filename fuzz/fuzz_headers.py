"""Fuzz target for the safetensors and GGUF header parsers (and the tensor reads they allow).

Contract under test: for ANY bytes, opening the file as a checkpoint and reading every
tensor either works or raises an ``edgegate.errors.EdgegateError`` (a clear one-line error,
exit 2). Any other exception, a hang or a crash is a bug.

    pip install atheris        # or: pip install 'edgegate[fuzz]'
    python fuzz/fuzz_headers.py -runs=20000 -max_len=4096 SEEDS_DIR
    # seeds: python tests/hostile/make_corpus.py SEEDS_DIR (valid + hostile files)

Without atheris, tests/test_fuzz_smoke.py drives the same ``check_one`` with hypothesis.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

try:  # coverage feedback for libFuzzer: instrument edgegate's readers when atheris is there
    import atheris

    _instrument = atheris.instrument_imports(include=["edgegate"])
except ImportError:
    import contextlib

    _instrument = contextlib.nullcontext()

with _instrument:
    from edgegate.checkpoint import open_checkpoint
    from edgegate.checkpoint.gguf_reader import GGUFCheckpoint  # noqa: F401 - instrument it too
    from edgegate.checkpoint.safetensors_reader import SafetensorsCheckpoint  # noqa: F401
    from edgegate.errors import EdgegateError
    from edgegate.forensics.zeros import element_kind, tensor_stats

_WORK = Path(
    tempfile.mkdtemp(prefix="edgegate-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
)


def check_one(data: bytes, workdir: Path = _WORK) -> str:
    """Parse ``data`` as a GGUF (if it starts with the magic) or safetensors file; returns
    "ok" or "refused"; raises anything else it hits."""
    suffix = ".gguf" if data[:4] == b"GGUF" else ".safetensors"
    path = workdir / f"input{suffix}"
    path.write_bytes(data)
    try:
        ck = open_checkpoint(path)
        try:
            for info in ck.tensors():
                native = ck.read_native(info)
                try:
                    element_kind(native, info.dtype)
                except TypeError:
                    continue  # a dtype the counting kernel does not take (e.g. bool)
                st = tensor_stats(native, info.dtype)
                assert st.numel == native.size
        finally:
            ck.close()
    except EdgegateError:
        return "refused"
    return "ok"


def _atheris_main() -> None:
    import atheris

    def one_input(data: bytes) -> None:
        check_one(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    _atheris_main()
