"""What a compressed checkpoint claims about itself, and where each claim came from.

Its sources, lowest to highest precedence: ``pruning_meta.json`` beside the weights, then
compressed-tensors ``sparsity_config`` in config.json. Also the rules every claim value obeys
(``from_mapping``: fractions in [0, 1], ``50%``, ``1.5x``), which ``edgegate.claims`` applies
to ``--claim`` text too; parsing ``--claim`` and ranking CLI > policy > checkpoint live there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict

from edgegate import safe_json
from edgegate.checkpoint.detect import sparsity_config
from edgegate.errors import CheckpointError, InputError

META_FILE = "pruning_meta.json"
NUMERIC = ("sparsity", "size_saving", "speedup")
TEXT = ("method", "structure")
KEYS = NUMERIC + TEXT
_ALIASES = {
    "target_sparsity": "sparsity",
    "sparsity_ratio": "sparsity",
    "global_sparsity": "sparsity",
    "pruning_method": "method",
    "sparsity_structure": "structure",
    "pattern": "structure",
    "size_reduction": "size_saving",
}


class ClaimsDict(TypedDict):
    """``Claims.to_dict()``: every claim key (None where not claimed) and where each came from."""

    sparsity: float | None
    size_saving: float | None
    speedup: float | None
    method: str | None
    structure: str | None
    source: dict[str, str]


@dataclass(frozen=True)
class Claims:
    sparsity: float | None = None  # fraction of prunable weights that are zero
    size_saving: float | None = None  # fraction of bytes saved vs dense
    speedup: float | None = None  # dense time / compressed time
    method: str | None = None  # e.g. "wanda", "sparsegpt", "magnitude"
    structure: str | None = None  # "unstructured", "2:4", ...
    source: Mapping[str, str] = field(default_factory=dict)  # claim key -> where it came from

    def is_empty(self) -> bool:
        return all(getattr(self, k) is None for k in KEYS)

    def to_dict(self) -> ClaimsDict:
        return {
            "sparsity": self.sparsity,
            "size_saving": self.size_saving,
            "speedup": self.speedup,
            "method": self.method,
            "structure": self.structure,
            "source": dict(self.source),
        }


def _claims(vals: Mapping[str, float | str], source: str) -> Claims:
    """``Claims`` from parsed values (numeric claims as floats, text claims as strings), each
    recorded as coming from ``source``."""

    def number(key: str) -> float | None:
        v = vals.get(key)
        return v if isinstance(v, float) else None

    def text(key: str) -> str | None:
        v = vals.get(key)
        return v if isinstance(v, str) else None

    return Claims(
        sparsity=number("sparsity"),
        size_saving=number("size_saving"),
        speedup=number("speedup"),
        method=text("method"),
        structure=text("structure"),
        source={k: source for k in vals},
    )


def _number(key: str, value: Any, where: str, path: str | Path | None) -> float:
    text = str(value).strip()
    percent = text.endswith("%")
    if key == "speedup" and text.lower().endswith("x"):
        text = text[:-1]
    try:
        num = float(text.rstrip("%")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise InputError(
            f"claim '{key}' must be a number, got {value!r}",
            path=path,
            field=where,
            hint="e.g. sparsity=0.5, size_saving=30%, speedup=1.5",
        ) from None
    if isinstance(value, bool) or not math.isfinite(num):
        raise InputError(
            f"claim '{key}' must be a finite number, got {value!r}", path=path, field=where
        )
    if percent:
        num /= 100.0
    if key == "speedup":
        if num <= 0:
            raise InputError(f"claim 'speedup' must be > 0, got {value!r}", path=path, field=where)
    elif not 0.0 <= num <= 1.0:
        raise InputError(
            f"claim '{key}' must be a fraction in [0, 1], got {value!r}",
            path=path,
            field=where,
            hint=f"write {key}=0.5 or {key}=50%",
        )
    return num


def from_mapping(
    data: Mapping[str, Any], source: str, *, path: str | Path | None = None, strict: bool = True
) -> Claims:
    """Claims from a dict (policy block, metadata file); unknown keys are errors when strict."""
    vals: dict[str, float | str] = {}
    for raw_key, value in data.items():
        key = _ALIASES.get(raw_key, raw_key)
        if key not in KEYS:
            if strict:
                raise InputError(
                    f"unknown claim '{raw_key}'",
                    path=path,
                    field=f"claims.{raw_key}",
                    hint=f"known claims: {', '.join(KEYS)}",
                )
            continue
        if value is None:
            continue
        vals[key] = _number(key, value, f"claims.{raw_key}", path) if key in NUMERIC else str(value)
    return _claims(vals, source)


def _merge(*claims: Claims) -> Claims:
    """The checkpoint's own files, in order: a later one wins, per key; sources follow the
    winning value."""
    out = Claims()
    for c in claims:
        upd = {k: getattr(c, k) for k in KEYS if getattr(c, k) is not None}
        src = {**out.source, **{k: c.source.get(k, "unknown") for k in upd}}
        out = replace(out, **upd, source=src)
    return out


def _structure_sparsity(structure: str) -> float | None:
    # "N:M" keeps N of every M weights, so the sparsity it implies is 1 - N/M.
    from edgegate.checkpoint.names import small_int

    n_text, sep, m_text = structure.partition(":")
    n, m = (
        small_int(n_text),
        small_int(m_text),
    )  # "²:4" or a 5000-digit N: no structure, not a crash
    if sep and n is not None and m is not None and m > 0 and n <= m:
        return 1.0 - n / m
    return None


def from_checkpoint_dir(path: str | Path, config: Mapping[str, Any] | None = None) -> Claims:
    """Claims a checkpoint makes: pruning_meta.json, then compressed-tensors sparsity_config."""
    p = Path(path)
    root = p if p.is_dir() else p.parent
    found: list[Claims] = []
    meta = root / META_FILE
    if meta.is_file():
        data = safe_json.load(meta, error=CheckpointError, hint="fix or remove the file")
        found.append(from_mapping(data, META_FILE, path=meta, strict=False))
    if config is None and (root / "config.json").is_file():
        try:
            config = safe_json.load(root / "config.json", error=CheckpointError)
        except CheckpointError:
            config = None  # the reader reports a broken config.json; claims just skip it
    sc = sparsity_config(dict(config) if isinstance(config, Mapping) else None)
    if sc:
        src = "config.json sparsity_config"
        vals: dict[str, float | str] = {}
        gs = sc.get("global_sparsity")
        if isinstance(gs, (int, float)) and not isinstance(gs, bool) and gs > 0:
            vals["sparsity"] = _number(
                "sparsity", gs, "sparsity_config.global_sparsity", root / "config.json"
            )
        struct = sc.get("sparsity_structure")
        if isinstance(struct, str):
            vals["structure"] = struct
            implied = _structure_sparsity(struct)
            if "sparsity" not in vals and implied is not None:
                vals["sparsity"] = implied
        found.append(_claims(vals, src))
    return _merge(*found)


__all__ = [
    "KEYS",
    "Claims",
    "from_checkpoint_dir",
    "from_mapping",
    "metadata_claims",
]


def metadata_claims(
    path: str | Path, config: Mapping[str, Any] | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """The numeric claims a checkpoint makes about itself (pruning_meta.json, compressed-tensors
    sparsity_config) and the file each came from; ({}, {}) when it makes none.

    A claims file that exists but cannot be read is an error: going on without the claim
    would verify nothing and could pass a checkpoint on missing data."""
    found = from_checkpoint_dir(path, config)
    values = {k: float(getattr(found, k)) for k in NUMERIC if getattr(found, k) is not None}
    return values, {k: found.source.get(k, "") for k in values}
