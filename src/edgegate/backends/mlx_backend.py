"""MLX backend (mlx-lm): HF safetensors directories and mlx-lm directories.

On Linux this is the mlx[cpu] build; on Apple silicon the same code runs on the GPU. MLX
has no thread-count knob, so ``threads`` is reported as not settable rather than pretended.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.backends._common import hf_chat_template, render_chat
from edgegate.backends._generic import GenericBackend
from edgegate.errors import BackendError, BackendUnavailable, InputError


class MLXBackend(GenericBackend):
    runtime = "mlx"

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
            import mlx.core as mx
            from mlx_lm.models.cache import make_prompt_cache
            from mlx_lm.utils import load
        except ImportError as exc:
            raise BackendUnavailable("mlx", "mlx") from exc
        path = Path(path)
        if not (path.is_dir() and (path / "config.json").is_file()):
            # mlx_lm.load would treat anything else as a hub repo id and download it
            raise InputError(
                "MLX needs a local model directory with config.json and safetensors",
                path=path,
                hint="pass an HF or mlx-lm directory (GGUF files run on --runtime llamacpp)",
            )
        self._mx = mx
        self._make_cache = make_prompt_cache
        t0 = time.perf_counter()
        try:
            # trust_remote_code stays False: a checkpoint never runs code here
            loaded: Any = load(str(path), trust_remote_code=False)
            model, tok = loaded[0], loaded[1]
        except (ValueError, FileNotFoundError, KeyError) as exc:
            raise InputError(f"mlx-lm cannot load this model: {exc}", path=path) from exc
        self.load_s = time.perf_counter() - t0
        from edgegate.backends._common import read_json

        train_ctx = read_json(path / "config.json").get("max_position_embeddings")
        if isinstance(train_ctx, int) and n_ctx > train_ctx:
            raise InputError(
                f"n_ctx {n_ctx} exceeds the model's trained context {train_ctx}",
                path=path / "config.json",
                field="n_ctx",
                hint=f"use --n-ctx {train_ctx} or less",
            )
        self._model: Any = model
        self._tok: Any = tok
        inner = getattr(tok, "_tokenizer", None)
        if inner is not None and hasattr(inner, "model_max_length"):
            inner.model_max_length = 1 << 62  # we chunk ourselves; silence the length warning
        self.model_path = path
        self.threads = None  # not settable in MLX
        mx.random.seed(seed)
        self.n_vocab = self._vocab_size()
        self.n_ctx = int(n_ctx)
        self._cache: Any = None
        self._chat = hf_chat_template(path)

    def _vocab_size(self) -> int:
        args = getattr(self._model, "args", None)
        v = getattr(args, "vocab_size", None)
        if isinstance(v, int) and v > 0:
            return v
        logits = self._logits([0], None)
        return int(logits.shape[-1])

    def _logits(self, tokens: Sequence[int], cache: Any) -> np.ndarray:
        mx = self._mx
        self.tokens_evaluated += len(tokens)
        try:
            out = self._model(mx.array([list(tokens)], dtype=mx.int32), cache=cache)
            out = out[0].astype(mx.float32)
            mx.eval(out)
            return np.array(out, copy=True)
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"mlx forward pass failed: {exc}") from exc

    def _forward(self, tokens: Sequence[int]) -> np.ndarray:
        return self._logits(tokens, None)

    def _prefill(self, tokens: Sequence[int]) -> np.ndarray:
        self._cache = self._make_cache(self._model)
        return self._logits(tokens, self._cache)[-1]

    def _step(self, token: int) -> np.ndarray:
        return self._logits([token], self._cache)[-1]

    # -- text -------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return [int(t) for t in self._tok.encode(text, add_special_tokens=add_special)]

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode([int(i) for i in ids]))

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        tmpl, bos, eos = self._chat
        return render_chat(tmpl, system, user, bos_token=bos, eos_token=eos)

    def eos_ids(self) -> set[int]:
        return {int(i) for i in getattr(self._tok, "eos_token_ids", set())}

    def close(self) -> None:
        self._cache = None
        self._model = None
