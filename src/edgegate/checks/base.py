"""What every check module shares: the context it runs in and the shape it has.

A check module ``edgegate.checks.<name>`` has two halves:

- ``measure(ctx, shard) -> Measurement``: the only part that touches models or files; with
  ``shard=(i, n)`` it measures only that shard's share of the work (BBQ items, perplexity
  chunks). Sharded checks (``SHARDED = True``: bbq, perplexity) return JSON-able
  measurements, so a shard can write them to its partial file; the others (sparsity, size,
  speed) measure in memory (a scan, a benchmark), run whole in shard 1 and travel as results;
- ``judge(measurements, section) -> CheckResult``: pure; the thresholds of the check's policy
  section applied to the measurements of every shard (one for an unsharded run), each given
  as (where it came from, measurement) so a merge can name the file at fault.

``run(ctx)`` is ``judge([(THIS_RUN, measure(ctx, None))], ctx.section)``; ``edgegate merge``
loads the measurements from the partial files and calls the same ``judge``. The section is the
check's typed policy block (``edgegate.checks.sections``), built by the parser the module names
as ``SECTION`` (``checks.section``): the runner and a merge build it the same way, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypedDict, TypeVar

from edgegate.checks.sections import PolicySection
from edgegate.progress import NullProgress, Progress
from edgegate.results import (
    CheckResult,
    Interval,
    Status,
    Verdict,
    check_result_from_dict,
    compare,
    jsonable,
)
from edgegate.settings import RunSettings, Shard

if TYPE_CHECKING:
    from edgegate.forensics.scan import ScanResult

__all__ = [
    "THIS_RUN",
    "CheckContext",
    "CheckModule",
    "CheckResult",
    "DataInput",
    "Evidence",
    "Interval",
    "Measured",
    "Needs",
    "ObservedEvidence",
    "PolicySection",
    "RuntimeUse",
    "Shard",
    "SharedWork",
    "Status",
    "Verdict",
    "VerdictDetail",
    "check_result_from_dict",
    "compare",
    "jsonable",
]

Measured = tuple[
    str, Any
]  # (where the measurement came from: "this run" or a partial file, measurement)
THIS_RUN = "this run"
S = TypeVar("S", bound=PolicySection)  # a check's typed policy section
S_co = TypeVar("S_co", bound=PolicySection, covariant=True)  # a BBQ context is a context


class Evidence(TypedDict, total=False):
    """The evidence fields of a ``Verdict`` that several verdicts of one check share, kept once
    and passed as ``Verdict(name, status, message, **evidence)`` (or to ``compare``)."""

    unit: str
    n: int | None
    ci: Interval | None
    effect_size: float | None
    effect_size_name: str | None
    test: str | None
    p_value: float | None
    scope: str | None


class ObservedEvidence(Evidence, total=False):
    """``Evidence`` with the observed value (each verdict sets its own threshold)."""

    observed: float | None


class VerdictDetail(ObservedEvidence, total=False):
    """Every field of a ``Verdict`` after its name, status and message."""

    threshold: float | None
    comparator: str | None


class ChunkingDict(TypedDict):
    """How a scoring pass cut the text into chunks (the same for every shard)."""

    n_ctx: int
    mode: str
    first: int
    n_chunks: int
    n_eval: int
    tokens_sha256: str


class ScoredText(TypedDict):
    """Which text a pass scored, and how many tokens of it."""

    source: str
    sha256: str
    chars: int
    tokens_scored: int


class ScoringExtra(TypedDict, total=False):
    """What a scoring pass records beside the NLLs (perplexity.same_tokenizer and the pass)."""

    tokenizer_probes: int
    dense_model: dict[str, Any]  # Backend.info(): each runtime adds its own keys
    compressed_model: dict[str, Any]
    result_cache: dict[str, dict[str, int]]  # role -> chunks, and how many came from the cache
    dense_ident: dict[str, str]  # runtime, model
    compressed_ident: dict[str, str]
    vocab_size: int | None
    text: ScoredText
    scored_in: str  # perplexity reusing the fidelity check's pass


class FidelityScores(TypedDict):
    """Per-token KL and top-1 agreement of the chunks a fidelity pass scored."""

    kl: list[list[float]]
    top1: list[list[int]]
    compare_s: float


class ScoringPassBody(TypedDict):
    chunking: ChunkingDict
    indices: list[int]  # the chunks this shard scored
    nll: dict[str, list[list[float]]]  # role -> chunk -> token
    seconds: dict[str, float]  # role -> scoring time
    extra: ScoringExtra
    runtime_choice: dict[str, str] | None  # `runtime: auto`: the runtime chosen and why
    duration_s: float


class ScoringPass(ScoringPassBody, total=False):
    """What one scoring pass over a shard's chunks measured (checks._scoring.run_pass): per-token
    NLLs of both models, and with the fidelity check per-token KL and top-1 agreement."""

    fidelity: FidelityScores


class ScoringShard(ScoringPass):
    """One shard's measurement of the perplexity or fidelity check: the pass and the check's
    settings; per-token numbers, never aggregates."""

    settings: Mapping[str, str | int | float]  # the check's thresholds and the pass's settings


@dataclass(frozen=True)
class KeptPass:
    """A scoring pass the fidelity check made, kept for the perplexity check of the same run."""

    key: str  # runtime, models, text, n_ctx, mode and shard: reused only on an exact match
    measured: ScoringPass


@dataclass
class SharedWork:
    """Work one check does that another reuses within a run (one object per run, mutable)."""

    scan_compressed: ScanResult | None = None  # the sparsity scan feeds the size check
    scan_dense: ScanResult | None = None
    scoring_pass: KeptPass | None = None


@dataclass
class CheckContext(Generic[S_co]):
    """Everything a check may use. Built by the runner from the typed settings and the policy.

    ``section`` is this check's block of the validated policy (``policy.checks.<name>``), typed
    (``SparsitySection``, ``BBQSection``, ...: the module's ``SECTION`` built it);
    ``claims`` are CLI ``--claim`` > policy ``claims:`` > checkpoint metadata, resolved once by
    the runner, with ``claim_sources`` saying where each came from; ``shared`` lets checks
    reuse work (the sparsity scan feeds the size check); ``shard`` is (i, n) of ``--shard``.
    """

    compressed_path: Path
    dense_path: Path | None
    section: S_co
    claims: Mapping[str, float] = field(default_factory=dict)
    claim_sources: Mapping[str, str] = field(default_factory=dict)
    settings: RunSettings = field(default_factory=RunSettings)
    shard: Shard | None = None
    shared: SharedWork = field(default_factory=SharedWork)
    progress: Progress = field(default_factory=NullProgress)
    policy_dir: Path | None = None  # relative paths in the policy resolve against it, not the cwd

    def claim_source(self, key: str) -> str:
        return str(self.claim_sources.get(key, "policy/cli"))


class RuntimeUse(Enum):
    """How a check uses a runtime: the runner and preflight read this instead of check names."""

    NONE = "none"  # reads the checkpoint files only
    ONE = "one"  # compares both models on one runtime: policy `runtime`, --runtime (one name)
    SEVERAL = "several"  # times each runtime it is given: policy `runtimes`, --runtime (a list)


class Cost(IntEnum):
    """What a check costs, coarsely: the runner runs cheaper checks first, so a run with
    --fail-fast spends the fewest minutes before a required check fails."""

    STATIC = 0  # reads the checkpoint files (seconds)
    PASS = 1  # one scoring pass of both models over a text (minutes on a small model)
    TIMING = 2  # repeated timed runs of both models in fresh processes
    SAMPLE = 3  # both models answer a sample of items (the longest)


@dataclass(frozen=True)
class DataInput:
    """A file or folder a check will read besides the models (hashed into the report's inputs,
    checked by preflight before anything is measured)."""

    role: str  # its name among the report's inputs, e.g. "bbq_data"
    where: str  # the flag or policy field a problem with it names
    value: str | None  # a path (or hf:NAME), None when not given
    label: str  # what it is, for messages: "BBQ data", "perplexity text"
    kind: Literal["file", "folder"] = "file"  # a file must be a regular file (a FIFO would block)
    missing: str | None = None  # the problem when it is not given; None: optional


# (the check's section, settings, policy folder) -> the data it reads
DataInputs = Callable[[S, RunSettings, "Path | None"], Sequence[DataInput]]


@dataclass(frozen=True)
class Needs(Generic[S]):
    """What a check needs from a run, declared by its module as ``NEEDS``."""

    local_files: bool = False  # the checkpoint files themselves (models behind URLs will not do)
    runtime: RuntimeUse = RuntimeUse.NONE
    on_swapped_inputs: bool = (
        False  # still measured when the inputs look swapped: its numbers show it
    )
    data: DataInputs[S] | None = None  # (section, settings, policy folder) -> the data it reads
    shares_data_of: str | None = None  # another check whose data this one reads by default
    cost: Cost = Cost.STATIC


class CheckModule(Protocol[S]):
    """The two halves every ``edgegate.checks.<name>`` module has (see the module docstring),
    and the type of its policy section."""

    SHARDED: bool  # True: measure() splits its work over shards and returns JSON-able data
    SECTION: type[S]  # the typed section: ``SECTION.from_policy(block)``

    def measure(self, ctx: CheckContext[S], shard: Shard | None) -> Any: ...

    def judge(self, measurements: Sequence[Measured], section: S) -> CheckResult: ...
