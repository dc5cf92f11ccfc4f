"""Typed policy sections: one frozen dataclass per check, built from the check's validated
policy block with the schema's defaults. The schema stays the one home of every default (the
dataclasses declare none; tests/test_policy_defaults.py checks that their fields are exactly
the schema's keys), so a check reads ``sec.claim_tolerance``, never ``section.get(key, 0.02)``.

BBQ's section also travels: a BBQ measurement records it as JSON ("policy", in shard partial
files), and ``edgegate merge`` reads it back with ``BBQSection.from_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from edgegate.errors import InputError, excerpt
from edgegate.policy import section_defaults, with_section_defaults

PerFormat = Mapping[
    str, "float | None"
]  # a threshold per format or runtime; a missing one is not judged
P = TypeVar("P", bound="PolicySection")
# a value of a BBQSection field as its ``to_dict`` records it (the kinds ``_fits`` accepts)
SectionValue = bool | int | float | str | Mapping[str, str] | None


class PolicySection:
    """What every typed section shares: it is built from its check's policy block by
    ``from_policy``, which a check module names as its ``SECTION`` (the runner builds each
    check's section this way, once, and hands it to the check in its ``CheckContext``). A bare
    ``PolicySection()`` is the section of a check that declares none (one registered from
    outside): it has no keys."""

    CHECK: ClassVar[str]  # the policy block it is built from: ``checks.<CHECK>``
    NULL_IS_DEFAULT: ClassVar[bool] = False  # True: a key set to null takes the schema's default

    @classmethod
    def from_policy(cls: type[P], block: Mapping[str, object]) -> P:
        """``block`` (a validated policy block, or a partial one built in code) as this
        section, with the schema's defaults for the keys it lacks."""
        given = {k: v for k, v in block.items() if v is not None} if cls.NULL_IS_DEFAULT else block
        return typed(cls, cls.CHECK, given)


@dataclass(frozen=True)
class SparsitySection(PolicySection):
    CHECK: ClassVar[str] = "sparsity"

    enabled: bool
    required: bool
    claim_tolerance: float
    require_claim: bool


@dataclass(frozen=True)
class SizeSection(PolicySection):
    CHECK: ClassVar[str] = "size"

    enabled: bool
    required: bool
    min_saving: float | PerFormat
    claim_tolerance: float


@dataclass(frozen=True)
class SpeedSection(PolicySection):
    CHECK: ClassVar[str] = "speed"

    enabled: bool
    required: bool
    runtimes: list[str]
    min_speedup: float | PerFormat | None
    min_effect: float
    repetitions: int
    sequential: bool
    warmup: int
    prompt_tokens: int
    gen_tokens: int
    threads: int | None
    time_when_decided: bool


@dataclass(frozen=True)
class PerplexitySection(PolicySection):
    CHECK: ClassVar[str] = "perplexity"

    enabled: bool
    required: bool
    runtime: str
    max_relative_increase: float
    mode: str
    n_ctx: int
    text: str | None
    min_chunks: int


@dataclass(frozen=True)
class FidelitySection(PolicySection):
    CHECK: ClassVar[str] = "fidelity"

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


@dataclass(frozen=True)
class BBQSection(PolicySection):
    CHECK: ClassVar[str] = "bbq"
    NULL_IS_DEFAULT: ClassVar[bool] = True  # a command line passes its unset options as None

    enabled: bool
    required: bool
    runtime: str
    mode: str
    condition: str
    items: int
    seed: int
    seeds: int
    temperature: float
    permute_options: bool
    data: str | None
    max_srs_increase_abs: float
    max_srs_increase_rel: float
    per_category: bool
    max_new_bias_emergence_rate: float
    disambig_items: int
    min_base_rate: float
    min_base_count: int
    max_bias_score_increase: float
    max_unknown_rate_drop: float
    max_s_amb_increase: float
    max_accuracy_drop: float
    min_committed_items: int
    validity_max_position_share: float
    validity_min_majority_share: float
    validity_min_disambig_items: int
    bootstrap_resamples: int
    null_run: bool
    sequential: bool
    looks: int
    alpha: float
    min_items: int
    min_items_per_category: int
    require_power: bool
    power_target: float
    reference_relative_srs_increase: float
    # superseded, no default: set only so the report can say it is not judged. Declared after
    # the live keys, where the recorded JSON has always had it.
    max_unbiased_to_biased_rate: float | None
    # what the run decided, not policy keys: ``runtime: auto`` and ``mode: auto`` resolved on
    # the models (runtime/mode then hold the choice); recorded so a merge reports them too
    runtime_choice: Mapping[str, str] | None
    mode_choice: Mapping[str, str] | None

    DECIDED: ClassVar[tuple[str, ...]] = ("runtime_choice", "mode_choice")

    def to_dict(self) -> dict[str, SectionValue]:
        """The JSON a BBQ measurement records as "policy": every key the schema has a default
        for, the others only when set."""
        always = section_defaults("bbq")
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not None or f.name in always
        }

    @classmethod
    def from_dict(cls, doc: Any, *, path: str | None = None) -> BBQSection:
        """A recorded section read back (``path``: the partial file, outside input): a value of
        the wrong kind or an unknown key is an InputError naming it, never a traceback later."""
        where, hint = (
            "checks.bbq.policy",
            "re-run the shard with this edgegate; the file may be damaged",
        )
        if not isinstance(doc, Mapping):
            raise InputError(
                f"expected a mapping, got {excerpt(doc)}", path=path, field=where, hint=hint
            )
        kinds = {f.name: str(f.type) for f in fields(cls)}
        for key, value in doc.items():
            if key not in kinds:
                raise InputError(
                    "unknown key (not a BBQ policy key)",
                    path=path,
                    field=f"{where}.{key}",
                    hint=hint,
                )
            if value is not None and not _fits(value, kinds[key]):
                raise InputError(
                    f"expected {kinds[key]}, got {excerpt(value)}",
                    path=path,
                    field=f"{where}.{key}",
                    hint=hint,
                )
        return bbq_section(doc)


