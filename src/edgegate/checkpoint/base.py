"""Format-neutral view of a checkpoint: a list of tensors read lazily, one at a time.

Readers never load the whole model: ``tensors()`` lists metadata from headers only and
``read()`` materialises one tensor (memory-mapped where the format allows). Nothing here
executes code from a checkpoint: pickle files are refused, remote code is never imported.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypedDict

import numpy as np


class Format(str, Enum):
    SAFETENSORS = "safetensors"  # HF directory or single .safetensors (single or sharded)
    GGUF = "gguf"
    MLX = "mlx"  # mlx-lm directory (safetensors, MLX naming / group quantisation)
    ONNX = "onnx"
    COMPRESSED_TENSORS = "compressed-tensors"  # sparse-bitmask / 2:4 (llm-compressor)


class ModuleKind(str, Enum):
    """What a weight does; the unit of per-kind sparsity reporting."""

    Q = "q_proj"
    K = "k_proj"
    V = "v_proj"
    O = "o_proj"  # noqa: E741
    GATE = "gate_proj"
    UP = "up_proj"
    DOWN = "down_proj"
    EMBED = "embed"
    HEAD = "lm_head"
    NORM = "norm"
    OTHER = "other"

    @property
    def prunable(self) -> bool:
        """The linear projections pruning methods (Wanda, SparseGPT, magnitude) target."""
        return self in _PRUNABLE


_PRUNABLE = frozenset(
    {
        ModuleKind.Q,
        ModuleKind.K,
        ModuleKind.V,
        ModuleKind.O,
        ModuleKind.GATE,
        ModuleKind.UP,
        ModuleKind.DOWN,
    }
)


@dataclass(frozen=True)
class TensorInfo:
    """Header-level facts about one stored tensor.

    ``canonical`` is the HF-style name (``model.layers.3.mlp.down_proj.weight``) so tensors
    can be matched across formats; ``shape`` is the logical shape in HF order
    (``[out_features, in_features]`` for linears) whatever the storage order.
    ``nbytes`` is what the tensor occupies on disk in this format (all of its parts,
    e.g. a compressed-tensors bitmask + values + row offsets).
    """

    name: str
    canonical: str
    shape: tuple[int, ...]
    dtype: str  # storage type as the format names it: "BF16", "F16", "Q8_0", "float32", ...
    nbytes: int
    file: Path
    layer: int | None = None
    kind: ModuleKind = ModuleKind.OTHER

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class CheckpointMetadata(TypedDict, total=False):
    """``Checkpoint.metadata``: what a reader found beside the tensors (each sets its own keys).
    The blocks copied from a config or a header keep their arbitrary keys."""

    __metadata__: dict[str, str]  # safetensors: the headers' __metadata__ (every shard's)
    sparsity_config: dict[str, Any] | None  # compressed-tensors: config.json's block
    quantization: dict[str, Any]  # MLX: config.json's quantization block
    gguf: dict[str, Any]  # GGUF: the header's key/values (arrays summarised) and gguf.version
    onnx_metadata: dict[str, str]  # ONNX: the model's metadata_props
    onnx_skipped_initializers: list[str]  # ONNX: folded constants that are not weights
    claims: Mapping[str, Any]  # claims a reader found: numbers, or objects with .value/.source
    claims_source: str  # where those claims came from


@dataclass
class Checkpoint(ABC):
    """An opened checkpoint. Use as a context manager or call ``close()``."""

    path: Path
    format: Format
    files: list[Path] = field(default_factory=list)  # every file that makes up the checkpoint
    config: Mapping[str, Any] | None = None  # config.json (or GGUF/ONNX metadata mapped to it)
    metadata: CheckpointMetadata = field(default_factory=CheckpointMetadata)

    @abstractmethod
    def tensors(self) -> Iterator[TensorInfo]:
        """All tensors, from headers only, in a stable order."""

    @abstractmethod
    def read(self, info: TensorInfo) -> np.ndarray:
        """The tensor as float32 in logical shape (dequantised / decompressed)."""

    def read_native(self, info: TensorInfo) -> np.ndarray:
        """The tensor in its stored element type where numpy has one (memory-mapped if
        possible); bf16 comes back as a uint16 view. Used by zero counting, which must see
        -0.0 as zero. Formats without a native view fall back to ``read``."""
        return self.read(info)

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)
