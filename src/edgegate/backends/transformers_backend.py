"""transformers backend (PyTorch): HF safetensors directories as transformers runs them.

Any architecture ``AutoModelForCausalLM`` loads *without remote code*: ``trust_remote_code``
is never set, a checkpoint that asks for it (``auto_map``, a ``model_type`` transformers does
not know) is refused with exit 2, and only safetensors weights are read (pickled ``.bin`` /
``.pt`` files could run code on load).

Device: CUDA, then MPS, then CPU, unless ``EDGEGATE_TORCH_DEVICE`` names one. dtype: the
checkpoint's ``dtype``/``torch_dtype`` unless ``EDGEGATE_TORCH_DTYPE`` names one
(``float32``, ``bfloat16``, ``float16``). Logits are scored in float64 by ``_common``, as for
every other runtime.

Scoring calls pack the prompts that share a prefix into token trees (``tree_pack``): a loglik
context and its three answers, a letter prompt's option rotations and the system prompt their
items share are each evaluated once, in one forward pass whose 4D mask lets a token see its own
sequence's earlier tokens only, at its own position. Trees of similar length share a padded
pass. A prompt past a sliding window, and every prompt under an attention kernel that ignores
custom masks, goes as a plain left-padded row. ``batch_size`` and ``reuse_prefix`` switch this
off for the benchmark (``benchmarks/transformers_batching.py``) and for the tests that compare
the paths.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.backends._common import (
    check_finite,
    hf_chat_template,
    log_softmax,
    picked_logprobs,
    read_json,
    render_chat,
)
from edgegate.backends._generic import GenericBackend
from edgegate.backends.base import LoglikResult
from edgegate.backends.tree_pack import Limits, Tree, plan
from edgegate.errors import BackendError, BackendUnavailable, InputError

_DTYPES = ("float32", "bfloat16", "float16")
_PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
# Rows x padded length per forward pass: bounds activation memory (logits are kept only for
# the rows scored, so the vocabulary does not enter this budget).
_TOKEN_BUDGET = 8192
# The longest token tree packed into one row (attention over a row grows with its square): a
# BBQ scoring call of 16 loglik items or 16 rotated letter prompts fits one tree (~550-750
# positions on gemma-3-270m), which is what lets them share the system prompt.
_TREE_LEN = 1024


def check_loadable(path: Path) -> dict[str, Any]:
    """The checkpoint's config.json, after refusing what would need remote code or pickle."""
    if not (path.is_dir() and (path / "config.json").is_file()):
        raise InputError(
            "transformers needs a local model directory with config.json and safetensors",
            path=path,
            hint="pass an HF directory (GGUF files run on --runtime llamacpp, .onnx on onnx)",
        )
    cfg = read_json(path / "config.json")
    tok_cfg_path = path / "tokenizer_config.json"
    tok_cfg = read_json(tok_cfg_path) if tok_cfg_path.is_file() else {}
    for where, data in ((path / "config.json", cfg), (tok_cfg_path, tok_cfg)):
        if data.get("auto_map"):
            raise InputError(
                "this checkpoint needs remote code (auto_map names Python classes shipped with "
                "it); edgegate never runs code from a checkpoint (trust_remote_code=False)",
                path=where,
                field="auto_map",
                hint="use a checkpoint of an architecture built into transformers, or convert it",
            )
    from transformers import CONFIG_MAPPING

    mtype = cfg.get("model_type")
    if not isinstance(mtype, str) or mtype not in CONFIG_MAPPING:
        raise InputError(
            f"model_type {mtype!r} is not built into this transformers; loading it would need "
            "remote code, which edgegate never runs (trust_remote_code=False)",
            path=path / "config.json",
            field="model_type",
            hint="upgrade transformers if the architecture is newer than it, else convert the model",
        )
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for pat in _PICKLE_WEIGHTS for p in path.glob(pat))
        raise InputError(
            "no safetensors weights"
            + (f" (found pickle files: {', '.join(pickled[:3])})" if pickled else ""),
            path=path,
            hint="edgegate reads only safetensors (pickle can execute code): re-save with "
            "save_pretrained(safe_serialization=True)",
        )
    return cfg


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


TREES = "token trees"


