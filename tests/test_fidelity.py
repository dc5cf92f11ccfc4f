"""The fidelity check: token-level KL(dense || compressed) and top-1 agreement, computed in the
perplexity pass on real runtimes (llama.cpp on the fixture GGUFs, transformers on a tiny model
trained and pruned here).

Null control: a byte-identical copy of the dense model gives KL exactly 0 and agreement 1, and
the check passes. Known positive: a pruned model fails thresholds it violates."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import run_cli

from edgegate import checks
from edgegate import fidelity as fid
from edgegate.backends import available, open_backend
from edgegate.checks import fidelity as check
from edgegate.checks import perplexity as ppl_check
from edgegate.checks.base import THIS_RUN, CheckContext, SharedWork, Status
from edgegate.perplexity import chunk_text
from edgegate.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "fixtures" / "models" / "gguf"
DENSE, WANDA = GGUF / "dense-f16.gguf", GGUF / "wanda50-f16.gguf"
EVAL = ROOT / "fixtures" / "text" / "eval.txt"
ONE = RunSettings(threads=1)
SECTION = {"runtime": "llamacpp", "n_ctx": 128, "text": str(EVAL), "min_chunks": 8}
FIDELITY = check.SECTION.from_policy(SECTION)
needs_llama = pytest.mark.skipif(
    not available("llamacpp"), reason="llama-cpp-python is not installed"
)


def _ctx(
    dense: Path, comp: Path, section: dict[str, Any], shared: SharedWork | None = None
) -> CheckContext:
    return CheckContext(
        compressed_path=comp,
        dense_path=dense,
        section=check.SECTION.from_policy(section),
        settings=ONE,
        shared=shared if shared is not None else SharedWork(),
    )


def _ppl_ctx(
    dense: Path, comp: Path, section: dict[str, Any], shared: SharedWork | None = None
) -> CheckContext:
    return CheckContext(
        compressed_path=comp,
        dense_path=dense,
        section=ppl_check.SECTION.from_policy(section),
        settings=ONE,
        shared=shared if shared is not None else SharedWork(),
    )


# -- the per-token comparison -------------------------------------------------------------------
@needs_llama
def test_rows_match_an_independent_scipy_computation() -> None:
    from scipy.special import log_softmax, rel_entr, softmax

    d, c = (
        open_backend("llamacpp", DENSE, n_ctx=128, threads=1),
        open_backend("llamacpp", WANDA, n_ctx=128, threads=1),
    )
    try:
        ch = chunk_text(d, EVAL.read_text(), 128, "chunked")
        chunk = ch.chunks[3]
        nll_d = -d.score_tokens_kept(chunk, ch.first)
        c.score_tokens_kept(chunk, ch.first)
        ld, lc = d.kept_logits(0, 40), c.kept_logits(0, 40)
        assert ld.dtype == np.float32 and ld.shape == (40, d.n_vocab)
        # the kept rows are the ones perplexity scored: their NLLs, recomputed here, agree
        ref = np.asarray(chunk[ch.first : ch.first + 40])
        assert np.allclose(
            -log_softmax(ld.astype(np.float64), axis=1)[np.arange(40), ref],
            nll_d[:40],
            rtol=0,
            atol=1e-12,
        )
        kl, agree = fid.compare_rows(ld, lc)
        p, q = softmax(ld.astype(np.float64), axis=1), softmax(lc.astype(np.float64), axis=1)
        # float32 exponentials, float64 sums: within 1e-6 relative plus 1e-7 nats of float64
        assert np.allclose(kl, rel_entr(p, q).sum(axis=1), rtol=1e-6, atol=1e-7)
        assert np.array_equal(agree, p.argmax(axis=1) == q.argmax(axis=1))
        assert kl.min() >= 0 and kl.max() > 0.01 and 0 < agree.mean() < 1  # pruning moved them
    finally:
        d.close()
        c.close()


def test_picked_logprobs_are_the_bits_of_a_whole_log_softmax() -> None:
    """The blocked picking (a few rows in float64 at a time) gives exactly the numbers of a
    log-softmax over the whole matrix: perplexity and fidelity results do not move."""
    from edgegate.backends._common import log_softmax, picked_logprobs

    rng = np.random.default_rng(3)
    for rows, vocab in ((1, 11), (17, 4096), (40, 300), (0, 9)):
        x = (rng.standard_normal((rows, vocab)) * 6).astype(np.float32)
        t = rng.integers(0, vocab, rows)
        assert np.array_equal(picked_logprobs(x, t), log_softmax(x)[np.arange(rows), t])


def test_identical_logits_give_exactly_zero() -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(5, 1000)) * 30).astype(
        np.float32
    )  # large logits: the max must be subtracted
    kl, agree = fid.compare_rows(x, x.copy())
    assert kl.tolist() == [0.0] * 5 and agree.all()


def test_kl_matches_float64_over_a_gemma_sized_vocabulary() -> None:
    """The float32 exponentials keep KL within 1e-6 relative plus 1e-7 nats of a float64
    log-softmax (scipy), from near-identical rows to a broken model, over 262,144 logits; a
    constant shift of every logit (the same distribution) stays within 1e-7 of 0."""
    from scipy.special import rel_entr, softmax

    rng = np.random.default_rng(7)
    d = (rng.standard_normal((6, 262_144)) * 4).astype(np.float32)
    shifted = d + np.float32(3.25)
    for scale in (1e-3, 0.05, 1.0, 8.0):
        c = (d + rng.standard_normal(d.shape) * scale).astype(np.float32)
        kl, agree = fid.compare_rows(d, c)
        p, q = softmax(d.astype(np.float64), axis=1), softmax(c.astype(np.float64), axis=1)
        ref = rel_entr(p, q).sum(axis=1)
        assert np.allclose(kl, ref, rtol=1e-6, atol=1e-7), (scale, np.abs(kl - ref).max())
        assert np.array_equal(agree, p.argmax(axis=1) == q.argmax(axis=1))
    kl, agree = fid.compare_rows(d, shifted)
    assert kl.max() < 1e-7 and agree.all()


# -- null control and known positive on llama.cpp --------------------------------------------
@pytest.fixture(scope="module")
def aa_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not available("llamacpp"):
        pytest.skip("llama-cpp-python is not installed")
    copy = tmp_path_factory.mktemp("aa") / "copy.gguf"
    shutil.copyfile(DENSE, copy)
    assert copy.read_bytes() == DENSE.read_bytes()
    shared = SharedWork()
    m = check.measure(_ctx(DENSE, copy, SECTION, shared))
    res = check.judge([(THIS_RUN, m)], FIDELITY)
    ppl_m = ppl_check.measure(
        _ppl_ctx(DENSE, copy, {**SECTION, "max_relative_increase": 0.05}, shared)
    )
    alone = ppl_check.measure(_ppl_ctx(DENSE, copy, {**SECTION, "max_relative_increase": 0.05}))
    return {"m": m, "res": res, "ppl": ppl_m, "ppl_alone": alone}


@pytest.fixture(scope="module")
def pruned_run() -> dict[str, Any]:
    if not available("llamacpp"):
        pytest.skip("llama-cpp-python is not installed")
    return check.measure(_ctx(DENSE, WANDA, SECTION))  # type: ignore[return-value]


def test_aa_copy_is_exactly_zero_and_passes(aa_run: dict[str, Any]) -> None:
    res = aa_run["res"]
    assert res.status is Status.PASS, res.summary
    ms = res.measurements
    assert ms["mean_kl"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert ms["max_kl"] == 0.0 and ms["top1_agreement"]["value"] == 1.0
    assert ms["delta_p"]["value"] == 0.0 and ms["n_chunks"] >= 8
    assert all(v.n == ms["n_chunks"] and v.ci is not None for v in res.verdicts)


def test_the_perplexity_check_reuses_the_pass(aa_run: dict[str, Any]) -> None:
    shared, alone = aa_run["ppl"], aa_run["ppl_alone"]
    assert (
        "fidelity check's pass" in shared["extra"]["scored_in"]
        and "scored_in" not in alone["extra"]
    )
    # the NLLs of the shared pass are bit for bit those of perplexity's own pass
    assert shared["nll"] == alone["nll"] and shared["chunking"] == alone["chunking"]
    assert shared["nll"]["dense"] == aa_run["m"]["nll"]["dense"]


def test_pruned_model_fails_thresholds_it_violates(pruned_run: dict[str, Any]) -> None:
    sec = {**SECTION, "max_mean_kl": 0.01, "min_top1_agreement": 0.95}
    m = {
        **pruned_run,
        "settings": {**pruned_run["settings"], "max_mean_kl": 0.01, "min_top1_agreement": 0.95},
    }
    res = check.judge([(THIS_RUN, m)], check.SECTION.from_policy(sec))
    assert res.status is Status.FAIL
    assert [v.status for v in res.verdicts] == [Status.FAIL, Status.FAIL]
    kl = res.measurements["mean_kl"]
    assert kl["ci_low"] > 0.01 and kl["ci_low"] <= kl["value"] <= kl["ci_high"]
    assert res.measurements["p99_kl"]["value"] > res.measurements["median_kl"]["value"] > 0


def test_a_ci_across_the_threshold_or_too_few_chunks_is_inconclusive(
    pruned_run: dict[str, Any],
) -> None:
    point = check.judge([(THIS_RUN, pruned_run)], FIDELITY).measurements["mean_kl"]["value"]
    m = {
        **pruned_run,
        "settings": {**pruned_run["settings"], "max_mean_kl": point, "min_top1_agreement": 0.0},
    }
    res = check.judge([(THIS_RUN, m)], FIDELITY)
    assert [v.status for v in res.verdicts] == [Status.INCONCLUSIVE, Status.PASS]
    assert "straddles" in res.verdicts[0].message
    few = {**pruned_run, "settings": {**pruned_run["settings"], "min_chunks": 10_000}}
    res = check.judge([(THIS_RUN, few)], FIDELITY)
    assert res.status is Status.INCONCLUSIVE and "min_chunks" in res.verdicts[0].message


@needs_llama
def test_shards_merge_to_the_unsharded_result(pruned_run: dict[str, Any]) -> None:
    parts = [check.measure(_ctx(DENSE, WANDA, SECTION), (i, 2)) for i in (1, 2)]
    merged = check.judge([("part1", parts[0]), ("part2", parts[1])], FIDELITY)
    whole = check.judge([(THIS_RUN, pruned_run)], FIDELITY)
    for key in ("mean_kl", "top1_agreement", "p99_kl", "n_tokens"):
        assert merged.measurements[key] == whole.measurements[key]
    with pytest.raises(Exception, match="scored by no shard"):
        check.judge([("part1", parts[0])], FIDELITY)


@needs_llama
def test_streaming_reads_a_few_rows_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spy on real backends: no read exceeds ROW_BUDGET floats, and the numbers do not
    depend on how the rows were split."""

    class Spy:
        def __init__(self, be: Any) -> None:
            self.be, self.rows = be, []

        def __getattr__(self, name: str) -> Any:
            return getattr(self.be, name)

        def kept_logits(self, a: int, b: int) -> np.ndarray:
            self.rows.append(b - a)
            return self.be.kept_logits(a, b)

    d = Spy(open_backend("llamacpp", DENSE, n_ctx=128, threads=1))
    c = Spy(open_backend("llamacpp", WANDA, n_ctx=128, threads=1))
    try:
        ch = chunk_text(d, EVAL.read_text()[:6000], 128, "chunked")
        monkeypatch.setattr(fid, "ROW_BUDGET", 3 * d.n_vocab)
        small = fid.scored_pass(d, c, ch, range(len(ch.chunks)))
        assert max(d.rows) == 3 and len(d.rows) > len(ch.chunks)
        monkeypatch.setattr(fid, "ROW_BUDGET", 10_000 * d.n_vocab)
        big = fid.scored_pass(d, c, ch, range(len(ch.chunks)))
        assert max(d.rows) == 128 - ch.first
    finally:
        d.be.close()
        c.be.close()
    for s, b in zip(small.chunks, big.chunks, strict=True):
        assert np.array_equal(s.kl, b.kl) and np.array_equal(s.top1, b.top1)
        assert np.array_equal(s.nll_dense, b.nll_dense)


