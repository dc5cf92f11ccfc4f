"""How a Hugging Face Llama-family checkpoint maps onto llama.cpp's GGUF layout: tensor names
and the q/k row order (used by the GGUF writer, and by readers to undo it).

Q/K row permutation
-------------------
HF Llama applies RoPE with ``rotate_half``: inside each head the first ``d/2`` rows of the
query/key projection pair with the last ``d/2`` rows. llama.cpp's LLAMA architecture rotates
*adjacent* pairs (rows ``2j`` and ``2j+1``). To make the GGUF compute the same function the
rows of ``q_proj`` (with ``n_head``) and ``k_proj`` (with ``n_head_kv``) are reordered per head:

    W.reshape(n_head, 2, d // 2, in).swapaxes(1, 2).reshape(n_head * d, in)

i.e. GGUF row ``h*d + 2j + s`` is HF row ``h*d + s*d/2 + j`` (``s`` in {0, 1}). This is the
same reordering llama.cpp's own converter applies for LlamaForCausalLM. It is a pure row
shuffle, so it commutes with row-wise quantisation (Q8_0 blocks lie along rows) and keeps
every zero count. ``unpermute_qk`` is its exact inverse: a GGUF reader applies it to
``attn_q`` / ``attn_k`` (after dequantising) to get tensors equal to the HF ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgegate.checkpoint.names import small_int
from edgegate.errors import CheckpointError


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF (rotate_half) row order -> llama.cpp (adjacent pairs) row order, per head."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"{rows} rows cannot be split into {n_head} heads of even size")
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of ``permute_qk``: llama.cpp row order -> HF row order."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"{rows} rows cannot be split into {n_head} heads of even size")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# --------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class ArchSpec:
    """How one HF architecture maps onto a llama.cpp architecture.

    ``layer_map`` maps the suffix after ``model.layers.{i}.`` to the GGUF name after
    ``blk.{i}.``; ``global_map`` maps whole names. ``permute_qk`` says whether q/k rows are
    reordered (see the module docstring). Add an entry to ``ARCHITECTURES`` to extend.
    """

    gguf_arch: str
    global_map: dict[str, str]
    layer_map: dict[str, str]
    permute_qk: bool
    skip_suffixes: tuple[str, ...] = ("rotary_emb.inv_freq",)


_LLAMA = ArchSpec(
    gguf_arch="llama",
    global_map={
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    },
    layer_map={
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    },
    permute_qk=True,
)

ARCHITECTURES: dict[str, ArchSpec] = {
    "LlamaForCausalLM": _LLAMA,
    "MistralForCausalLM": _LLAMA,  # same tensors and RoPE layout as Llama
}


def gguf_tensor_name(spec: ArchSpec, hf_name: str) -> str | None:
    """The GGUF name for an HF tensor name, or None for tensors that are not written."""
    if any(hf_name.endswith(s) for s in spec.skip_suffixes):
        return None
    if hf_name in spec.global_map:
        return spec.global_map[hf_name]
    parts = hf_name.split(".", 3)
    if (
        len(parts) == 4
        and parts[0] == "model"
        and parts[1] == "layers"
        and small_int(parts[2]) is not None
    ):
        gname = spec.layer_map.get(parts[3])
        if gname is not None:
            return f"blk.{parts[2]}.{gname}"
    raise CheckpointError(
        f"tensor '{hf_name}' has no GGUF mapping for {spec.gguf_arch}",
        hint="this checkpoint has tensors the writer does not know; extend ArchSpec",
    )


def hf_tensor_name(spec: ArchSpec, gguf_name: str) -> str | None:
    """Inverse of ``gguf_tensor_name`` (for readers): ``blk.3.attn_q.weight`` ->
    ``model.layers.3.self_attn.q_proj.weight``; None for names this table does not write."""
    for hf, g in spec.global_map.items():
        if g == gguf_name:
            return hf
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and small_int(parts[1]) is not None:
        for hf, g in spec.layer_map.items():
            if g == parts[2]:
                return f"model.layers.{parts[1]}.{hf}"
    return None
