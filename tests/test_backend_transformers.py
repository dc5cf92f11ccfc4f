"""The transformers runtime on tiny checkpoints of six architectures built here (benchmarks/_tiny_arch.py):
batched and token-tree scoring equal one-prompt-at-a-time scoring, the whole protocol runs in
a child process, and checkpoints that would need remote code or pickle are refused (exit 2)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

import _tiny_arch as T

from edgegate.backends import open_backend
from edgegate.backends.transformers_backend import TREES, TransformersBackend
from edgegate.errors import InputError

REPO = Path(__file__).resolve().parents[1]
TEXT = (REPO / "src" / "edgegate" / "data" / "eval_text.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("tiny-arch")
    toks = T.build_tokenizers(root, TEXT)
    return {
        a: T.build_pair(a, root, T.tokenizer_for(a, toks), seed=i) for i, a in enumerate(T.ARCHS)
    }


@pytest.fixture
def f32(monkeypatch: pytest.MonkeyPatch) -> None:
    # exact comparisons between paths: float32 (the checkpoints are bf16)
    monkeypatch.setenv("EDGEGATE_TORCH_DTYPE", "float32")


@pytest.fixture
def llama(tiny_models: dict[str, tuple[Path, Path]], f32: None) -> Iterator[TransformersBackend]:
    b = TransformersBackend(tiny_models["llama"][0], n_ctx=512, threads=1)
    yield b
    b.close()


@pytest.mark.parametrize("arch", list(T.ARCHS))
def test_batched_and_prefix_reuse_equal_one_at_a_time(
    arch: str, tiny_models: Any, f32: None
) -> None:
    b = TransformersBackend(tiny_models[arch][0], n_ctx=512, threads=1)
    toks = b.tokenize(TEXT[:4000])[:200]
    assert len(toks) == 200
    # prompts of different lengths, some sharing a long prefix, some not (as BBQ's do)
    prompts = (
        [toks[: 40 + 9 * i] for i in range(6)]
        + [toks[:30] + toks[60 : 70 + i] for i in range(5)]
        + [toks[100:113]]
    )
    # past the sliding window (128 in the Gemma configs): those go plain, the rest as trees
    prompts += [toks[:150], toks[:190], toks[:20] + toks[50:170]]
    cands = [5, 6, 7, 300]
    reqs = [(toks[:40], toks[40 : 40 + k]) for k in (1, 3, 6)] + [
        (toks[:57], toks[57:60]),
        (toks[:9], toks[9:11]),
    ]
    runs: dict[tuple[int, bool], tuple[np.ndarray, list[float]]] = {}
    for bs, reuse in ((1, False), (16, False), (16, True)):
        b.batch_size, b.reuse_prefix = bs, reuse
        ll = b.loglikelihood(reqs)
        runs[bs, reuse] = (b.next_token_logprobs(prompts, cands), [r.logprob for r in ll])
    ref_ntl, ref_ll = runs[1, False]
    # one-at-a-time next-token scores are the full forward pass's rows
    for i, p in enumerate(prompts):
        np.testing.assert_allclose(
            ref_ntl[i], np.log(_softmax(b._forward(p)[-1]))[cands], atol=2e-5
        )
    for key, (ntl, ll) in runs.items():
        np.testing.assert_allclose(ntl, ref_ntl, atol=2e-5, err_msg=str(key))
        np.testing.assert_allclose(ll, ref_ll, atol=2e-4, err_msg=str(key))
    # perplexity scoring: only the scored rows, same numbers as the full pass
    lp = b.token_logprobs(toks)
    np.testing.assert_allclose(b.score_tokens(toks, 100), lp[99:], atol=2e-5)
    b.close()


@pytest.mark.parametrize("arch", list(T.ARCHS))
def test_loglik_batch_computes_each_context_once(arch: str, tiny_models: Any, f32: None) -> None:
    # BBQ loglik: a batch holds several contexts (sharing a short template start), each with
    # three answers; as token trees every distinct prefix is evaluated once (the fewest
    # positions any scorer needs: no padding here, the 15 rows fit one tree), with the same
    # numbers as one request at a time
    b = TransformersBackend(tiny_models[arch][0], n_ctx=512, threads=1)
    toks = b.tokenize(TEXT[:4000])[:300]
    ctxs = [toks[:6] + toks[20 + 30 * i : 40 + 30 * i + 3 * i] for i in range(5)]
    reqs = [
        (c, toks[200 + 7 * a : 201 + 7 * a + a + i % 2])
        for i, c in enumerate(ctxs)
        for a in range(3)
    ]
    # a row ends before its answer's last token: those logits predict past the end
    rows = [c + a[:-1] for c, a in reqs]
    distinct = len({tuple(r[:n]) for r in rows for n in range(1, len(r) + 1)})
    got = {}
    for bs, reuse in ((1, False), (16, True), (4, True)):
        b.batch_size, b.reuse_prefix = bs, reuse
        before = b.tokens_evaluated
        got[bs, reuse] = [r.logprob for r in b.loglikelihood(reqs)]
        if bs == 16:
            assert b.tokens_evaluated - before == distinct
        elif bs == 1:
            assert b.tokens_evaluated - before == sum(len(r) for r in rows)
    for key, ll in got.items():
        np.testing.assert_allclose(ll, got[1, False], atol=2e-4, err_msg=str(key))
    b.close()


# Architectures whose positions are not rotary: ALiBi biases come from column distances, so a
# token tree's layout would change their scores (MPT: by 0.07 nats, silently) or their forward
# pass refuses a 4D mask (Bloom). They are scored as plain rows.
NON_ROTARY = {
    "bloom": ("BloomConfig", "BloomForCausalLM", dict(hidden_size=64, n_layer=2, n_head=4)),
    "mpt": (
        "MptConfig",
        "MptForCausalLM",
        dict(d_model=64, n_layers=2, n_heads=4, max_seq_len=512),
    ),
    "falcon-alibi": (
        "FalconConfig",
        "FalconForCausalLM",
        dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, alibi=True),
    ),
}


@pytest.fixture(scope="module")
def non_rotary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch
    import transformers

    root = tmp_path_factory.mktemp("non-rotary")
    tok = T.build_tokenizer(root / "tok", TEXT)
    out = {}
    for name, (cfg_cls, model_cls, kw) in NON_ROTARY.items():
        torch.manual_seed(0)
        cfg = getattr(transformers, cfg_cls)(
            vocab_size=T.VOCAB, bos_token_id=T.BOS, eos_token_id=T.EOS, pad_token_id=T.PAD, **kw
        )
        T.save(getattr(transformers, model_cls)(cfg).eval(), root / name, tok)
        out[name] = root / name
    return out


@pytest.mark.parametrize("arch", list(NON_ROTARY))
def test_non_rotary_models_score_plain_rows(arch: str, non_rotary: Any, f32: None) -> None:
    b = TransformersBackend(non_rotary[arch], n_ctx=256, threads=1)
    assert b.info()["prompt_packing"].startswith("plain rows")
    toks = b.tokenize(TEXT[:3000])[:120]
    reqs = [(toks[:40], toks[40 : 40 + k]) for k in (1, 3, 5)] + [(toks[:60], toks[60:63])]
    b.batch_size, b.reuse_prefix = 1, False
    ref = [r.logprob for r in b.loglikelihood(reqs)]
    b.batch_size, b.reuse_prefix = 16, True
    np.testing.assert_allclose([r.logprob for r in b.loglikelihood(reqs)], ref, atol=2e-5)
    if arch == "bloom":
        # forced onto trees, Bloom's forward pass refuses the 4D mask: the call falls back to
        # plain rows, says so, and scores the same
        b.packing = TREES
        got = [r.logprob for r in b.loglikelihood(reqs)]
        assert b.info()["prompt_packing"].startswith("plain rows (the tree mask failed")
        np.testing.assert_allclose(got, ref, atol=2e-5)
    b.close()


def test_rotary_models_score_token_trees(tiny_models: Any) -> None:
    for arch in T.ARCHS:
        b = TransformersBackend(tiny_models[arch][0], n_ctx=256, threads=1)
        assert b.info()["prompt_packing"] == TREES, arch
        b.close()


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x.astype(np.float64) - x.max())
    return z / z.sum()


def test_generate_time_run_and_text(llama: TransformersBackend) -> None:
    toks = llama.tokenize("The nurse said")
    assert toks[0] == T.BOS
    assert llama.detokenize(toks[1:]) == "The nurse said"
    out = llama.generate(toks, 12)
    assert 1 <= len(out) <= 12
    # greedy decoding with the kept cache equals argmax of full forward passes
    seq = list(toks)
    for t in out[:4]:
        assert t == int(np.argmax(llama._forward(seq)[-1]))
        seq.append(t)
    t = llama.time_run(toks, 5)
    assert t.prompt_tokens == len(toks) and t.gen_tokens == 5 and t.prefill_s > 0 and t.decode_s > 0
    prompt = llama.chat_prompt("Be brief.", "Who was late?")
    assert (
        prompt is not None
        and prompt.endswith("<start_of_turn>model\n")
        and "Who was late?" in prompt
    )
    info = llama.info()
    assert (
        info["runtime"] == "transformers" and info["dtype"] == "float32" and info["device"] == "cpu"
    )


def test_dtype_follows_the_checkpoint(tiny_models: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEGATE_TORCH_DTYPE", raising=False)
    b = TransformersBackend(tiny_models["qwen3"][0], n_ctx=256)
    assert (b.dtype, b.dtype_source) == ("bfloat16", "config.json dtype")
    b.close()
    monkeypatch.setenv("EDGEGATE_TORCH_DTYPE", "float64")
    with pytest.raises(InputError, match="EDGEGATE_TORCH_DTYPE"):
        TransformersBackend(tiny_models["qwen3"][0], n_ctx=256)


def test_isolated_child_process_gives_the_same_numbers(
    tiny_models: Any, llama: TransformersBackend
) -> None:
    path = tiny_models["llama"][0]
    iso = open_backend("transformers", path, n_ctx=512, threads=1, timeout=120)
    try:
        toks = llama.tokenize(TEXT[:500])
        assert iso.tokenize(TEXT[:500]) == toks
        np.testing.assert_allclose(iso.token_logprobs(toks), llama.token_logprobs(toks), atol=1e-6)
        np.testing.assert_allclose(
            iso.score_tokens(toks, 5), llama.score_tokens(toks, 5), atol=1e-6
        )
        np.testing.assert_allclose(
            iso.next_token_logprobs([toks[:20], toks[:30]], [5, 9]),
            llama.next_token_logprobs([toks[:20], toks[:30]], [5, 9]),
            atol=1e-6,
        )
        assert iso.info()["runtime"] == "transformers" and iso.info()["isolated"] is True
    finally:
        iso.close()


def test_auto_opens_an_hf_directory_on_transformers(tiny_models: Any, f32: None) -> None:
    b = open_backend("auto", tiny_models["gemma3"][1], n_ctx=128)
    assert b.runtime == "transformers"
    b.close()


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_remote_code_is_refused(tiny_models: Any, tmp_path: Path) -> None:
    d = _copy(tiny_models["llama"][0], tmp_path / "remote")
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="remote code") as e:
        TransformersBackend(d)
    assert e.value.exit_code == 2
    cfg.pop("auto_map")
    cfg["model_type"] = "evil-arch"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="model_type 'evil-arch'"):
        TransformersBackend(d)


def test_pickle_weights_are_refused(tiny_models: Any, tmp_path: Path) -> None:
    d = _copy(tiny_models["llama"][0], tmp_path / "pickled")
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(InputError, match=r"no safetensors weights.*pytorch_model\.bin"):
        TransformersBackend(d)
