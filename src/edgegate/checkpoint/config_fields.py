"""The shape fields of a checkpoint's config, checked once where the config is read.

config.json (and GGUF metadata mapped to the same names) is untrusted: ``"two"`` heads, a
hidden size of -16, a ``head_dim`` of ``"x"`` or ``1e999`` (JSON's way to write infinity)
used to surface later as a TypeError, ValueError or OverflowError deep inside a check (exit 3,
"internal error"). Here each is an input error naming the file and the field (exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgegate.errors import CheckpointError, excerpt

# Fields that size tensors and heads; each must be a positive integer when present.
SHAPE_FIELDS = (
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "num_hidden_layers",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
)
MAX_VALUE = 1 << 40  # far above any real model; bounds arithmetic on the value


def check_shape_fields(
    config: Mapping[str, Any] | None, path: str | Path, *, prefix: str = ""
) -> None:
    """Raise ``CheckpointError`` for the first shape field of ``config`` (and of a nested
    ``text_config``) that is present but not an integer in 1..2**40."""
    if not isinstance(config, Mapping):
        return
    for key in SHAPE_FIELDS:
        if key not in config or config[key] is None:
            continue
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_VALUE:
            raise CheckpointError(
                f"expected a positive integer, got {excerpt(v)}",
                path=path,
                field=prefix + key,
                hint="the config is corrupt or not an HF model config",
            )
    nested = config.get("text_config")
    if isinstance(nested, Mapping) and not prefix:
        check_shape_fields(nested, path, prefix="text_config.")


__all__ = ["SHAPE_FIELDS", "check_shape_fields"]
