"""Publisher claims as a gate run resolves them, once: CLI ``--claim`` > policy ``claims:`` >
what the checkpoint says about itself, each value with where it came from."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

from edgegate.errors import InputError
from edgegate.policy import policy_schema


def claim_keys() -> list[str]:
    return sorted(policy_schema()["properties"]["claims"]["properties"])


def parse_claim(text: str) -> tuple[str, float]:
    """``size_saving=0.5`` or ``sparsity=50%`` -> (key, fraction)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not value.strip():
        raise InputError(
            f"expected KEY=VALUE, got '{text}'",
            field="--claim",
            hint=f"keys: {', '.join(claim_keys())}",
        )
    if key not in claim_keys():
        close = difflib.get_close_matches(key, claim_keys(), n=1)
        tip = f"did you mean '{close[0]}'? " if close else ""
        raise InputError(
            f"unknown claim '{key}'", field="--claim", hint=f"{tip}keys: {', '.join(claim_keys())}"
        )
    # The readers' claim rules (fractions in [0, 1], 50%, 1.5x), so metadata and CLI agree.
    from edgegate.checkpoint.claims import from_mapping

    try:
        parsed = from_mapping({key: value.strip()}, "--claim")
    except InputError as exc:
        raise InputError(exc.message, field="--claim", hint=exc.hint) from None
    return key, float(getattr(parsed, key))


def metadata_claims(compressed: Path) -> tuple[dict[str, float], dict[str, str]]:
    """Claims the checkpoint makes about itself (pruning_meta.json, compressed-tensors
    sparsity_config), with where each came from; ({}, {}) when it makes none (or the model
    is behind an endpoint: no files)."""
    from edgegate.checkpoint.claims import metadata_claims as read

    if not compressed.exists():
        return {}, {}
    values, where = read(compressed)
    return values, {
        k: f"checkpoint metadata ({where[k]})" if where.get(k) else "checkpoint metadata"
        for k in values
    }


def merge_claims(
    cli: Mapping[str, float],
    policy: Mapping[str, float],
    meta: Mapping[str, float],
    meta_sources: Mapping[str, str] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """CLI --claim > policy claims: > checkpoint metadata; also where each value came from."""
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for source, claims in (("checkpoint metadata", meta), ("policy", policy), ("--claim", cli)):
        for k, v in claims.items():
            values[k] = float(v)
            sources[k] = (
                (meta_sources or {}).get(k, source) if source == "checkpoint metadata" else source
            )
    return values, sources


def resolve_claims(
    cli: Mapping[str, float], policy: Mapping[str, float], compressed: Path
) -> tuple[dict[str, float], dict[str, str]]:
    """Every claim of a run and its source, resolved once for all checks."""
    return merge_claims(cli, policy, *metadata_claims(compressed))
