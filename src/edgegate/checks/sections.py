"""Typed policy sections: one frozen dataclass per check, built from the check's validated
policy block with the schema's defaults. The schema stays the one home of every default (the
dataclasses declare none; tests/test_policy_defaults.py checks that their fields are exactly
the schema's keys), so a check reads ``sec.claim_tolerance``, never ``section.get(key, 0.02)``.

BBQ's section (40 keys through the bbq/ package) is not typed yet: it is read through
``checks.bbq.section_settings``, which takes its defaults from the same schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from edgegate.policy import with_section_defaults

PerFormat = Mapping[str, "float | None"]  # a threshold per format or runtime; a missing one is not judged


@dataclass(frozen=True)
class SparsitySection:
    enabled: bool
    required: bool
    claim_tolerance: float
    require_claim: bool


@dataclass(frozen=True)
class SizeSection:
    enabled: bool
    required: bool
    min_saving: float | PerFormat
    claim_tolerance: float


@dataclass(frozen=True)
class SpeedSection:
    enabled: bool
    required: bool
    runtimes: list[str]
    min_speedup: float | PerFormat | None
    min_effect: float
    repetitions: int
    warmup: int
    prompt_tokens: int
    gen_tokens: int
    threads: int | None
    time_when_decided: bool


@dataclass(frozen=True)
class PerplexitySection:
    enabled: bool
    required: bool
    runtime: str
    max_relative_increase: float
    mode: str
    n_ctx: int
    text: str | None
    min_chunks: int


@dataclass(frozen=True)
class FidelitySection:
    enabled: bool
    required: bool
    max_mean_kl: float
    min_top1_agreement: float
    min_chunks: int
    bootstrap_resamples: int
    seed: int
    # the perplexity block's scoring settings unless this block names its own (the policy
    # loader copies them in); None when a section is built without a policy
    runtime: str | None
    n_ctx: int | None
    text: str | None
    mode: str | None


SECTIONS: dict[str, type] = {
    "sparsity": SparsitySection, "size": SizeSection, "speed": SpeedSection,
    "perplexity": PerplexitySection, "fidelity": FidelitySection,
}
T = TypeVar("T")


def typed(cls: type[T], check: str, section: Mapping[str, Any]) -> T:
    """``section`` (a validated policy block, or a partial one built in code) as ``cls``, with
    the schema's defaults for the keys it lacks."""
    values = with_section_defaults(check, section)
    return cls(**{f.name: values.get(f.name) for f in fields(cls)})  # type: ignore[arg-type]
