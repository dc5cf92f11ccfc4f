"""``runtime: auto``: measure an artifact where it ships.

HF safetensors directory -> transformers, GGUF -> llama.cpp, mlx-lm directory -> mlx-lm,
ONNX export -> ONNX Runtime. The format comes from ``checkpoint.detect`` (names, configs and
magic bytes, never model code). An explicit runtime always wins: this module is consulted
only for ``auto``. The choice and its reason go into the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgegate.checkpoint.base import Format
from edgegate.errors import InputError

AUTO = "auto"

_BY_FORMAT: dict[Format, tuple[str, str]] = {
    Format.SAFETENSORS: (
        "transformers",
        "an HF safetensors directory runs where it was made: transformers",
    ),
    Format.COMPRESSED_TENSORS: (
        "transformers",
        "a compressed-tensors checkpoint (llm-compressor) is decompressed and run by transformers",
    ),
    Format.GGUF: ("llamacpp", "a GGUF file ships to llama.cpp"),
    Format.MLX: ("mlx", "an mlx-lm directory ships to MLX"),
    Format.ONNX: ("onnx", "an ONNX export ships to ONNX Runtime"),
}


# What each local runtime can open at all (llama.cpp converts an HF directory; mlx-lm reads
# one). Used before anything runs: `perplexity.runtime: onnx` on safetensors once failed only
# after the other checks had spent their minutes.
LOADS: dict[str, frozenset[Format]] = {
    "transformers": frozenset({Format.SAFETENSORS, Format.COMPRESSED_TENSORS}),
    "llamacpp": frozenset({Format.GGUF, Format.SAFETENSORS, Format.COMPRESSED_TENSORS}),
    "mlx": frozenset({Format.MLX, Format.SAFETENSORS}),
    "onnx": frozenset({Format.ONNX}),
}


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str
    reason: str
    requested: str  # what the policy or flag said ("auto" or a runtime name)

    def as_dict(self) -> dict[str, str]:
        return {"runtime": self.runtime, "requested": self.requested, "reason": self.reason}


def resolve_runtime(path: str | Path, requested: str = AUTO) -> RuntimeChoice:
    """The runtime for ``path``: ``requested`` itself unless it is ``auto``."""
    if requested != AUTO:
        return RuntimeChoice(requested, f"runtime '{requested}' requested explicitly", requested)
    if isinstance(path, str) and "://" in path:  # a model behind a server
        return RuntimeChoice(
            "openai", "an endpoint URL is scored through its OpenAI-compatible API", requested
        )
    from edgegate.checkpoint.detect import detect_format

    fmt = detect_format(path)
    try:
        runtime, why = _BY_FORMAT[fmt]
    except KeyError:
        raise InputError(
            f"runtime auto has no runtime for format '{fmt.value}'",
            path=Path(path),
            field="runtime",
            hint="name a runtime explicitly (--runtime / the policy's runtime)",
        ) from None
    return RuntimeChoice(runtime, f"{why} (format detected: {fmt.value})", requested)


def resolve_pair(
    dense: str | Path | None, compressed: str | Path, requested: str = AUTO
) -> RuntimeChoice:
    """One runtime for a dense/compressed pair (both are scored on the same runtime, or the
    comparison would mix runtimes). With ``auto`` the compressed artifact decides: it is the
    one being shipped; a dense model of another format is then converted by that runtime
    (llama.cpp converts an HF directory) or refused by it with a clear error."""
    choice = resolve_runtime(compressed, requested)
    if requested != AUTO or dense is None:
        return choice
    other = resolve_runtime(dense, requested)
    if other.runtime != choice.runtime:
        return RuntimeChoice(
            choice.runtime,
            f"{choice.reason}; the dense model ({other.runtime} by format) runs there too, so both "
            "are measured on one runtime",
            requested,
        )
    return choice
