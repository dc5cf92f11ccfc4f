"""The connection half of the ``openai`` backend (``openai_backend``): the server, its
dialect and context size, tokenizing, prompts (token ids, or text proven to re-tokenize to
them) and the one-token completion every scoring request is built on."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, Unpack

from edgegate.backends._common import hf_chat_template, render_chat
from edgegate.backends._http import (
    FEATURE_HINTS,
    FEATURES,
    FeatureUnsupported,
    HttpClient,
    HttpError,
    public_url,
    refused,
    split_url,
)
from edgegate.backends._openai_wire import (
    DETOKENIZE,
    TOKENIZE,
    ChatMessage,
    CompletionOptions,
    CompletionRequest,
    RequestBody,
    pick_model,
)
from edgegate.errors import BackendError, InputError

log = logging.getLogger("edgegate.backends.openai")

DIALECTS = ("vllm", "llama-server", "llama-cpp-python", "generic")
_T = TypeVar("_T")
_R = TypeVar("_R")


class OpenAIServer:
    """An OpenAI-compatible server, connected: what ``OpenAIBackend`` scores through. It holds
    the whole backend's settings and counters; the scoring methods are the subclass's."""

    runtime = "openai"

    def __init__(
        self,
        base_url: str | Path,
        model: str | None = None,
        *,
        api_key_env: str = "EDGEGATE_API_KEY",
        concurrency: int = 4,
        timeout: float | None = None,  # None: the command's --timeout (HttpSettings)
        max_retries: int | None = None,
        tokenizer_path: str | Path | None = None,
        top_logprobs: int = 20,
        dialect: str | None = None,
        letter_mode: str = "auto",
        loglik_mode: str = "auto",
        n_ctx: int | None = None,
        **_unused: Any,  # threads/seed/cache_dir from open_backend mean nothing remotely
    ) -> None:
        t0 = time.perf_counter()
        url, query_model = split_url(base_url)
        model = model or query_model
        for name, val, ok in (
            ("letter_mode", letter_mode, ("auto", "topk", "forced")),
            ("loglik_mode", loglik_mode, ("auto", "echo", "forced")),
            ("dialect", dialect, (None, *DIALECTS)),
        ):
            if val not in ok:
                raise InputError(f"{name} must be one of {ok}, got {val!r}", field=name)
        key = os.environ.get(api_key_env) or os.environ.get("OPENAI_API_KEY") or None
        from edgegate.backends._http import current_http_settings

        cfg = current_http_settings()
        timeout = cfg.timeout_s if timeout is None else timeout
        max_retries = cfg.max_retries if max_retries is None else max_retries
        self._http = HttpClient(
            url, api_key=key, concurrency=concurrency, timeout=timeout, max_retries=max_retries
        )
        self.base_url = public_url(url)
        self.concurrency = max(1, int(concurrency))
        self.top_k = max(1, int(top_logprobs))
        self.letter_mode, self.loglik_mode = letter_mode, loglik_mode
        self._cov = {"prompts": 0, "topk_hits": 0, "forced": 0, "below_kth": 0}
        self._cov_lock = threading.Lock()
        self._echo_ok: bool | None = None
        self._warned_first = self._warned_chat = False
        self._bos_first = 1  # 1: detokenize with the leading BOS first (see _prompt)
        self._piece_cache: dict[int, str] = {}
        self._local_tok: Any = None
        self._tok_dir = Path(tokenizer_path).parent if tokenizer_path is not None else None
        if tokenizer_path is not None:
            from tokenizers import Tokenizer

            try:
                self._local_tok = Tokenizer.from_file(str(tokenizer_path))
            except Exception as e:  # the tokenizers error types are not public
                raise InputError(
                    f"cannot load tokenizer: {e}",
                    path=tokenizer_path,
                    hint="pass a HF tokenizer.json",
                ) from None

        entry = pick_model(self._http, model)
        self.model = str(entry.get("id"))
        self.model_path = Path(self.model)
        self.dialect = dialect or self._detect(entry)
        self.n_ctx = self._context_size(entry, n_ctx)
        self.n_vocab = (
            0  # not reported by the server (0: unknown; tokenizers are compared by probes)
        )
        self._bos: int | None = None
        if not self._ids_keyed:  # text prompts: learn the BOS the server adds on its own
            toks = self.tokenize("", add_special=True)
            self._bos = toks[0] if len(toks) == 1 else None
        self.load_s = time.perf_counter() - t0
        log.info(
            "openai backend: %s model=%s dialect=%s n_ctx=%d",
            self.base_url,
            self.model,
            self.dialect,
            self.n_ctx,
        )

    # ----------------------------------------------------------------- plumbing
    def __repr__(self) -> str:
        return f"OpenAIBackend({self.base_url!r}, model={self.model!r}, dialect={self.dialect!r})"

    def _post(self, path: str, body: RequestBody, what: str) -> Any:
        try:
            return self._http.post_json(path, body)
        except HttpError as e:
            if what in FEATURES and refused(e, what):
                raise FeatureUnsupported(
                    f"{self.base_url} ({self.dialect}) does not support {FEATURES[what]}: "
                    f"HTTP {e.status} {e.body[:160]}",
                    feature=what,
                    hint=FEATURE_HINTS.get(what),
                ) from None
            raise

    def _detect(self, entry: dict[str, Any]) -> str:
        owner = str(entry.get("owned_by", "")).lower()
        if owner == "vllm" or "max_model_len" in entry:
            return "vllm"
        if owner == "llamacpp":
            return "llama-server"
        try:
            self._http.post_json("/extras/tokenize", {"input": "a"})
            return "llama-cpp-python"
        except HttpError:
            return "generic"

    def _context_size(self, entry: dict[str, Any], fallback: int | None) -> int:
        if isinstance(entry.get("max_model_len"), int):  # vLLM
            return int(entry["max_model_len"])
        meta = entry.get("meta")  # llama-server: the per-slot context
        if isinstance(meta, dict) and isinstance(meta.get("n_ctx"), int) and meta["n_ctx"] > 0:
            return int(meta["n_ctx"])
        if self.dialect == "llama-server":
            props = self._http.get_json("/props")
            gen = props.get("default_generation_settings") if isinstance(props, dict) else None
            n = gen.get("n_ctx") if isinstance(gen, dict) else None
            if isinstance(n, int) and n > 0:
                return n
        if fallback is None:
            log.warning(
                "%s does not report its context size; assuming 2048 (pass n_ctx)", self.base_url
            )
            return 2048
        return int(fallback)

    def _map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, items))

    # --------------------------------------------------------------- tokenizer
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        if self._local_tok is not None:
            return list(self._local_tok.encode(text, add_special_tokens=add_special).ids)
        path, make, field = TOKENIZE.get(self.dialect, TOKENIZE["*"])
        r = self._post(path, make(self.model, text, add_special), "tokenize")
        toks = r.get(field) if isinstance(r, dict) else None
        if not isinstance(toks, list) or not all(isinstance(t, int) for t in toks):
            raise BackendError(f"{self.base_url}: tokenize returned no integer '{field}' list")
        # /extras/tokenize always adds BOS: drop it when the caller asked for none.
        if path == "/extras/tokenize" and not add_special and toks[:1] == [self._bos]:
            toks = toks[1:]
        return list(toks)

    def detokenize(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if self._local_tok is not None:
            return str(self._local_tok.decode(ids, skip_special_tokens=False))
        path, make, field = DETOKENIZE.get(self.dialect, DETOKENIZE["*"])
        r = self._post(path, make(self.model, ids), "detokenize")
        text = r.get(field) if isinstance(r, dict) else None
        if not isinstance(text, str):
            raise BackendError(f"{self.base_url}: detokenize returned no '{field}' text")
        return text

    def _piece(self, tok: int) -> str:
        if tok not in self._piece_cache:
            self._piece_cache[tok] = self.detokenize([tok])
        return self._piece_cache[tok]

    @property
    def _ids_keyed(self) -> bool:
        return self.dialect in ("vllm", "llama-server")

    def _prompt(self, ids: Sequence[int]) -> list[int] | str:
        """What goes in "prompt": the ids themselves, or text proven to re-tokenize to them."""
        ids = [int(i) for i in ids]
        if not ids:
            raise InputError("empty prompt", field="prompt")
        if self._ids_keyed:
            return ids
        starts_bos = self._bos is not None and ids[:1] == [self._bos]
        if self._local_tok is not None:
            variants = [
                lambda: str(
                    self._local_tok.decode(
                        ids[1:] if starts_bos else ids, skip_special_tokens=False
                    )
                )
            ]
        else:
            # llama.cpp drops the space after a leading BOS when detokenizing (right for
            # SentencePiece vocabularies, wrong for byte-level BPE): try both, the one that
            # worked last time first.
            variants = [lambda: self.detokenize(ids)]
            if starts_bos:
                variants.insert(self._bos_first, lambda: self.detokenize(ids[1:]))
        back: list[int] = []
        for i, make in enumerate(variants):
            text = make()
            back = self.tokenize(text, add_special=True)
            if back == ids:
                if i == 1:
                    self._bos_first = 1 - self._bos_first
                return text
        raise BackendError(
            f"{self.base_url} ({self.dialect}) only accepts text prompts and these token ids "
            f"do not survive detokenize->tokenize ({len(ids)} ids -> {len(back)})",
            hint="pass tokenizer_path=<the checkpoint's tokenizer.json> (keeps special tokens), "
            "start prompts with BOS as the server does, or use a server that takes token ids (vLLM)",
        )

    def _complete(
        self, ids: Sequence[int], what: str, **fields: Unpack[CompletionOptions]
    ) -> dict[str, Any]:
        body: CompletionRequest = {
            "model": self.model,
            "prompt": self._prompt(ids),
            "max_tokens": 1,
            "temperature": 0.0,
            **fields,
        }
        if self.dialect == "vllm":
            body["return_tokens_as_token_ids"] = True
        r = self._post("/v1/completions", body, what)
        choices = r.get("choices") if isinstance(r, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise BackendError(f"{self.base_url}/v1/completions returned no choices")
        usage = r.get("usage")
        n_prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if isinstance(n_prompt, int) and n_prompt != len(ids):
            raise BackendError(
                f"{self.base_url} evaluated {n_prompt} prompt tokens, expected {len(ids)}",
                hint="the server re-tokenized the prompt differently",
            )
        return dict(choices[0], _usage=usage if isinstance(usage, dict) else {})

    # ----------------------------------------------------------------- chat
    def chat_prompt(self, system: str | None, user: str) -> str | None:
        if self._tok_dir is not None:  # the checkpoint's own template wins when we have it
            tmpl, bos, eos = hf_chat_template(self._tok_dir)
            if tmpl:
                return render_chat(tmpl, system, user, bos_token=bos, eos_token=eos)
        msgs: list[ChatMessage] = [{"role": "system", "content": system}] if system else []
        msgs.append({"role": "user", "content": user})
        try:
            if self.dialect == "llama-server":
                r = self._post("/apply-template", {"messages": msgs}, "apply-template")
                if isinstance(r, dict) and isinstance(r.get("prompt"), str):
                    return str(r["prompt"])
            elif self.dialect == "vllm":
                r = self._post(
                    "/tokenize",
                    {"model": self.model, "messages": msgs, "add_generation_prompt": True},
                    "tokenize",
                )
                toks = r.get("tokens") if isinstance(r, dict) else None
                if isinstance(toks, list):
                    return self.detokenize(toks)
        except FeatureUnsupported:
            pass
        if not self._warned_chat:
            self._warned_chat = True
            log.warning(
                "%s (%s) exposes no chat template; prompts stay plain (pass "
                "tokenizer_path= from the checkpoint to use its template)",
                self.base_url,
                self.dialect,
            )
        return None
