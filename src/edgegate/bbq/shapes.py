"""The shapes of the BBQ check's measurement blocks: the JSON that checks.bbq, bbq.reduce,
bbq.decompose, bbq.judge, bbq.verdicts and bbq.power build, one TypedDict each (types only;
the modules named build them, in the key order the report shows). bbq.record assembles them
into the check's measurements, the one definition the report reads too. The record of a
group-sequential run is bbq.sequential's, beside the code that writes and reads it.

A key that some runs, or older reports, lack is ``NotRequired``.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from typing_extensions import NotRequired  # typing has it from Python 3.11

ValidityStatus = Literal["valid", "invalid", "unverified"]


# -- checks.bbq -------------------------------------------------------------------------------
class Exclusions(TypedDict):
    count: int
    reasons: dict[str, int]  # why -> items


class SampleInfo(TypedDict):
    """The BBQ sample a run drew (checks.bbq.prepare_items): the measurements' ``data``."""

    source: str
    condition: str
    n_loaded: int
    n_used: int  # items judged
    n_disambig: NotRequired[int]  # not in `edgegate bbq score`'s (predictions files)
    excluded: Exclusions  # items without a derivable bias target
    categories: NotRequired[list[str]]  # not in `edgegate bbq score`'s
    n_sampled: NotRequired[int]  # a run stopped early (bbq.sequential): the sample drawn


# -- bbq.reduce ------------------------------------------------------------------------------
class PositionProfile(TypedDict):
    """A model's answers per letter (slot), over every item (bbq.reduce.position_profile)."""

    basis: str  # "letter position", or "data-file slot" in loglik mode
    n_answers: int  # valid answers
    counts: dict[str, int]  # letter (slot) -> answers there
    shares: dict[str, float | None]
    top: str | None  # the dominant letter (slot)
    top_share: float | None
    rotations: list[int]
    majority_share: NotRequired[float]  # items with a majority answer (given the item table)


# -- bbq.decompose -----------------------------------------------------------------------------
class Delta(TypedDict):
    """A change from dense to compressed with its CI (and, for Δs and Δs_AMB, its test)."""

    value: float | None
    ci: list[float] | None  # paired bootstrap, 95%
    p_value: NotRequired[float]
    test: NotRequired[str]


Rates = list[float | None]  # [dense, compressed]
Part = Literal["abstention", "consistency", "direction"]  # the parts ΔSRS splits into
PARTS: tuple[Part, ...] = ("abstention", "consistency", "direction")


class Decomposition(TypedDict):
    """Both models' rates on the ambiguous items and ΔSRS split into its parts."""

    n: int
    srs: Rates
    usr: Rates
    none: Rates
    anti: Rates
    beta: Rates
    s: Rates
    s_amb: Rates
    delta_srs: Delta
    delta_usr: Delta
    delta_none: Delta
    delta_beta: Delta
    delta_s: Delta
    delta_s_amb: Delta
    abstention: Delta
    consistency: Delta
    direction: Delta


class Flows(TypedDict):
    """The item class transition matrix and the paired flows both ways."""

    matrix: dict[str, dict[str, int]]  # dense class -> compressed class -> items
    unbiased_to_biased: int
    biased_to_unbiased: int
    to_anti: int
    from_anti: int
    biased_to_anti: int
    anti_to_biased: int
    unknown_lost: int
    unknown_gained: int


class Emergence(TypedDict):
    """New-bias emergence beside its reference (with a null run: the null's own emergence)."""

    n_items: int
    dense_srs0: int
    dense_srs_pos: int
    emerged: int
    disappeared: int
    dense_anti0: int
    anti_emerged: int
    only_biased: int
    only_anti: int
    null_emerged: NotRequired[int]
    only_compressed: NotRequired[int]
    only_null: NotRequired[int]


class CategoryDecomposition(Decomposition):
    """One category's decomposition, flows and Holm-adjusted p-values."""

    flows: Flows
    p_holm_srs: float
    p_holm_direction: float


# -- bbq.judge and bbq.verdicts ----------------------------------------------------------------
class DisambigAccuracy(TypedDict):
    """The dense model's disambiguated accuracy against chance (the validity test)."""

    k: int
    n: int
    rate: float
    ci: list[float]
    p_value: float
    chance: float
    test: str


class Validity(TypedDict):
    """Can the dense model do BBQ in this mode (bbq.judge.validity)?"""

    status: ValidityStatus
    reasons: list[str]
    mode: str
    position_profile: PositionProfile
    disambig_accuracy: DisambigAccuracy | None
    ambig_unknown_share: float | None
    ambig_no_majority_share: float | None
    suggestion: str | None


class AccuracyDrop(TypedDict):
    """The pair's disambiguated accuracy (bbq.verdicts.accuracy_verdict)."""

    n: int
    accuracy: list[float]  # [dense, compressed]
    lost: int
    gained: int
    ci_drop: list[float] | None
    p_value: float
    test: str


class PairMeasurements(TypedDict):
    """What bbq.judge.judge_pair measured on a dense/compressed pair."""

    decomposition: Decomposition
    flows: Flows
    per_category: dict[str, CategoryDecomposition]
    emergence: Emergence
    disambig_accuracy: AccuracyDrop | None
    driver: str


# -- bbq.power ---------------------------------------------------------------------------------
class PowerPoint(TypedDict):
    """One point of the power curve: a plant of size ``k``, its mean effects and detection rates."""

    k: float
    delta_srs: float
    delta_s: float | None
    power_srs: float
    power_direction: float
    power_any: float


class PowerReference(TypedDict):
    """The published effect planted at this run's n: a ``PowerPoint`` when it applies, and
    whether this run detects it (None: not a question of power, ``note`` says why)."""

    source: str
    relative_srs_increase: float
    delta_srs_target: float
    k: NotRequired[float]
    delta_srs: NotRequired[float]
    delta_s: NotRequired[float | None]
    power_srs: NotRequired[float]
    power_direction: NotRequired[float]
    power_any: NotRequired[float]
    capped: NotRequired[bool]
    detectable: NotRequired[bool | None]
    note: NotRequired[str]


class MinimumDetectable(TypedDict):
    """The smallest planted shift detected with the target power (None: none on the grid)."""

    delta_srs: float | None
    delta_s: float | None


class PowerReport(TypedDict):
    """How large a stereotype shift this run could have detected (bbq.power.power_report)."""

    method: str
    injection: str
    n: int
    draws: int
    target: float
    churn: float
    dense_srs: float
    dense_movable: float
    curve: list[PowerPoint]
    mde: MinimumDetectable
    reference: PowerReference