# -- statistics -----------------------------------------------------------------------------------
def test_aggregates_by_hand_and_the_bootstrap_is_over_chunks() -> None:
    rng = np.random.default_rng(1)
    K = rng.gamma(0.5, 0.05, size=(12, 30))
    A = rng.random((12, 30)) < 0.8
    nd, nc = rng.random((12, 30)), rng.random((12, 30))
    r = fid.summarize(K, A, nd, nc, resamples=500, seed=3)
    assert r.n_chunks == 12 and r.n_tokens == 360
    assert r.mean_kl.value == pytest.approx(K.mean()) and r.p90_kl.value == pytest.approx(
        np.quantile(K, 0.9)
    )
    assert r.top1_agreement.value == pytest.approx(A.mean()) and r.max_kl == K.max()
    assert r.delta_p.value == pytest.approx((np.exp(-nc) - np.exp(-nd)).mean())
    for e in (r.mean_kl, r.median_kl, r.p99_kl, r.top1_agreement):
        assert e.ci_low <= e.value <= e.ci_high
    # chunks are the units: n is the number of chunks, not of tokens
    r3 = fid.summarize(
        K.reshape(3, -1),
        A.reshape(3, -1),
        nd.reshape(3, -1),
        nc.reshape(3, -1),
        resamples=500,
        seed=3,
    )
    assert r3.mean_kl.value == pytest.approx(r.mean_kl.value)
    assert r3.n_chunks == 3
    again = fid.summarize(K, A, nd, nc, resamples=500, seed=3)
    assert again == r  # seeded: a report is reproducible
    one = fid.summarize(K[:1], A[:1], nd[:1], nc[:1])
    assert math.isnan(one.mean_kl.ci_low)  # one chunk: no interval, never a pass (min_chunks >= 2)


