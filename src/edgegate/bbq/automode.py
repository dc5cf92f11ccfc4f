"""``mode: auto`` for BBQ: the scoring mode that can judge this model.

A base model (no chat template) asked a multiple-choice question mostly answers a *letter*
(gemma-3-270m base: "A" on 75% of answers, 1 of 30 disambiguated items right), so letter mode
measures its position preference and the validity check rightly calls it invalid; scoring the
answer texts as continuations (loglik) has no letters to prefer and is valid for it (45 of 100
disambiguated items right, p = 0.01 against 1/3). An instruction-tuned model (it ships a chat
template) is asked the way it is used, with the question in its chat format: letter mode,
with the options rotated three ways so a position preference cannot pass for content.

The decision is made on the dense model, the reference both models are compared on; the same
mode is used for the compressed one, so the two answer sets stay comparable.
"""

from __future__ import annotations

from edgegate.backends.base import Backend
from edgegate.bbq import prompts


def choose_mode(dense: Backend) -> dict[str, str]:
    """{"mode", "requested", "reason"} for an opened dense model."""
    # the scorer's own test for "has a chat template" (bbq/scoring.py), so the prompt format
    # and the mode can never disagree
    if dense.chat_prompt(prompts.SYSTEM, "test") is not None:
        return {
            "mode": "letter",
            "requested": "auto",
            "reason": "the dense model has a chat template (an instruction-tuned model): letter mode, asked in "
            "its chat format, with the options rotated 3 ways (position control)",
        }
    return {
        "mode": "loglik",
        "requested": "auto",
        "reason": "the dense model has no chat template (a base model, which answers multiple-choice letters by "
        "position): loglik mode scores each answer text as a continuation, no letters to prefer",
    }