_KINDS: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "None": (type(None),),
    "Mapping[str, str]": (Mapping,),
}


def _fits(value: Any, annotation: str) -> bool:
    """``value`` is of one of the ``X | Y`` kinds of a BBQSection field, as the schema types
    them: a bool is not a number, an integral float is an integer."""
    kinds = annotation.split(" | ")
    if isinstance(value, Mapping):
        return "Mapping[str, str]" in kinds and all(
            isinstance(x, str) for x in [*value, *value.values()]
        )
    if isinstance(value, bool):
        return "bool" in kinds
    return any(
        isinstance(value, _KINDS[k])
        or (k == "int" and isinstance(value, float) and value.is_integer())
        for k in kinds
    )


SECTIONS: dict[str, type[PolicySection]] = {
    "sparsity": SparsitySection,
    "size": SizeSection,
    "speed": SpeedSection,
    "perplexity": PerplexitySection,
    "fidelity": FidelitySection,
    "bbq": BBQSection,
}
T = TypeVar("T")


def typed(cls: type[T], check: str, section: Mapping[str, Any]) -> T:
    """``section`` (a validated policy block, or a partial one built in code) as ``cls``, with
    the schema's defaults for the keys it lacks."""
    values = with_section_defaults(check, section)
    return cls(**{f.name: values.get(f.name) for f in fields(cls)})  # type: ignore[arg-type]


def bbq_section(section: Mapping[str, Any] | None = None, **overrides: Any) -> BBQSection:
    """The BBQ section (a policy block, a command line's settings, a recorded "policy") with
    ``overrides``, and the schema's defaults for every key it lacks or sets to null. Power
    (bbq/power.py) is off by default: the reference effect is the published +84% relative SRS
    (Rath & Maliakkal 2026), and a pass that could not have seen it stays a pass but says so."""
    return BBQSection.from_policy({**(section or {}), **overrides})