# -- transformers: a tiny model trained and pruned here ----------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sentencepiece")
    import _tiny_arch as T
    import transformers

    root = tmp_path_factory.mktemp("tiny")
    text = EVAL.read_text()
    tok = T.build_tokenizer(root / "tok", text)
    cfg_cls, model_cls, extra = T.ARCHS["llama"]
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(
        getattr(transformers, cfg_cls)(**{**T._COMMON, **extra})
    ).eval()
    dense = root / "dense"
    T.save(model, dense, tok)
    T.train_briefly(dense, text, steps=30)  # real preferences: a random model is near-uniform
    trained = transformers.AutoModelForCausalLM.from_pretrained(str(dense))
    T.magnitude_prune(trained, 0.5)
    pruned = root / "pruned"
    T.save(trained, pruned, tok)
    copy = root / "copy"
    shutil.copytree(dense, copy)
    (root / "text.txt").write_text(text[:6000])  # ~20 chunks of 64 tokens: enough for the bootstrap
    return dense, copy, pruned


def test_transformers_null_control_and_known_positive(tiny: tuple[Path, Path, Path]) -> None:
    dense, copy, pruned = tiny
    sec = {
        "runtime": "transformers",
        "n_ctx": 64,
        "text": str(dense.parent / "text.txt"),
        "min_chunks": 8,
        "max_mean_kl": 0.005,
        "min_top1_agreement": 0.95,
    }
    aa = checks.run("fidelity", _ctx(dense, copy, sec))
    assert aa.status is Status.PASS, aa.summary
    assert (
        aa.measurements["mean_kl"]["value"] == 0.0
        and aa.measurements["top1_agreement"]["value"] == 1.0
    )
    pos = checks.run("fidelity", _ctx(dense, pruned, sec))
    assert pos.status is Status.FAIL, pos.summary
    assert (
        pos.measurements["mean_kl"]["ci_low"] > 0.005
        and pos.measurements["top1_agreement"]["ci_high"] < 0.95
    )


