"""ONNX Runtime backend for causal-LM exports.

Accepts a ``model.onnx`` file or a directory holding one, with ``input_ids`` and optionally
``attention_mask`` / ``position_ids`` / ``past_key_values.*`` inputs, and ``logits`` (first
output) plus ``present.*`` outputs when it has a KV cache. The tokenizer is ``tokenizer.json``
beside it (``tokenizers``; no code from the checkpoint runs).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.backends._common import hf_chat_template, read_json, render_chat
from edgegate.backends._generic import GenericBackend
from edgegate.errors import BackendError, BackendUnavailable, InputError

_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


def find_onnx(path: Path) -> Path:
    if path.is_file() and path.suffix == ".onnx":
        return path
    if path.is_dir():
        for name in ("model.onnx", "decoder_model_merged.onnx", "decoder_model.onnx"):
            if (path / name).is_file():
                return path / name
        found = sorted(path.glob("*.onnx")) + sorted(path.glob("onnx/*.onnx"))
        if len(found) == 1:
            return found[0]
    raise InputError(
        "no ONNX model found",
        path=path,
        hint="pass a model.onnx file or a directory holding exactly one .onnx export",
    )


class ONNXBackend(GenericBackend):
    runtime = "onnx"

    def __init__(
        self,
        path: Path,
        *,
        threads: int | None = None,
        n_ctx: int = 2048,
        seed: int = 0,
        cache_dir: Path | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise BackendUnavailable("onnx", "onnx") from exc
        onnx_file = find_onnx(Path(path))
        here = onnx_file.parent
        tok_file = here / "tokenizer.json"
        if not tok_file.is_file() and (here.parent / "tokenizer.json").is_file():
            here = here.parent
            tok_file = here / "tokenizer.json"
        if not tok_file.is_file():
            raise InputError(
                "ONNX model has no tokenizer.json beside it",
                path=onnx_file,
                hint="export the tokenizer (tokenizer.json) into the same directory",
            )
        self._tok = Tokenizer.from_file(str(tok_file))
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        t0 = time.perf_counter()
        try:
            self._sess = ort.InferenceSession(
                str(onnx_file), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types for bad graphs
            raise InputError(f"ONNX Runtime cannot load this model: {exc}", path=onnx_file) from exc
        self.load_s = time.perf_counter() - t0
        self.model_path = onnx_file
        self.threads = threads
        self.n_ctx = int(n_ctx)
        self._inputs = {i.name: i for i in self._sess.get_inputs()}
        if "input_ids" not in self._inputs:
            raise InputError(
                "ONNX model has no 'input_ids' input; not a causal-LM export",
                path=onnx_file,
                field="inputs",
            )
        self._outputs = [o.name for o in self._sess.get_outputs()]
        self._past = [n for n in self._inputs if n.startswith("past_key_values")]
        self._present = [n.replace("past_key_values", "present") for n in self._past]
        cfg_path = here / "config.json"
        self._cfg = read_json(cfg_path) if cfg_path.is_file() else {}
        self._state: dict[str, np.ndarray] = {}
        self._n_past = 0
        self._seq: list[int] = []
        self.n_vocab = self._vocab_size()
        self._chat = hf_chat_template(here)
        eos = self._cfg.get("eos_token_id")
        self._eos = set(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])

    def _vocab_size(self) -> int:
        shape = self._sess.get_outputs()[0].shape
        if shape and isinstance(shape[-1], int):
            return int(shape[-1])
        v = self._cfg.get("vocab_size")
        return int(v) if isinstance(v, int) else self._run([0], fresh=True).shape[-1]

    def _empty_past(self, name: str) -> np.ndarray:
        meta = self._inputs[name]
        dims: list[int] = []
        for i, d in enumerate(meta.shape):
            if isinstance(d, int):
                dims.append(d)
            elif i == 0:
                dims.append(1)  # batch
            elif i == 2:
                dims.append(0)  # past sequence length
            elif i == 1:
                n = self._cfg.get("num_key_value_heads") or self._cfg.get("num_attention_heads")
                dims.append(int(n) if n else 1)
            else:
                h = self._cfg.get("head_dim") or (
                    int(self._cfg["hidden_size"]) // int(self._cfg["num_attention_heads"])
                    if "hidden_size" in self._cfg and "num_attention_heads" in self._cfg
                    else None
                )
                if not h:
                    raise InputError(
                        f"cannot size the empty KV cache input '{name}'",
                        path=self.model_path,
                        hint="put the model's config.json beside the .onnx file",
                    )
                dims.append(int(h))
        return np.zeros(dims, dtype=_NP_TYPES.get(meta.type, np.float32))

    def _run(self, tokens: Sequence[int], *, fresh: bool) -> np.ndarray:
        if fresh:
            self._state = {n: self._empty_past(n) for n in self._past}
            self._n_past = 0
        n = len(tokens)
        self.tokens_evaluated += n
        feed: dict[str, Any] = {"input_ids": np.asarray([list(tokens)], dtype=np.int64)}
        total = self._n_past + n
        if "attention_mask" in self._inputs:
            feed["attention_mask"] = np.ones((1, total), dtype=np.int64)
        if "position_ids" in self._inputs:
            feed["position_ids"] = np.arange(self._n_past, total, dtype=np.int64)[None, :]
        feed.update(self._state)
        try:
            outs = self._sess.run(None, feed)
        except Exception as exc:
            raise BackendError(f"ONNX Runtime inference failed: {exc}") from exc
        named = dict(zip(self._outputs, outs, strict=True))
        if self._past:
            self._state = {p: named[q] for p, q in zip(self._past, self._present, strict=True)}
        self._n_past = total
        return np.asarray(outs[0][0], dtype=np.float32)

    def _forward(self, tokens: Sequence[int]) -> np.ndarray:
        return self._run(tokens, fresh=True)

    def _prefill(self, tokens: Sequence[int]) -> np.ndarray:
        self._seq = list(tokens)
        return self._run(self._seq, fresh=True)[-1]

    def _step(self, token: int) -> np.ndarray:
        self._seq.append(token)
        if self._past:
            return self._run([token], fresh=False)[-1]
        # an export without past_key_values: every step re-runs the whole sequence
        return self._run(self._seq, fresh=True)[-1]

    # -- text -------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special).ids)

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode([int(i) for i in ids], skip_special_tokens=False))

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        tmpl, bos, eos = self._chat
        return render_chat(tmpl, system, user, bos_token=bos, eos_token=eos)

    def eos_ids(self) -> set[int]:
        return self._eos

    def close(self) -> None:
        self._state = {}
