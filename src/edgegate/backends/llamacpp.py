"""llama.cpp backend (llama-cpp-python).

Loads GGUF directly. An HF safetensors directory is first converted to GGUF f16 with
edgegate's own writer and cached under ``<cache_dir>/gguf/<sha256 of the inputs>.gguf``, so
the second run reuses it; ``converted_from`` records that this happened.

We drive llama.cpp's decode with our own batches (not ``Llama.eval``) so logits are computed
only for the positions we score: perplexity asks for the scored half of each chunk, the
benchmark for the last position only, exactly as llama-perplexity / llama-bench do.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.backends._common import check_finite, log_softmax, render_chat
from edgegate.backends._generic import GenericBackend
from edgegate.errors import BackendError, BackendUnavailable, InputError

_HF_INPUTS = ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")


def default_cache_dir() -> Path:
    """$EDGEGATE_CACHE, else $XDG_CACHE_HOME/edgegate, else ~/.cache/edgegate."""
    if os.environ.get("EDGEGATE_CACHE"):
        return Path(os.environ["EDGEGATE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgegate"


def hf_content_hash(hf_dir: Path) -> str:
    """sha256 over the names and bytes of the files a conversion reads (weights, config,
    tokenizer): a changed weight gives a new cache entry, a touched mtime does not."""
    h = hashlib.sha256(b"edgegate-gguf-f16-v1\0")
    files = sorted(hf_dir.glob("*.safetensors")) + [
        hf_dir / n for n in _HF_INPUTS if (hf_dir / n).is_file()
    ]
    for f in sorted(set(files)):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            while block := fh.read(1 << 23):
                h.update(block)
    return h.hexdigest()


def ensure_gguf(path: Path, cache_dir: Path | None) -> tuple[Path, Path | None]:
    """(GGUF to load, HF dir it was converted from or None)."""
    if path.is_file():
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise InputError(
                    "not a GGUF file (bad magic)",
                    path=path,
                    hint="llama.cpp loads .gguf files or HF safetensors directories",
                )
        return path, None
    if not (path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))):
        ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else []
        if len(ggufs) == 1:
            return ggufs[0], None
        raise InputError(
            "llama.cpp needs a .gguf file or an HF directory with config.json and safetensors",
            path=path,
        )
    out_dir = (cache_dir or default_cache_dir()) / "gguf"
    out = out_dir / f"{hf_content_hash(path)}.gguf"
    if not out.is_file():
        try:
            from edgegate.checkpoint.gguf_writer import write_gguf
        except ImportError as exc:
            raise BackendError("the GGUF converter is not available in this build") from exc
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        try:
            write_gguf(path, tmp, "f16")
            tmp.replace(out)  # atomic: a half-written cache entry is never picked up
        finally:
            tmp.unlink(missing_ok=True)
    return out, path


class LlamaCppBackend(GenericBackend):
    runtime = "llamacpp"

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
            import llama_cpp
        except ImportError as exc:
            raise BackendUnavailable("llamacpp", "llamacpp") from exc
        self._lib = llama_cpp
        gguf, src = ensure_gguf(Path(path), cache_dir)
        self.model_path, self.converted_from = gguf, src
        self.threads = threads
        self.n_ctx = int(n_ctx)
        self._n_batch = min(self.n_ctx, 512)
        t0 = time.perf_counter()
        try:
            self._llm: Any = llama_cpp.Llama(
                model_path=str(gguf),
                n_ctx=self.n_ctx,
                n_batch=self._n_batch,
                n_ubatch=self._n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                seed=seed,
                logits_all=False,
                verbose=False,
            )
        except ValueError as exc:  # llama.cpp refused the file
            raise InputError(f"llama.cpp cannot load this GGUF: {exc}", path=gguf) from exc
        self.load_s = time.perf_counter() - t0
        self.n_vocab = int(self._llm.n_vocab())
        train_ctx = int(self._llm._model.n_ctx_train())
        if self.n_ctx > train_ctx > 0:
            raise InputError(
                f"n_ctx {self.n_ctx} exceeds the model's trained context {train_ctx}",
                path=gguf,
                field="n_ctx",
                hint=f"use --n-ctx {train_ctx} or less",
            )
        self._ctx = self._llm._ctx
        self._batch = self._llm._batch
        self._n_past = 0

    # -- decoding with explicit output rows ------------------------------------------------
    def _decode(self, tokens: Sequence[int], n_past: int, want: np.ndarray) -> np.ndarray:
        """Decode ``tokens`` at positions n_past.., returning logits for rows where ``want``."""
        v = self.n_vocab
        out = np.empty((int(want.sum()), v), dtype=np.float32)
        k = 0
        b = self._batch.batch
        for i in range(0, len(tokens), self._n_batch):
            part = tokens[i : i + self._n_batch]
            flags = want[i : i + len(part)]
            b.n_tokens = len(part)
            for j, t in enumerate(part):
                b.token[j] = t
                b.pos[j] = n_past + i + j
                b.n_seq_id[j] = 1
                b.seq_id[j][0] = 0
                b.logits[j] = bool(flags[j])
            try:
                self._ctx.decode(self._batch)
            except RuntimeError as exc:
                raise BackendError(f"llama.cpp decode failed: {exc}") from exc
            n_out = int(flags.sum())
            if n_out:
                ptr = self._lib.llama_get_logits(self._ctx.ctx)
                rows = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_out * v,))
                out[k : k + n_out] = rows.reshape(n_out, v)
                k += n_out
        return out

    def _clear(self) -> None:
        self._ctx.kv_cache_clear()
        self._n_past = 0

    def _forward(self, tokens: Sequence[int]) -> np.ndarray:
        self._clear()
        return self._decode(list(tokens), 0, np.ones(len(tokens), dtype=bool))

    def _prefill(self, tokens: Sequence[int]) -> np.ndarray:
        self._clear()
        want = np.zeros(len(tokens), dtype=bool)
        want[-1] = True
        logits = self._decode(list(tokens), 0, want)[0]
        self._n_past = len(tokens)
        return logits

    def _step(self, token: int) -> np.ndarray:
        logits = self._decode([token], self._n_past, np.ones(1, dtype=bool))[0]
        self._n_past += 1
        return logits

    def score_tokens(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        """Only the rows that predict tokens[first:] get logits computed (llama-perplexity's
        trick: the output layer over a 256k vocabulary dominates small models)."""
        toks = self._checked(tokens, "score_tokens")
        first = max(1, first)
        if first >= len(toks):
            return np.zeros(0, dtype=np.float64)
        want = np.zeros(len(toks), dtype=bool)
        want[first - 1 : len(toks) - 1] = True
        self._clear()
        logits = self._decode(toks, 0, want)
        check_finite(logits, self.runtime, "score_tokens")
        lp = log_softmax(logits)
        return lp[np.arange(len(lp)), np.asarray(toks[first:], dtype=np.int64)]

    # -- text -------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        # special=True parses control tokens written in the text, as HF tokenizers do
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)
        return [int(i) for i in ids]

    def detokenize(self, ids: Sequence[int]) -> str:
        raw: bytes = self._llm.detokenize([int(i) for i in ids], special=True)
        return raw.decode("utf-8", errors="replace")

    def _token_text(self, tok: int) -> str:
        if tok < 0:
            return ""
        return self.detokenize([tok])

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        tmpl = self._llm.metadata.get("tokenizer.chat_template")
        return render_chat(
            tmpl,
            system,
            user,
            bos_token=self._token_text(int(self._llm.token_bos())),
            eos_token=self._token_text(int(self._llm.token_eos())),
        )

    def eos_ids(self) -> set[int]:
        ids = {int(self._llm.token_eos())}
        eot = getattr(self._lib, "llama_vocab_eot", None)
        vocab = getattr(self._llm._model, "vocab", None)
        if eot is not None and vocab is not None:  # e.g. Gemma's <end_of_turn>
            ids.add(int(eot(vocab)))
        return {i for i in ids if i >= 0}

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None