def test_transformers_overlapped_pass_gives_the_bits_of_in_turn(
    tiny: tuple[Path, Path, Path],
) -> None:
    """transformers (rows kept by ``_generic``) side by side, each chunk compared while both
    models score the next: the bits of in turn."""
    dense, _, pruned = tiny
    opened = [
        open_backend("transformers", p, n_ctx=64, threads=1, timeout=300) for p in (dense, pruned)
    ]
    try:
        d, c = opened
        ch = chunk_text(d, (dense.parent / "text.txt").read_text(), 64, "chunked")
        turn = fid.scored_pass(d, c, ch, range(6))
        both = fid.scored_pass(d, c, ch, range(6), side_by_side=True)
    finally:
        for be in opened:
            be.close()
    for s, t in zip(both.chunks, turn.chunks, strict=True):
        assert np.array_equal(s.kl, t.kl) and np.array_equal(s.top1, t.top1)
        assert np.array_equal(s.nll_dense, t.nll_dense)
        assert np.array_equal(s.nll_compressed, t.nll_compressed)
    assert len(both.chunks) == 6 and max(float(s.kl.max()) for s in both.chunks) > 0


# -- what is not measured is said so -------------------------------------------------------------
def test_models_behind_servers_are_skipped_with_the_reason() -> None:
    ctx = CheckContext(
        compressed_path=Path("c"),
        dense_path=Path("d"),
        section=FIDELITY,
        settings=RunSettings(
            dense_endpoint="http://127.0.0.1:9/v1", compressed_endpoint="http://127.0.0.1:9/v1"
        ),
    )
    res = checks.run("fidelity", ctx)
    assert res.status is Status.SKIPPED and "full next-token distributions" in res.summary
    no_dense = checks.run(
        "fidelity", CheckContext(compressed_path=DENSE, dense_path=None, section=FIDELITY)
    )
    assert no_dense.status is Status.SKIPPED and "dense" in no_dense.summary


