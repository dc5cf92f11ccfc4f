"""HF -> GGUF writer: metadata, tensors (after Q/K unpermute), tokenizer, llama.cpp load."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

from edgegate.checkpoint.gguf_writer import (  # noqa: E402
    ARCHITECTURES,
    gguf_tensor_name,
    hf_tensor_name,
    permute_qk,
    unpermute_qk,
    write_gguf,
)
from edgegate.errors import CheckpointError, InputError  # noqa: E402

HIDDEN, N_HEAD, N_KV, FF, LAYERS = 64, 4, 2, 96, 2
HEAD_DIM = HIDDEN // N_HEAD
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)
TEXT = "the cat sat on the mat. the dog sat on the log. a bird sang in the tree. " * 20


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bits, round to nearest even (independent of the writer's code)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def _write_st(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    header: dict[str, object] = {}
    blobs, off = [], 0
    for name, (dtype, arr) in tensors.items():
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "data_offsets": [off, off + len(b)],
        }
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def _tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TEXT], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return tok


@pytest.fixture(scope="module")
def hf_dir(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, np.ndarray], Tokenizer]:
    d = tmp_path_factory.mktemp("tiny_llama")
    tok = _tokenizer()
    tok.save(str(d / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    (d / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "add_bos_token": True,
                "chat_template": TEMPLATE,
            }
        )
    )
    (d / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": HIDDEN,
                "intermediate_size": FF,
                "num_hidden_layers": LAYERS,
                "num_attention_heads": N_HEAD,
                "num_key_value_heads": N_KV,
                "max_position_embeddings": 256,
                "rms_norm_eps": 1e-5,
                "rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"},
                "vocab_size": vocab,
                "tie_word_embeddings": False,
                "bos_token_id": 0,
                "eos_token_id": 1,
            }
        )
    )
    rng = np.random.default_rng(0)
    shapes = {
        "model.embed_tokens.weight": (vocab, HIDDEN),
        "lm_head.weight": (vocab, HIDDEN),
        "model.norm.weight": (HIDDEN,),
    }
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "input_layernorm.weight": (HIDDEN,),
                p + "post_attention_layernorm.weight": (HIDDEN,),
                p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
                p + "self_attn.k_proj.weight": (N_KV * HEAD_DIM, HIDDEN),
                p + "self_attn.v_proj.weight": (N_KV * HEAD_DIM, HIDDEN),
                p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
                p + "mlp.gate_proj.weight": (FF, HIDDEN),
                p + "mlp.up_proj.weight": (FF, HIDDEN),
                p + "mlp.down_proj.weight": (HIDDEN, FF),
            }
        )
    bits = {}
    for name, shape in shapes.items():
        x = (
            (1.0 + 0.1 * rng.standard_normal(shape))
            if "norm" in name
            else 0.05 * rng.standard_normal(shape)
        )
        bits[name] = _bf16_bits(x)
    bits["model.layers.0.mlp.up_proj.weight"][:, ::2] = 0  # zeros must survive conversion
    _write_st(d / "model.safetensors", {k: ("BF16", v) for k, v in bits.items()})
    logical = {k: (v.astype(np.uint32) << 16).view(np.float32) for k, v in bits.items()}
    return d, logical, tok


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "lm_head.weight": "output.weight",
    "model.norm.weight": "output_norm.weight",
}
LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gname(hf: str) -> str:
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    i, rest = hf.split(".")[2], ".".join(hf.split(".")[3:-1])
    return f"blk.{i}.{LAYER_NAMES[rest]}.weight"


def _field(r: gguf.GGUFReader, key: str) -> object:
    f = r.fields[key]
    return f.contents()


def test_permutation_is_the_rotate_half_to_adjacent_pair_reordering() -> None:
    n_head, d = 2, 8
    w = np.arange(n_head * d, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    p = permute_qk(w, n_head)
    for h in range(n_head):
        for j in range(d // 2):
            for s in (0, 1):  # GGUF row h*d+2j+s holds HF row h*d + s*d/2 + j
                assert p[h * d + 2 * j + s, 0] == h * d + s * d // 2 + j
    np.testing.assert_array_equal(unpermute_qk(p, n_head), w)
    assert not np.array_equal(p, w)
    with pytest.raises(ValueError):
        permute_qk(np.zeros((6, 2)), 2)


@pytest.mark.parametrize("outtype", ["f32", "f16", "bf16", "q8_0"])
def test_round_trip(
    hf_dir: tuple[Path, dict[str, np.ndarray], Tokenizer], tmp_path: Path, outtype: str
) -> None:
    d, logical, tok = hf_dir
    out = write_gguf(d, tmp_path / f"m-{outtype}.gguf", outtype)
    r = gguf.GGUFReader(str(out))
    assert _field(r, "general.architecture") == "llama"
    assert _field(r, "llama.context_length") == 256
    assert _field(r, "llama.embedding_length") == HIDDEN
    assert _field(r, "llama.block_count") == LAYERS
    assert _field(r, "llama.feed_forward_length") == FF
    assert _field(r, "llama.attention.head_count") == N_HEAD
    assert _field(r, "llama.attention.head_count_kv") == N_KV
    assert _field(r, "llama.rope.freq_base") == pytest.approx(5000.0)
    assert _field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert _field(r, "llama.vocab_size") == tok.get_vocab_size()
    assert _field(r, "general.file_type") == {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}[outtype]
    # tokenizer
    vocab = tok.get_vocab()
    tokens = _field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == len(vocab) and all(tokens[i] == t for t, i in vocab.items())
    types = _field(r, "tokenizer.ggml.token_type")
    assert types[vocab["<s>"]] == 3 and types[vocab["<|im_end|>"]] == 3 and types[vocab["the"]] == 1
    merges = json.loads(tok.to_str())["model"]["merges"]
    assert _field(r, "tokenizer.ggml.merges") == [
        m if isinstance(m, str) else " ".join(m) for m in merges
    ]
    assert _field(r, "tokenizer.ggml.model") == "gpt2"
    assert _field(r, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(r, "tokenizer.ggml.bos_token_id") == 0
    assert _field(r, "tokenizer.ggml.eos_token_id") == 1
    assert _field(r, "tokenizer.ggml.add_bos_token") is True
    assert _field(r, "tokenizer.chat_template") == TEMPLATE
    # tensors
    by_name = {t.name: t for t in r.tensors}
    assert len(by_name) == len(logical)
    for hf, want in logical.items():
        t = by_name[_gname(hf)]
        spec = ARCHITECTURES["LlamaForCausalLM"]
        assert gguf_tensor_name(spec, hf) == t.name and hf_tensor_name(spec, t.name) == hf
        shape = tuple(int(x) for x in reversed(t.shape))
        assert shape == want.shape, hf
        got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        if hf.endswith("q_proj.weight"):
            assert not np.array_equal(got, want)  # stored permuted
            got = unpermute_qk(got, N_HEAD)
        elif hf.endswith("k_proj.weight"):
            got = unpermute_qk(got, N_KV)
        if want.ndim == 1:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
        if outtype == "q8_0" and want.ndim == 2:
            assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0
            # Q8_0: per 32-block scale amax/127 (stored as f16): error <= half a step + f16 rounding of the scale
            step = np.abs(want).reshape(-1, 32).max(axis=1) / 127
            assert (np.abs(got - want).reshape(-1, 32).max(axis=1) <= step * 0.57 + 1e-7).all(), hf
        elif outtype == "f16" and want.ndim == 2:
            # bf16 -> f16 is exact except below f16's normal range (subnormal rounding)
            np.testing.assert_array_equal(
                got, want.astype(np.float16).astype(np.float32), err_msg=hf
            )
        else:
            np.testing.assert_array_equal(got, want, err_msg=hf)
    up = gguf.quants.dequantize(
        by_name["blk.0.ffn_up.weight"].data, by_name["blk.0.ffn_up.weight"].tensor_type
    )
    assert (up.reshape(FF, HIDDEN)[:, ::2] == 0).all()


def test_bf16_copy_is_bit_exact(
    hf_dir: tuple[Path, dict[str, np.ndarray], Tokenizer], tmp_path: Path
) -> None:
    d, logical, _ = hf_dir
    r = gguf.GGUFReader(str(write_gguf(d, tmp_path / "b.gguf", "bf16")))
    t = next(t for t in r.tensors if t.name == "blk.1.ffn_down.weight")
    assert t.tensor_type == gguf.GGMLQuantizationType.BF16
    np.testing.assert_array_equal(
        np.asarray(t.data).view(np.uint16).reshape(HIDDEN, FF),
        _bf16_bits(logical["model.layers.1.mlp.down_proj.weight"]),
    )


def test_unsupported_architecture_is_named(
    hf_dir: tuple[Path, dict[str, np.ndarray], Tokenizer], tmp_path: Path
) -> None:
    d, _, _ = hf_dir
    bad = tmp_path / "bad"
    bad.mkdir()
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["FalconForCausalLM"]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as e:
        write_gguf(bad, tmp_path / "x.gguf")
    msg = str(e.value)
    assert "FalconForCausalLM" in msg and "LlamaForCausalLM" in msg and "config.json" in msg


def test_bad_outtype_and_missing_config(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="q4_k"):
        write_gguf(tmp_path, tmp_path / "x.gguf", "q4_k")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        write_gguf(tmp_path, tmp_path / "x.gguf")


def test_llama_cpp_loads_it(
    hf_dir: tuple[Path, dict[str, np.ndarray], Tokenizer], tmp_path: Path
) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    d, _, tok = hf_dir
    out = write_gguf(d, tmp_path / "m.gguf", "f16")
    llm = llama_cpp.Llama(
        model_path=str(out), n_ctx=64, logits_all=True, verbose=False, n_threads=1
    )
    for s in [
        "the cat sat on the mat.",
        "a bird sang  in the log!",
        "<|im_start|>user\nthe dog<|im_end|>",
    ]:
        assert llm.tokenize(s.encode(), add_bos=True, special=True) == tok.encode(s).ids
    ids = tok.encode("the cat sat on the").ids
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)])
    assert logits.shape == (len(ids), tok.get_vocab_size()) and np.isfinite(logits).all()
    assert logits.std() > 0


def test_f16_overflow_is_refused(
    hf_dir: tuple[Path, dict[str, np.ndarray], Tokenizer], tmp_path: Path
) -> None:
    d, logical, _ = hf_dir
    big = tmp_path / "big"
    big.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (big / f).write_bytes((d / f).read_bytes())
    bits = {k: _bf16_bits(v) for k, v in logical.items()}
    bits["model.layers.1.mlp.up_proj.weight"][3, 5] = _bf16_bits(np.array([1e6], np.float32))[0]
    _write_st(big / "model.safetensors", {k: ("BF16", v) for k, v in bits.items()})
    with pytest.raises(CheckpointError, match="up_proj"):
        write_gguf(big, tmp_path / "o.gguf", "f16")
    assert write_gguf(big, tmp_path / "o.gguf", "bf16").exists()  # bf16 keeps the range


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    not (REPO / "fixtures/models/dense-sharded").exists(), reason="fixtures not built"
)
def test_sharded_dir_gives_the_same_tensors(tmp_path: Path) -> None:
    one = gguf.GGUFReader(str(write_gguf(REPO / "fixtures/models/dense", tmp_path / "a.gguf")))
    many = gguf.GGUFReader(
        str(write_gguf(REPO / "fixtures/models/dense-sharded", tmp_path / "b.gguf"))
    )
    a = {t.name: np.asarray(t.data) for t in one.tensors}
    b = {t.name: np.asarray(t.data) for t in many.tensors}
    assert a.keys() == b.keys() and len(a) == 21
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.skipif(
    not (REPO / "fixtures/models/compressed-tensors").exists(), reason="fixtures not built"
)
def test_compressed_tensors_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="quantization_config"):
        write_gguf(REPO / "fixtures/models/compressed-tensors/wanda50-bitmask", tmp_path / "c.gguf")