def _packing(cfg: Any, text_cfg: Any) -> str:
    """How scoring calls lay out prompts sharing a prefix. Token trees need a model that takes
    positions from ``position_ids`` (rotary embeddings) and a custom 4D mask (the sdpa and eager
    kernels): ALiBi biases come from column distances, and flash-attention kernels read only a
    padding mask, so either would let the tree layout change the scores."""
    impl = getattr(cfg, "_attn_implementation", None)
    rotary = any(getattr(text_cfg, a, None) is not None for a in ("rope_parameters", "rope_theta"))
    if impl not in ("sdpa", "eager"):
        return f"plain rows (attention kernel {impl} ignores a custom mask)"
    if not rotary or getattr(text_cfg, "alibi", False):
        return "plain rows (positions not from rotary embeddings)"
    return TREES


def pick_device(torch: Any) -> str:
    forced = os.environ.get("EDGEGATE_TORCH_DEVICE", "").strip()
    if forced:
        if forced.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise InputError(
                f"EDGEGATE_TORCH_DEVICE={forced!r}",
                field="EDGEGATE_TORCH_DEVICE",
                hint="cpu, cuda, cuda:N or mps",
            )
        return forced
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(cfg: dict[str, Any]) -> tuple[str, str]:
    """(dtype name, where it came from)."""
    forced = os.environ.get("EDGEGATE_TORCH_DTYPE", "").strip()
    if forced:
        if forced not in _DTYPES:
            raise InputError(
                f"EDGEGATE_TORCH_DTYPE={forced!r}",
                field="EDGEGATE_TORCH_DTYPE",
                hint=", ".join(_DTYPES),
            )
        return forced, "EDGEGATE_TORCH_DTYPE"
    text = cfg.get("text_config")
    for src in (cfg, text if isinstance(text, dict) else {}):
        for key in ("dtype", "torch_dtype"):
            v = src.get(key)
            if isinstance(v, str) and v in _DTYPES:
                return v, f"config.json {key}"
    return "float32", "default (config.json names no dtype)"


