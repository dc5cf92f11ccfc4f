"""Does the comparison make sense at all? Checks on the two inputs themselves.

A gate that measures faithfully can still mislead when its inputs are wrong: the same model
twice ("nothing was compressed"), the arguments swapped (the "dense" side is the sparse one),
or two different models. Each finding here is said out loud in every report, and the ones
that make the comparison meaningless ("invalid") keep the gate from ever reading PASS.

Pure functions over what the readers and ``describe_input`` already produced; nothing here
loads a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgegate.environment import InputDescription


@dataclass(frozen=True)
class Finding:
    """One problem with the inputs. ``severity`` is "invalid" (the comparison means nothing:
    never a pass) or "warning" (said in the report; the verdicts stand)."""

    code: str
    severity: str
    message: str
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }


# Config fields that fix a model's shape: two checkpoints that differ in one of them are not a
# dense model and its compressed copy. (GGUF metadata is mapped to these names by its reader.)
_SHAPE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
)


def _digests(desc: InputDescription) -> list[tuple[str, str]] | None:
    files = desc.get("files") or []
    pairs = [(str(f.get("path")), str(f.get("sha256"))) for f in files]
    if not pairs or any(d in ("None", "") for _, d in pairs):
        return None  # hashing was off (--no-hash): cannot tell
    return sorted(pairs)


def identical_inputs(dense: InputDescription, compressed: InputDescription) -> Finding | None:
    """The same path twice, or every file with the same name and sha256 on both sides. Models
    behind servers are not compared here: one server may well host both."""
    if dense.get("kind") == "endpoint" or compressed.get("kind") == "endpoint":
        return None
    same_path = (
        Path(str(dense.get("path"))).resolve() == Path(str(compressed.get("path"))).resolve()
    )
    d, c = _digests(dense), _digests(compressed)
    same_bytes = d is not None and c is not None and [h for _, h in d] == [h for _, h in c]
    if not (same_path or same_bytes):
        return None
    why = "the same path" if same_path else f"byte-identical ({len(d or [])} file(s), same sha256)"
    return Finding(
        "identical-inputs",
        "invalid",
        f"the dense and compressed inputs are {why}: nothing was compressed, so nothing about "
        "compression was verified",
        "pass the compressed checkpoint as the second argument; to run a null control on purpose "
        "(the gate should find no change), pass --allow-identical",
    )


def shape_mismatches(
    dense_cfg: Mapping[str, Any] | None, comp_cfg: Mapping[str, Any] | None
) -> Finding | None:
    """Two different models (hidden size, layers, heads, vocabulary differ)."""
    if not dense_cfg or not comp_cfg:
        return None
    diffs = []
    for key in _SHAPE_KEYS:
        a, b = dense_cfg.get(key), comp_cfg.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a != b:
            diffs.append(f"{key} {a:g} vs {b:g}")
    if not diffs:
        return None
    return Finding(
        "different-models",
        "invalid",
        "the inputs are different models, not a model and its compressed copy: " + ", ".join(diffs),
        "compare a compressed checkpoint with the dense checkpoint it was made from",
    )


def probably_swapped(
    dense_sparsity: float | None, comp_sparsity: float | None, margin: float = 0.05
) -> Finding | None:
    """The "dense" input is clearly sparser than the "compressed" one: the arguments are
    probably the wrong way round (``check pruned/ dense/``)."""
    if dense_sparsity is None or comp_sparsity is None:
        return None
    if dense_sparsity - comp_sparsity <= margin:
        return None
    return Finding(
        "probably-swapped",
        "invalid",
        f"the dense input is sparser than the compressed one ({dense_sparsity:.1%} vs {comp_sparsity:.1%} "
        "zeros in the prunable projections): the arguments are probably swapped",
        "the order is `edgegate check DENSE COMPRESSED`",
    )


def summarize(findings: Sequence[Finding]) -> tuple[str, ...]:
    """One line per finding, for notes and reasons."""
    return tuple(f"inputs: {f.message}" + (f" ({f.hint})" if f.hint else "") for f in findings)
