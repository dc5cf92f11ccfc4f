"""Checkpoint readers: ``open_checkpoint(path)`` detects the format and returns a lazy reader.

>>> with open_checkpoint("model_dir") as ckpt:          # doctest: +SKIP
...     for info in ckpt.tensors():
...         zeros = (ckpt.read_native(info) == 0).sum()
"""

from __future__ import annotations

from pathlib import Path

from edgegate.checkpoint.base import Checkpoint, Format, ModuleKind, TensorInfo
from edgegate.checkpoint.detect import detect_format, resolve_file
from edgegate.checkpoint.names import classify, is_artifact, kind_of
from edgegate.errors import CheckpointError

__all__ = [
    "Checkpoint",
    "Format",
    "ModuleKind",
    "TensorInfo",
    "classify",
    "detect_format",
    "kind_of",
    "open_checkpoint",
    "pair_tensors",
]


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Open a checkpoint directory or file in whatever format it is."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt is Format.SAFETENSORS:
        from edgegate.checkpoint.safetensors_reader import SafetensorsCheckpoint

        return SafetensorsCheckpoint(p)
    if fmt is Format.MLX:
        from edgegate.checkpoint.mlx_reader import MLXCheckpoint

        return MLXCheckpoint(p)
    if fmt is Format.COMPRESSED_TENSORS:
        from edgegate.checkpoint.compressed_tensors_reader import CompressedTensorsCheckpoint

        return CompressedTensorsCheckpoint(p)
    if fmt is Format.GGUF:
        from edgegate.checkpoint.gguf_reader import GGUFCheckpoint

        return GGUFCheckpoint(resolve_file(p, ".gguf"))
    from edgegate.checkpoint.onnx_reader import ONNXCheckpoint

    return ONNXCheckpoint(resolve_file(p, ".onnx"))


def _names(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _drop_tied_head(side: dict[str, TensorInfo], other: dict[str, TensorInfo]) -> None:
    """Tied embeddings: one format stores lm_head (e.g. an ONNX export's transposed copy),
    the other only embed_tokens; the head is then the embedding, not a missing tensor."""
    head, emb = side.get(_HEAD), other.get(_EMBED)
    if head is not None and _HEAD not in other and emb is not None and emb.shape == head.shape:
        del side[_HEAD]


_HEAD, _EMBED = "lm_head.weight", "model.embed_tokens.weight"


def pair_tensors(dense: Checkpoint, compressed: Checkpoint) -> list[tuple[TensorInfo, TensorInfo]]:
    """Match tensors by canonical name, in the dense checkpoint's order.

    Tensors that are format artifacts (rotary caches, GGUF rope factors) are ignored, as is a
    stored ``lm_head`` whose counterpart is a tied embedding; any other tensor present on
    one side only, or with a different logical shape, is an error.
    """
    a = {t.canonical: t for t in dense.tensors() if not is_artifact(t.canonical)}
    b = {t.canonical: t for t in compressed.tensors() if not is_artifact(t.canonical)}
    _drop_tied_head(a, b)
    _drop_tied_head(b, a)
    missing = [n for n in a if n not in b]
    extra = [n for n in b if n not in a]
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} tensor(s) of the dense checkpoint missing from the compressed one: "
                f"{_names(missing)}"
            )
        if extra:
            parts.append(f"{len(extra)} tensor(s) only in the compressed one: {_names(extra)}")
        raise CheckpointError(
            "; ".join(parts),
            path=compressed.path,
            hint=f"both checkpoints must hold the same model (dense: {dense.path})",
        )
    pairs = []
    for name, ta in a.items():
        tb = b[name]
        if ta.shape != tb.shape:
            raise CheckpointError(
                f"shape {list(tb.shape)} in the compressed checkpoint but "
                f"{list(ta.shape)} in the dense one ({dense.path})",
                path=compressed.path,
                field=f"tensor '{name}'",
                hint="structured pruning changed the shape, or the checkpoints are different models",
            )
        pairs.append((ta, tb))
    return pairs