class TransformersBackend(GenericBackend):
    runtime = "transformers"

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
            import torch
            import transformers
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise BackendUnavailable("transformers", "torch") from exc
        path = Path(path)
        cfg = check_loadable(path)
        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        torch.manual_seed(seed)
        self.device = pick_device(torch)
        self.dtype, self.dtype_source = pick_dtype(cfg)
        t0 = time.perf_counter()
        try:
            tok = AutoTokenizer.from_pretrained(
                str(path), trust_remote_code=False, local_files_only=True
            )
            model = AutoModelForCausalLM.from_pretrained(
                str(path),
                trust_remote_code=False,
                local_files_only=True,
                use_safetensors=True,
                dtype=getattr(torch, self.dtype),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"transformers cannot load this model: {exc}", path=path) from exc
        model.to(self.device).eval()  # type: ignore[arg-type]
        self.load_s = time.perf_counter() - t0
        self._model: Any = model
        self._tok: Any = tok
        self.model_path = path
        self.threads = threads
        self.versions = {"torch": torch.__version__, "transformers": transformers.__version__}
        text_cfg = model.config.get_text_config()
        train_ctx = getattr(text_cfg, "max_position_embeddings", None)
        if isinstance(train_ctx, int) and n_ctx > train_ctx:
            raise InputError(
                f"n_ctx {n_ctx} exceeds the model's trained context {train_ctx}",
                path=path / "config.json",
                field="n_ctx",
                hint=f"use --n-ctx {train_ctx} or less",
            )
        self.n_ctx = int(n_ctx)
        self.n_vocab = int(model.get_output_embeddings().weight.shape[0])
        self._chat = hf_chat_template(path)
        self._eos = self._eos_from(cfg, path)
        self._cache: Any = None
        self._n_past = 0
        # transformers 5.2x renamed the cache argument (the old name still works, with a warning)
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        # sliding-window layers (Gemma 2/3, Mistral with a window): a token tree's mask replaces
        # the model's own, window included, so only sequences that fit the window go as trees
        window = getattr(text_cfg, "sliding_window", None)
        self._window = int(window) if isinstance(window, int) and window > 0 else None
        self.packing = _packing(model.config, text_cfg)
        self._tree_passes = 0
        self.batch_size = 16  # 1: one prompt per forward pass
        self.reuse_prefix = True  # False: every row computes its whole prompt

    def _eos_from(self, cfg: dict[str, Any], path: Path) -> set[int]:
        ids: set[int] = set()
        gen = path / "generation_config.json"
        for src in (cfg, read_json(gen) if gen.is_file() else {}):
            v = src.get("eos_token_id")
            ids.update(int(x) for x in (v if isinstance(v, list) else [v]) if isinstance(x, int))
        if isinstance(getattr(self._tok, "eos_token_id", None), int):
            ids.add(int(self._tok.eos_token_id))
        return ids

    # -- forward passes -----------------------------------------------------------------------
    def _run_model(self, **kwargs: Any) -> Any:
        torch = self._torch
        ids = kwargs.get("input_ids")
        self.tokens_evaluated += int(ids.numel()) if ids is not None else 0
        try:
            with torch.inference_mode():
                return self._model(**kwargs)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise BackendError(f"transformers forward pass failed: {exc}") from exc

    def _ids(self, rows: Sequence[Sequence[int]]) -> Any:
        return self._torch.tensor(
            [list(r) for r in rows], dtype=self._torch.long, device=self.device
        )

    def _np(self, logits: Any) -> np.ndarray:
        return np.asarray(logits.float().cpu().numpy())

    def _forward(self, tokens: Sequence[int]) -> np.ndarray:
        out = self._run_model(input_ids=self._ids([tokens]), use_cache=False)
        return self._np(out.logits[0])

    def _prefill(self, tokens: Sequence[int]) -> np.ndarray:
        out = self._run_model(input_ids=self._ids([tokens]), use_cache=True, logits_to_keep=1)
        self._cache = _cache_of(out)
        self._n_past = len(tokens)
        return self._np(out.logits[0, -1])

    def _step(self, token: int) -> np.ndarray:
        pos = self._torch.tensor([[self._n_past]], device=self.device)
        out = self._run_model(
            input_ids=self._ids([[token]]),
            use_cache=True,
            position_ids=pos,
            cache_position=pos[0],
            **{self._cache_kw: self._cache},
        )
        self._cache = _cache_of(out)
        self._n_past += 1
        return self._np(out.logits[0, -1])

    def _scored_logits(self, toks: list[int], first: int) -> np.ndarray:
        """Only the rows that predict tokens[first:] get logits (the output layer over a large
        vocabulary dominates small models)."""
        out = self._run_model(
            input_ids=self._ids([toks]), use_cache=False, logits_to_keep=len(toks) - first + 1
        )
        return self._np(out.logits[0, :-1])

    def _pad_id(self) -> int:
        pad = getattr(self._tok, "pad_token_id", None)
        return int(pad) if isinstance(pad, int) else 0

    def _tails(self, seqs: Sequence[list[int]], keep: Sequence[int]) -> list[np.ndarray]:
        """Logits of the last ``keep[i]`` positions of each sequence. Sequences sharing prefixes
        go as token trees (``tree_pack``: each distinct prefix evaluated once); a sequence past
        a sliding window goes plain, as the tree mask replaces the model's own, window included."""
        out: list[np.ndarray | None] = [None] * len(seqs)
        fits = [self._trees and (self._window is None or len(s) <= self._window) for s in seqs]
        if any(fits):
            lim = Limits(max_rows=self.batch_size, token_budget=_TOKEN_BUDGET, max_len=_TREE_LEN)
            try:
                for trees in plan(seqs, keep, lim, rows=[i for i, f in enumerate(fits) if f]):
                    self._tree_pass(trees, out)
            except BackendError as exc:
                if self._tree_passes:
                    raise
                # a model whose forward pass cannot take a 4D mask: plain rows from the start
                self.packing = f"plain rows (the tree mask failed: {exc})"
                fits = [False] * len(seqs)
        order = sorted((i for i, f in enumerate(fits) if not f), key=lambda i: seqs[i])
        batch: list[int] = []
        for i in order:
            wide = max([len(seqs[j]) for j in batch] + [len(seqs[i])])
            if batch and (
                len(batch) >= max(1, self.batch_size) or wide * (len(batch) + 1) > _TOKEN_BUDGET
            ):
                self._plain_pass(seqs, keep, batch, out)
                batch = []
            batch.append(i)
        if batch:
            self._plain_pass(seqs, keep, batch, out)
        return [o for o in out if o is not None]

    @property
    def _trees(self) -> bool:
        return self.reuse_prefix and self.batch_size > 1 and self.packing == TREES

    def _padded_forward(self, ids: Any, mask: Any, pos: Any, keep: int) -> Any:
        """Logits of the last ``keep`` columns of a padded batch, no cache kept."""
        return self._run_model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=pos.to(self.device),
            use_cache=False,
            logits_to_keep=keep,
        ).logits

    def _plain_pass(
        self, seqs: Sequence[list[int]], keep: Sequence[int], idx: list[int], out: list[Any]
    ) -> None:
        """Whole rows, left-padded, with positions counting real tokens only (a padded row sees
        what it would alone)."""
        torch = self._torch
        width = max(len(seqs[i]) for i in idx)
        ids = torch.full((len(idx), width), self._pad_id(), dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for j, i in enumerate(idx):
            ids[j, width - len(seqs[i]) :] = torch.tensor(seqs[i], dtype=torch.long)
            mask[j, width - len(seqs[i]) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        k = max(keep[i] for i in idx)
        logits = self._padded_forward(ids, mask, pos, k)
        for j, i in enumerate(idx):
            out[i] = self._np(logits[j, k - keep[i] :])

    def _tree_pass(self, trees: list[Tree], out: list[Any]) -> None:
        """Trees right-aligned in one forward pass: a 4D mask lets a node see its ancestors
        only, positions are depths, and a padding column sees itself (no empty softmax row)."""
        torch = self._torch
        width = max(len(t.tokens) for t in trees)
        ids = torch.full((len(trees), width), self._pad_id(), dtype=torch.long)
        pos = torch.zeros((len(trees), width), dtype=torch.long)
        allowed = np.zeros((len(trees), 1, width, width), dtype=bool)
        for b, t in enumerate(trees):
            off = width - len(t.tokens)
            ids[b, off:] = torch.tensor(t.tokens, dtype=torch.long)
            pos[b, off:] = torch.tensor(t.depth, dtype=torch.long)
            allowed[b, 0, off:, off:] = t.ancestors
            allowed[b, 0, np.arange(off), np.arange(off)] = True
        dtype = self._model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype)
        mask.masked_fill_(torch.from_numpy(~allowed), torch.finfo(dtype).min)
        k = max(t.n_scored for t in trees)
        logits = self._padded_forward(ids, mask, pos, k)
        self._tree_passes += 1
        for b, t in enumerate(trees):
            for r, cols in t.scored.items():
                out[r] = self._np(logits[b, [c - len(t.tokens) + k for c in cols]])

    # -- scoring ------------------------------------------------------------------------------
    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], candidates: Sequence[int]
    ) -> np.ndarray:
        cands = self._checked_candidates(candidates)
        toks = [self._checked(p, "next_token_logprobs") for p in prompts]
        out = np.empty((len(toks), len(cands)), dtype=np.float64)
        for i, logits in enumerate(self._tails(toks, [1] * len(toks))):
            check_finite(logits, self.runtime, "next_token_logprobs")
            out[i] = log_softmax(logits[-1])[cands]
        return out

    def loglikelihood(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[LoglikResult]:
        checked = self._checked_requests(requests)
        # a row ends before the continuation's last token: its logits would predict past the end
        seqs = [toks[:-1] for toks, _ in checked]
        conts = [toks[n:] for toks, n in checked]
        results: list[LoglikResult] = []
        for c, logits in zip(conts, self._tails(seqs, [len(c) for c in conts]), strict=True):
            check_finite(logits, self.runtime, "loglikelihood")
            lp = picked_logprobs(logits, c)
            greedy = bool(np.all(np.argmax(logits, axis=-1) == np.asarray(c)))
            results.append(LoglikResult(float(lp.sum()), len(c), greedy))
        return results

    # -- text ---------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return [int(t) for t in self._tok.encode(text, add_special_tokens=add_special)]

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode([int(i) for i in ids]))

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        tmpl, bos, eos = self._chat
        return render_chat(tmpl, system, user, bos_token=bos, eos_token=eos)

    def eos_ids(self) -> set[int]:
        return set(self._eos)

    def info(self) -> dict[str, object]:
        return {
            **super().info(),
            "device": self.device,
            "dtype": self.dtype,
            "dtype_source": self.dtype_source,
            "prompt_packing": self.packing,
            "versions": dict(self.versions),
        }

    def close(self) -> None:
        self._cache = None
        self._model = None
