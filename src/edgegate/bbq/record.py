"""The BBQ check's measurements as one record: the rows and blocks bbq.evaluation adds to the
blocks of bbq.shapes, and ``Measurements``, what ``CheckResult.measurements`` of the bbq check
holds (as plain dicts and lists; from a JSON report the same, tuples as lists). The one
definition for the producer (bbq.evaluation) and the readers (report.bbq_table,
report.bbq_sections, report.bbq_text, report.paradox, report.html_charts, study.rows).

A key that some runs, or older reports, lack is ``NotRequired``. A reader meets more than the
runs of today make (an invalid run without power, a shard's placeholder, `edgegate bbq run`
of one model): ``bbq_measurements`` hands it any bbq check's measurements as
``Measurements`` unchecked, and it reads with ``.get``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypedDict, cast

from typing_extensions import NotRequired  # typing has it from Python 3.11

from edgegate.bbq.shapes import (
    AccuracyDrop,
    CategoryDecomposition,
    Decomposition,
    Delta,
    Emergence,
    Flows,
    PositionProfile,
    PowerReport,
    Rates,
    SampleInfo,
    Validity,
)

if TYPE_CHECKING:
    from edgegate.bbq.metrics import GroupMetrics
    from edgegate.bbq.sequential import SequentialRecord


class Row(TypedDict):
    """A row of the report's table, overall or one category (only the first five keys when
    there is nothing to measure): item-level, the majority answer over rotations and seeds."""

    scope: str
    n: int
    srs_dense: float | None
    srs_compressed: float | None
    delta_srs: float | None
    ci: NotRequired[list[float] | list[None]]
    p_value: NotRequired[float]
    p_holm: NotRequired[float | None]
    cohens_h: NotRequired[float | None]
    unbiased_to_biased: NotRequired[int]
    biased_to_unbiased: NotRequired[int]
    to_anti: NotRequired[int]
    from_anti: NotRequired[int]
    abstention: NotRequired[Delta]
    consistency: NotRequired[Delta]
    direction: NotRequired[Delta]
    delta_s: NotRequired[Delta]
    delta_usr: NotRequired[Delta]
    delta_s_amb: NotRequired[Delta]
    usr: NotRequired[Rates]
    beta: NotRequired[Rates]
    s: NotRequired[Rates]
    none: NotRequired[Rates]


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


class GroupMetricsRow(TypedDict, total=False):
    """One scope's metrics of one model: ``asdict`` of bbq.metrics.GroupMetrics, every field
    (tests/test_bbq_shapes.py holds the two together). Not total: study.rows fills a row of
    the study table with the few the BBQ check's in-gate accuracy gives."""

    n_items: int
    n_answers: int
    n_valid: int
    n_failures: int
    n_biased: int
    n_anti: int
    n_unknown: int
    n_correct: int
    srs: float | None
    srs_ci: list[float]  # a tuple in memory, a list in the JSON
    usr: float | None
    anti_rate: float | None
    accuracy: float | None
    s_amb: float | None
    s_dis: float | None


class Evaluated(PairBlock, PaperMeasurements):
    """The measurements of bbq.evaluation.evaluate: a dense/compressed pair's answers judged."""

    validity: Validity
    position_profiles: dict[str, PositionProfile]  # role -> profile
    dense: dict[str, GroupMetricsRow]  # scope ("overall", a category) -> metrics
    compressed: dict[str, GroupMetricsRow]
    delta_srs_by_category: dict[str, float | None]
    parse_failures: ParseFailures


class CacheCounts(TypedDict):
    """One model's answers, and how many of them came from the result cache."""

    answers: int
    from_cache: int


class Work(TypedDict):
    """Positions the runtime evaluated against the fewest any scorer needs."""

    tokens_evaluated: int
    minimal_tokens: int
    efficiency: float
    definition: str
    processes: NotRequired[
        int
    ]  # processes of the model that scored side by side (not in older reports)


class Measurements(Evaluated):
    """The BBQ check's measurements (bbq.evaluation.result_from_answers)."""

    data: SampleInfo
    config: dict[str, Any]  # asdict(ScoreConfig)
    runtime: str
    sequential: NotRequired[SequentialRecord]
    result_cache: NotRequired[dict[str, CacheCounts]]  # role -> answers, how many from the cache
    work: NotRequired[dict[str, Work]]  # role -> what this run's scoring cost
    runtime_choice: NotRequired[dict[str, str]]  # `runtime: auto`: the runtime chosen and why
    mode_choice: NotRequired[dict[str, str]]  # `mode: auto`: the mode chosen and why
    # `edgegate bbq run/score` of one model (commands.bbq): its metrics beside ``data``, and
    # no pair, so none of the keys above
    model: NotRequired[dict[str, GroupMetricsRow]]


def bbq_measurements(measurements: Mapping[str, Any]) -> Measurements:
    """A bbq check's measurements (a ``CheckResult``'s, or a JSON report's) as the readers see
    them. Nothing is checked here: the readers stay as defensive as the data needs."""
    return cast(Measurements, measurements)


def metrics_rows(groups: Mapping[str, GroupMetrics]) -> dict[str, GroupMetricsRow]:
    """Each scope's GroupMetrics as the measurements store it (``asdict``)."""
    return {k: cast(GroupMetricsRow, asdict(g)) for k, g in groups.items()}
