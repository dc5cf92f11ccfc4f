"""The shapes of the BBQ check's measurements: the JSON blocks that bbq.decompose, bbq.judge,
bbq.verdicts, bbq.power and bbq.evaluation build and the report reads, one TypedDict each
(types only; the modules named build them, in the key order the report shows). The record of
a group-sequential run is bbq.sequential's, beside the code that writes and reads it.

A key that some runs lack is declared in a ``total=False`` subclass of the block's required
keys (the project runs on Python 3.10: no ``NotRequired``). Blocks that are a dataclass made
JSON (``asdict`` of ``GroupMetrics`` or ``ScoreConfig``) stay typed by their dataclass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from edgegate.bbq.sequential import SequentialRecord

ValidityStatus = Literal["valid", "invalid", "unverified"]


# -- checks.bbq -------------------------------------------------------------------------------
class Exclusions(TypedDict):
    count: int
    reasons: dict[str, int]  # why -> items


class _SampleInfo(TypedDict):
    source: str
    condition: str
    n_loaded: int
    n_used: int  # items judged
    n_disambig: int
    excluded: Exclusions  # items without a derivable bias target
    categories: list[str]


class SampleInfo(_SampleInfo, total=False):
    """The BBQ sample a run drew (checks.bbq.prepare_items): the measurements' ``data``."""

    n_sampled: int  # a run stopped early (bbq.sequential): the sample drawn


# -- bbq.reduce ------------------------------------------------------------------------------
class _PositionProfile(TypedDict):
    basis: str  # "letter position", or "data-file slot" in loglik mode
    n_answers: int  # valid answers
    counts: dict[str, int]  # letter (slot) -> answers there
    shares: dict[str, float | None]
    top: str | None  # the dominant letter (slot)
    top_share: float | None
    rotations: list[int]


class PositionProfile(_PositionProfile, total=False):
    """A model's answers per letter (slot), over every item (bbq.reduce.position_profile)."""

    majority_share: float  # items with a majority answer (given the item table)


# -- bbq.decompose -----------------------------------------------------------------------------
class _Delta(TypedDict):
    value: float | None
    ci: list[float] | None  # paired bootstrap, 95%


class Delta(_Delta, total=False):
    """A change from dense to compressed with its CI (and, for Δs and Δs_AMB, its test)."""

    p_value: float
    test: str


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


class _Emergence(TypedDict):
    n_items: int
    dense_srs0: int
    dense_srs_pos: int
    emerged: int
    disappeared: int
    dense_anti0: int
    anti_emerged: int
    only_biased: int
    only_anti: int


class Emergence(_Emergence, total=False):
    """New-bias emergence beside its reference (with a null run: the null's own emergence)."""

    null_emerged: int
    only_compressed: int
    only_null: int


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


class _PowerReference(TypedDict):
    source: str
    relative_srs_increase: float
    delta_srs_target: float


class PowerReference(_PowerReference, total=False):
    """The published effect planted at this run's n: a ``PowerPoint`` when it applies, and
    whether this run detects it (None: not a question of power, ``note`` says why)."""

    k: float
    delta_srs: float
    delta_s: float | None
    power_srs: float
    power_direction: float
    power_any: float
    capped: bool
    detectable: bool | None
    note: str


class MinimumDetectable(TypedDict):
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


# -- bbq.evaluation ----------------------------------------------------------------------------
class _Row(TypedDict):
    scope: str
    n: int
    srs_dense: float | None
    srs_compressed: float | None
    delta_srs: float | None


class Row(_Row, total=False):
    """A row of the report's table, overall or one category (only the first five keys when
    there is nothing to measure)."""

    ci: list[float] | list[None]
    p_value: float
    p_holm: float | None
    cohens_h: float | None
    unbiased_to_biased: int
    biased_to_unbiased: int
    to_anti: int
    from_anti: int
    abstention: Delta
    consistency: Delta
    direction: Delta
    delta_s: Delta
    delta_usr: Delta
    delta_s_amb: Delta
    usr: Rates
    beta: Rates
    s: Rates
    none: Rates


class TransitionCounts(TypedDict):
    """The answer-level transitions (item, seed, rotation) on ambiguous items."""

    basis: str
    matrix: dict[str, dict[str, int]]
    n_pairs: int
    n_items: int
    n_items_unpaired: int


class PaperNumbers(TypedDict):
    """The numbers by the definitions of Rath & Maliakkal 2026."""

    definitions: str
    srs: list[float | None]  # [dense, compressed]
    n_items: int
    n_ambig_items: int
    unbiased_to_biased: int
    unbiased_to_biased_rate: float | None
    biased_to_unbiased: int
    dense_srs0: int
    new_bias: int
    new_bias_emergence_rate: float | None


class PaperMeasurements(TypedDict):
    transitions: TransitionCounts
    paper: PaperNumbers


class PairFindings(TypedDict, total=False):
    """judge_pair's measurements beside the report's rows (none without ambiguous items)."""

    decomposition: Decomposition
    flows: Flows
    emergence: Emergence
    disambig_accuracy: AccuracyDrop | None
    driver: str


class Powered(TypedDict, total=False):
    power: PowerReport  # when the pair was judged


class _PairBlock(TypedDict):
    overall: Row
    per_category: list[Row]
    judged: bool  # False: the dense model is invalid, no verdict rests on the numbers
    per_category_decomposition: dict[str, CategoryDecomposition]


class PairBlock(_PairBlock, PairFindings, Powered):
    """The pair's rows, judge_pair's measurements and the power."""


class ParseFailures(TypedDict):
    dense: int
    compressed: int


class Evaluated(PairBlock, PaperMeasurements):
    """The measurements of bbq.evaluation.evaluate: a dense/compressed pair's answers judged."""

    validity: Validity
    position_profiles: dict[str, PositionProfile]  # role -> profile
    dense: dict[str, dict[str, Any]]  # group -> asdict(GroupMetrics)
    compressed: dict[str, dict[str, Any]]
    delta_srs_by_category: dict[str, float | None]
    parse_failures: ParseFailures


class CacheCounts(TypedDict):
    answers: int
    from_cache: int


class Work(TypedDict):
    tokens_evaluated: int
    minimal_tokens: int
    efficiency: float
    definition: str
    processes: int  # processes of the model that scored side by side


class _Measurements(Evaluated):
    data: SampleInfo
    config: dict[str, Any]  # asdict(ScoreConfig)
    runtime: str


class Measurements(_Measurements, total=False):
    """The BBQ check's measurements (bbq.evaluation.result_from_answers)."""

    sequential: SequentialRecord
    result_cache: dict[str, CacheCounts]  # role -> answers, and how many came from the cache
    work: dict[str, Work]  # role -> what this run's scoring cost
    runtime_choice: dict[str, str]  # `runtime: auto`: the runtime chosen and why
    mode_choice: dict[str, str]  # `mode: auto`: the mode chosen and why
