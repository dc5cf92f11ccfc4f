"""Canonical (HF-style) tensor names -> layer index and module kind.

Every reader maps its own naming to HF names (``model.layers.3.mlp.down_proj.weight``) so
tensors can be matched across formats; this module classifies those names. GGUF names
(``blk.3.ffn_down.weight``) are understood too, for callers holding raw GGUF names.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgegate.checkpoint.base import ModuleKind, TensorInfo
from edgegate.errors import CheckpointError, excerpt

# Last module component -> kind. Llama/Mistral/Qwen/Gemma share these HF names; the
# aliases cover Phi/GPT-style and Falcon-style spellings that pruning tools also emit.
_SUFFIX_KIND: dict[str, ModuleKind] = {
    "q_proj": ModuleKind.Q,
    "k_proj": ModuleKind.K,
    "v_proj": ModuleKind.V,
    "o_proj": ModuleKind.O,
    "out_proj": ModuleKind.O,
    "dense": ModuleKind.O,
    "gate_proj": ModuleKind.GATE,
    "up_proj": ModuleKind.UP,
    "down_proj": ModuleKind.DOWN,
    "w1": ModuleKind.GATE,
    "w3": ModuleKind.UP,
    "w2": ModuleKind.DOWN,
    "embed_tokens": ModuleKind.EMBED,
    "wte": ModuleKind.EMBED,
    "lm_head": ModuleKind.HEAD,
    "input_layernorm": ModuleKind.NORM,
    "post_attention_layernorm": ModuleKind.NORM,
    "pre_feedforward_layernorm": ModuleKind.NORM,
    "post_feedforward_layernorm": ModuleKind.NORM,
    "q_norm": ModuleKind.NORM,
    "k_norm": ModuleKind.NORM,
    "norm": ModuleKind.NORM,
    "final_layernorm": ModuleKind.NORM,
}

# GGUF block tensor base names (llama.cpp's TENSOR_NAMES) -> kind.
_GGUF_KIND: dict[str, ModuleKind] = {
    "attn_q": ModuleKind.Q,
    "attn_k": ModuleKind.K,
    "attn_v": ModuleKind.V,
    "attn_output": ModuleKind.O,
    "ffn_gate": ModuleKind.GATE,
    "ffn_up": ModuleKind.UP,
    "ffn_down": ModuleKind.DOWN,
    "token_embd": ModuleKind.EMBED,
    "output": ModuleKind.HEAD,
    "attn_norm": ModuleKind.NORM,
    "ffn_norm": ModuleKind.NORM,
    "post_attention_norm": ModuleKind.NORM,
    "post_ffw_norm": ModuleKind.NORM,
    "attn_q_norm": ModuleKind.NORM,
    "attn_k_norm": ModuleKind.NORM,
    "output_norm": ModuleKind.NORM,
}

# ASCII digits only: \d also matches other scripts' digits, and str.isdigit() accepts "²",
# which int() then refuses (a tensor name is untrusted).
_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.([0-9]+)\.", re.ASCII)
_GGUF_RE = re.compile(r"^blk\.([0-9]+)\.([a-z0-9_]+)(?:\.(?:weight|bias))?$", re.ASCII)
MAX_INDEX_DIGITS = 6  # a million layers; a 5000-digit index also exceeds int()'s size guard


def small_int(text: str) -> int | None:
    """``text`` as an int when it is 1 to MAX_INDEX_DIGITS ASCII digits, else None."""
    if 0 < len(text) <= MAX_INDEX_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


def _layer_index(digits: str, name: str) -> int:
    value = small_int(digits)
    if value is None:
        raise CheckpointError(
            f"layer index {excerpt(digits, 20, quote=False)} is implausible "
            f"(more than {MAX_INDEX_DIGITS} digits)",
            field=f"tensor {excerpt(name)}",
            hint="the checkpoint's tensor names are corrupt",
        )
    return value


_PARAM_SUFFIXES = (".weight", ".bias", ".scales", ".biases")

# Tensors some formats carry that are not model parameters of the HF checkpoint
# (rotary tables, GGUF's precomputed rope factors); pairing ignores them.
ARTIFACT_NAMES = frozenset({"rope_freqs", "rope_factors_long", "rope_factors_short"})


def _strip_param(name: str) -> str:
    for s in _PARAM_SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def classify(name: str) -> tuple[int | None, ModuleKind]:
    """``(layer index or None, kind)`` for an HF-style or GGUF tensor name."""
    m = _GGUF_RE.match(name)
    if m:
        return _layer_index(m.group(1), name), _GGUF_KIND.get(m.group(2), ModuleKind.OTHER)
    base = _strip_param(name)
    if base in _GGUF_KIND and "." not in base:  # non-block GGUF names: token_embd, output, ...
        return None, _GGUF_KIND[base]
    lm = _LAYER_RE.search(name)
    layer = _layer_index(lm.group(1), name) if lm else None
    last = base.rsplit(".", 1)[-1]
    kind = _SUFFIX_KIND.get(last, ModuleKind.OTHER)
    if layer is not None and kind in (ModuleKind.EMBED, ModuleKind.HEAD):
        kind = ModuleKind.OTHER  # a per-layer "lm_head" is not the model's head
    if "rotary_emb" in name:
        kind = ModuleKind.OTHER
    return layer, kind


def kind_of(canonical: str) -> ModuleKind:
    return classify(canonical)[1]


def layer_of(canonical: str) -> int | None:
    return classify(canonical)[0]


def is_artifact(canonical: str) -> bool:
    """True for stored tensors that are not HF parameters (rotary caches, rope factors)."""
    return _strip_param(canonical) in ARTIFACT_NAMES or "rotary_emb" in canonical


def make_info(
    name: str, canonical: str, shape: tuple[int, ...], dtype: str, nbytes: int, file: Path
) -> TensorInfo:
    """A ``TensorInfo`` with layer and kind filled in from the canonical name."""
    try:
        layer, kind = classify(canonical)
    except CheckpointError as e:  # name the file the tensor is in
        raise CheckpointError(e.message, path=file, field=e.field, hint=e.hint) from None
    return TensorInfo(
        name=name,
        canonical=canonical,
        shape=tuple(int(d) for d in shape),
        dtype=dtype,
        nbytes=int(nbytes),
        file=file,
        layer=layer,
        kind=kind,
    )