# -- policy and CLI -------------------------------------------------------------------------------
def test_policy_fidelity_scores_the_perplexity_text_unless_told_otherwise() -> None:
    from edgegate.errors import PolicyError
    from edgegate.policy import CHECK_NAMES, PRESETS, load_preset, parse_policy

    p = parse_policy(
        "version: 1\nchecks:\n  perplexity: {runtime: auto, n_ctx: 256, text: t.txt}\n  fidelity: {}\n"
    )
    sec = p.checks["fidelity"].section
    assert (sec["runtime"], sec["n_ctx"], sec["text"], sec["mode"]) == (
        "auto",
        256,
        "t.txt",
        "chunked",
    )
    assert list(p.checks) == [
        "fidelity",
        "perplexity",
    ]  # fidelity first: perplexity reuses its pass
    own = parse_policy(
        "version: 1\nchecks:\n  perplexity: {n_ctx: 256}\n  fidelity: {n_ctx: 128}\n"
    )
    assert own.checks["fidelity"].section["n_ctx"] == 128
    with pytest.raises(PolicyError, match="max_mean_k"):
        parse_policy("version: 1\nchecks:\n  fidelity: {max_mean_k: 0.1}\n")
    assert CHECK_NAMES.index("fidelity") < CHECK_NAMES.index("perplexity")
    for name in PRESETS:
        fsec = load_preset(name).checks["fidelity"].section
        assert fsec["max_mean_kl"] > 0 and 0 < fsec["min_top1_agreement"] < 1


@needs_llama
def test_ppl_kl_cli() -> None:
    code, out = run_cli(
        "ppl",
        str(DENSE),
        str(WANDA),
        "--runtime",
        "llamacpp",
        "--n-ctx",
        "128",
        "-q",
        "--threads",
        "1",
        "--text",
        str(EVAL),
        "--kl",
        "--json",
    )
    assert code == 0, out
    data = json.loads(out)
    f = data["fidelity"]
    assert (
        f["n_chunks"] == data["n"] >= 8
        and f["mean_kl"]["value"] > 0
        and 0 < f["top1_agreement"]["value"] < 1
    )
    code, out = run_cli(
        "ppl",
        str(DENSE),
        str(WANDA),
        "--runtime",
        "llamacpp",
        "--n-ctx",
        "128",
        "-q",
        "--threads",
        "1",
        "--text",
        str(EVAL),
        "--kl",
    )
    assert (
        code == 0 and "KL(dense||compressed)" in out and "top-1 agreement" in out and "p99.9" in out
    )


