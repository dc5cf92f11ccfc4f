"""Publisher claims as a command resolves them, once: CLI ``--claim`` > policy ``claims:`` >
what the checkpoint says about itself, each value with where it came from.

The one parser of ``--claim`` text (``parse_claim``, ``parse_claims``) and the one precedence
rule (``overlay``), for ``edgegate check`` and ``edgegate scan`` alike; reading what a
checkpoint claims about itself, and the rules a claim's value obeys, stay in
``edgegate.checkpoint.claims``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
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


def parse_claims(texts: Iterable[str]) -> dict[str, float]:
    """--claim KEY=VALUE, repeatable; the same key twice with different values is a mistake,
    not "the last one wins"."""
    out: dict[str, float] = {}
    for text in texts:
        key, value = parse_claim(text)
        if key in out and out[key] != value:
            raise InputError(
                f"--claim {key} given twice with different values ({out[key]:g} and {value:g})",
                field="--claim",
                hint="pass each claim once",
            )
        out[key] = value
    return out


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


def overlay(
    *layers: tuple[Mapping[str, float], Mapping[str, str]],
) -> tuple[dict[str, float], dict[str, str]]:
    """The precedence rule: ``(values, sources)`` layers, lowest precedence first; per key the
    last layer that gives a value wins, and its source goes with it."""
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for claims, where in layers:
        for k, v in claims.items():
            values[k] = float(v)
            sources[k] = where[k]
    return values, sources


def merge_claims(
    cli: Mapping[str, float],
    policy: Mapping[str, float],
    meta: Mapping[str, float],
    meta_sources: Mapping[str, str] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """CLI --claim > policy claims: > checkpoint metadata; also where each value came from."""
    return overlay(
        (meta, {k: (meta_sources or {}).get(k, "checkpoint metadata") for k in meta}),
        (policy, dict.fromkeys(policy, "policy")),
        (cli, dict.fromkeys(cli, "--claim")),
    )


def resolve_claims(
    cli: Mapping[str, float], policy: Mapping[str, float], compressed: Path
) -> tuple[dict[str, float], dict[str, str]]:
    """Every claim of a run and its source, resolved once for all checks."""
    return merge_claims(cli, policy, *metadata_claims(compressed))
