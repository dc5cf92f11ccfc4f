"""The BBQ check's measurements as the reports and the study table read them.

``CheckResult.measurements`` of the bbq check is built by edgegate.bbq.evaluation as plain
dicts and lists, and comes back the same from a JSON report (tuples as lists). These
TypedDicts name the keys a reader uses and what each holds. Every key is optional
(``total=False``): a reader meets valid runs, invalid ones (no power), old reports and
shard placeholders alike, and reads with ``.get``. Keys no reader uses ride along untyped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypedDict, cast

if TYPE_CHECKING:
    from edgegate.bbq.metrics import GroupMetrics
    from edgegate.bbq.power import PowerPoint


class GroupMetricsRow(TypedDict, total=False):
    """One scope's metrics of one model: ``asdict`` of bbq.metrics.GroupMetrics."""

    n_items: int
    n_answers: int
    n_valid: int
    n_failures: int
    n_biased: int
    n_anti: int
    n_unknown: int
    n_correct: int
    srs: float | None
    srs_ci: Sequence[float]  # a tuple in memory, a list in the JSON
    usr: float | None
    anti_rate: float | None
    accuracy: float | None
    s_amb: float | None
    s_dis: float | None


class Estimate(TypedDict, total=False):
    """A paired difference with its bootstrap CI (bbq.decompose); Δs and Δs_AMB carry a
    permutation test too."""

    value: float | None
    ci: Sequence[float | None] | None
    p_value: float
    test: str


class ScopeRow(TypedDict, total=False):
    """One row of the metric table, "overall" or a category (bbq.evaluation._row): item-level,
    the majority answer over rotations and seeds."""

    scope: str
    n: int
    srs_dense: float | None
    srs_compressed: float | None
    delta_srs: float | None
    ci: list[float | None]
    p_value: float
    p_holm: float | None
    cohens_h: float | None
    unbiased_to_biased: int
    biased_to_unbiased: int
    abstention: Estimate
    consistency: Estimate
    direction: Estimate
    delta_s: Estimate
    delta_s_amb: Estimate


class AccuracyTest(TypedDict, total=False):
    """The dense model's disambiguated accuracy against chance (bbq.judge.validity)."""

    k: int
    n: int
    rate: float
    p_value: float


class Validity(TypedDict, total=False):
    """Can the dense model do BBQ in this mode (bbq.judge.validity)?"""

    status: str  # valid, invalid, unverified
    mode: str
    reasons: list[str]
    suggestion: str | None
    disambig_accuracy: AccuracyTest | None
    ambig_unknown_share: float | None


class PositionProfile(TypedDict, total=False):
    """One model's share of answers by position or label (bbq.reduce)."""

    basis: str
    n_answers: int
    shares: dict[str, float]
    top: str | None
    top_share: float | None
    majority_share: float


class PositionProfiles(TypedDict, total=False):
    dense: PositionProfile
    compressed: PositionProfile


class Flows(TypedDict, total=False):
    """Item flows between the answer classes, both ways (bbq.decompose.flows)."""

    unbiased_to_biased: int
    biased_to_unbiased: int
    to_anti: int
    from_anti: int
    biased_to_anti: int
    anti_to_biased: int
    unknown_lost: int
    unknown_gained: int


class Emergence(TypedDict, total=False):
    """New-bias emergence beside its references (bbq.decompose.emergence); ``null_emerged``
    only with a dense-vs-dense null run."""

    emerged: int
    anti_emerged: int
    disappeared: int
    dense_srs0: int
    null_emerged: int


class Transitions(TypedDict, total=False):
    """Answer-level transitions: dense class -> compressed class -> count."""

    matrix: dict[str, dict[str, int]]
    n_pairs: int


class Paper(TypedDict, total=False):
    """The study's own definitions (Rath & Maliakkal 2026), for comparison only."""

    srs: list[float | None]  # dense, compressed
    unbiased_to_biased_rate: float | None
    new_bias_emergence_rate: float | None


class Excluded(TypedDict, total=False):
    count: int
    reasons: dict[str, int]


class DataInfo(TypedDict, total=False):
    """Where the items came from and how many were used."""

    source: str
    condition: str
    n_used: int
    n_loaded: int
    excluded: Excluded


class PowerMDE(TypedDict):
    """The smallest planted shift detected with the target power (None: none on the grid)."""

    delta_srs: float | None
    delta_s: float | None


class PowerReference(TypedDict, total=False):
    """The published reference effect planted into this run; the PowerPoint keys only when
    it could be planted."""

    relative_srs_increase: float
    note: str
    k: float
    delta_srs: float
    delta_s: float | None
    power_srs: float
    power_direction: float
    power_any: float


class PowerReport(TypedDict, total=False):
    """bbq.power.power_report: the simulated power at this run's n."""

    n: int
    draws: int
    target: float
    churn: float
    curve: list[PowerPoint]
    mde: PowerMDE
    reference: PowerReference


class CacheUse(TypedDict):
    """One model's answers, and how many of them came from the result cache."""

    answers: int
    from_cache: int


class Work(TypedDict, total=False):
    """Positions the runtime evaluated against the fewest any scorer needs."""

    tokens_evaluated: int
    minimal_tokens: int
    efficiency: float
    processes: int


class InGateAccuracy(TypedDict, total=False):
    """Disambiguated accuracy of both models when the policy scored them (bbq.verdicts)."""

    n: int
    accuracy: list[float | None]  # dense, compressed


class BBQMeasurements(TypedDict, total=False):
    """The bbq check's measurements, the keys a reader uses."""

    data: DataInfo
    validity: Validity
    position_profiles: PositionProfiles
    dense: dict[str, GroupMetricsRow]  # scope ("overall", a category) -> metrics
    compressed: dict[str, GroupMetricsRow]
    model: dict[str, GroupMetricsRow]  # `edgegate bbq run` of one model
    overall: ScopeRow
    per_category: list[ScopeRow]
    flows: Flows
    emergence: Emergence
    disambig_accuracy: InGateAccuracy | None
    driver: str | None
    judged: bool
    power: PowerReport
    transitions: Transitions
    paper: Paper
    result_cache: dict[str, CacheUse]  # model role -> its answers
    work: dict[str, Work]
    mode_choice: dict[str, str]  # mode, requested, reason (``mode: auto``)


def bbq_measurements(measurements: Mapping[str, Any]) -> BBQMeasurements:
    """A bbq check's measurements (a ``CheckResult``'s, or a JSON report's) as the readers see
    them. Nothing is checked here: the readers stay as defensive as the data needs."""
    return cast(BBQMeasurements, measurements)


def metrics_rows(groups: Mapping[str, GroupMetrics]) -> dict[str, GroupMetricsRow]:
    """Each scope's GroupMetrics as the measurements store it (``asdict``)."""
    return {k: cast(GroupMetricsRow, asdict(g)) for k, g in groups.items()}
