"""What a BBQ scoring run asks: the mode, seeds, rotations and batch size (``ScoreConfig``), and
the result cache's key for the answers a runtime gives in a mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgegate.bbq.dataset import BBQItem
from edgegate.errors import InputError

MODES = ("letter", "loglik")


@dataclass(frozen=True)
class ScoreConfig:
    mode: str = "letter"
    seeds: int = 1
    temperature: float = 0.0
    permute: bool = False
    batch_size: int = 16
    min_letter_mass: float = 0.0
    max_new_tokens: int = 4  # sampled letter mode
    seed_offset: int = 0  # first sampling seed (a dense-vs-dense null run uses fresh seeds)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(
                f"unknown BBQ mode {self.mode!r}", field="mode", hint="use letter or loglik"
            )
        if self.seeds < 1 or self.batch_size < 1:
            raise InputError("seeds and batch size must be >= 1", field="seeds")
        if self.temperature < 0:
            raise InputError("temperature must be >= 0", field="temperature")
        if self.mode == "loglik" and self.temperature > 0:
            raise InputError(
                "loglik mode is deterministic; temperature must be 0", field="temperature"
            )

    @property
    def sampled(self) -> bool:
        return self.mode == "letter" and self.temperature > 0

    def seed_list(self) -> list[int]:
        # deterministic scoring gives the same answer for every seed: ask once
        return list(range(self.seed_offset, self.seed_offset + self.seeds)) if self.sampled else [0]

    def rotations(self) -> list[int]:
        # positions only exist in letter mode
        return [0, 1, 2] if self.permute and self.mode == "letter" else [0]

    def keys(self, items: Sequence[BBQItem]) -> list[tuple[str, int, int]]:
        """Every (item, seed, rotation) to answer, in report order."""
        return [(it.uid, s, r) for it in items for s in self.seed_list() for r in self.rotations()]


# Where a runtime's way of scoring changed the numbers an answer rests on, its answers are
# cached under a new key, so one run never mixes answers from both ways (llama.cpp loglik:
# a context's answers are branches of one decode since this version; see backends/branching.py.
# transformers: prompts sharing a prefix go as token trees since this version, and with bf16
# weights the batch layout moves scores by float noise; see backends/tree_pack.py).
_SCORING = {
    ("llamacpp", "loglik"): "llamacpp/branched",
    ("transformers", "loglik"): "transformers/trees",
    ("transformers", "letter"): "transformers/trees",
}


def answer_key(runtime: str, mode: str, *, branched: bool = True) -> str:
    """The result cache's backend key for answers scored by ``runtime`` in ``mode``;
    ``branched``: False for a llama-cpp-python too old to branch (its answers are another way's)."""
    return _SCORING.get((runtime, mode), runtime) if branched else runtime