BBQ_ITEMS = Path(__file__).resolve().parents[1] / "fixtures" / "bbq"


@needs_llama
def test_gate_runs_fidelity_then_perplexity_on_one_pass(tmp_path: Path) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text(
        f"version: 1\nchecks:\n  perplexity: {{runtime: llamacpp, n_ctx: 128, text: {EVAL}}}\n"
        "  fidelity: {max_mean_kl: 0.01, min_top1_agreement: 0.95}\n"
    )
    out = tmp_path / "r.json"
    code, text = run_cli(
        "check",
        str(DENSE),
        str(WANDA),
        "--policy",
        str(pol),
        "--threads",
        "1",
        "-q",
        "--json-out",
        str(out),
    )
    assert code == 1, text
    from edgegate.report.json_report import validate_report

    report = json.loads(out.read_text())
    assert validate_report(report) == []
    by = {c["check"]: c for c in report["checks"]}
    assert by["fidelity"]["status"] == "fail" and by["perplexity"]["status"] in ("pass", "fail")
    assert "fidelity check's pass" in by["perplexity"]["measurements"]["extra"]["scored_in"]
    # fail-fast after the failed fidelity check still judges perplexity (its numbers are in the
    # pass already: skipping it saves nothing) and skips the checks that would cost minutes
    pol.write_text(
        pol.read_text()
        + f"  bbq: {{runtime: llamacpp, data: {BBQ_ITEMS}}}\n  speed: {{runtimes: [llamacpp]}}\n"
    )
    code, text = run_cli(
        "check",
        str(DENSE),
        str(WANDA),
        "--policy",
        str(pol),
        "--threads",
        "1",
        "-q",
        "--json-out",
        str(out),
        "--fail-fast",
    )
    by = {c["check"]: c for c in json.loads(out.read_text())["checks"]}
    assert (
        code == 1
        and by["fidelity"]["gate"] == "fail"
        and by["perplexity"]["gate"] in ("pass", "fail")
    ), text
    assert by["speed"]["gate"] == by["bbq"]["gate"] == "not-run"
    assert (
        "'fidelity' already failed" in by["bbq"]["summary"]
    )  # the first failure, not the free check after it


def test_a_missing_fidelity_text_is_found_before_measuring(tmp_path: Path) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("version: 1\nchecks:\n  fidelity: {runtime: llamacpp, text: nope.txt}\n")
    code, text = run_cli("check", str(DENSE), str(WANDA), "--policy", str(pol), "-q")
    assert code == 2 and "checks.fidelity.text" in text and "nope.txt" in text, text


@needs_llama
def test_side_by_side_gives_the_numbers_of_in_turn() -> None:
    """The two models' processes scoring (and handing over logits) at the same time, as a
    2-core machine runs them, give the same bits as one after the other."""
    opened = [
        open_backend("llamacpp", p, n_ctx=128, threads=1, timeout=300) for p in (DENSE, WANDA)
    ]
    try:
        d, c = opened
        ch = chunk_text(d, EVAL.read_text()[:6000], 128, "chunked")
        turn = fid.scored_pass(d, c, ch, range(len(ch.chunks)))
        both = fid.scored_pass(d, c, ch, range(len(ch.chunks)), side_by_side=True)
    finally:
        for be in opened:
            be.close()
    assert len(both.chunks) == len(turn.chunks) > 1
    for s, t in zip(both.chunks, turn.chunks, strict=True):
        assert np.array_equal(s.kl, t.kl) and np.array_equal(s.top1, t.top1)
        assert np.array_equal(s.nll_dense, t.nll_dense)
        assert np.array_equal(s.nll_compressed, t.nll_compressed)
    assert set(both.seconds) == {"dense", "compressed", "compare"}
