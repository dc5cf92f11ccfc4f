"""Runtime-independent pieces every backend shares: log-softmax, sampling, sanity checks,
chat-template rendering and the process peak-RSS reading.

Keeping these in one place means llama.cpp, MLX and ONNX Runtime differ only in how they
produce logits, so their results are comparable by construction.
"""

from __future__ import annotations

import functools
import resource
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.errors import BackendError, InputError


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (logits may be float16/32 from the runtime)."""
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def check_finite(logits: np.ndarray, runtime: str, what: str) -> None:
    """NaN/inf logits mean a broken model or runtime: never let them become a number."""
    if not np.all(np.isfinite(logits)):
        bad = int(np.size(logits) - np.count_nonzero(np.isfinite(logits)))
        raise BackendError(
            f"{runtime} returned {bad} non-finite logits during {what}",
            hint="the checkpoint or its conversion is broken (NaN/inf weights?)",
        )


# rows per block when only a few entries of each row are wanted: a block's float64 copy stays a
# few MB at Gemma's 262k vocabulary, where a whole chunk's would be gigabytes of fresh pages
_PICK_ROWS = 16


def picked_logprobs(logits: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """log p(targets[i]) under row i of ``logits`` (rows = positions). The same float64 arithmetic
    as ``log_softmax`` row by row (so the same bits), a block of rows at a time."""
    t = np.asarray(targets, dtype=np.int64)
    out = np.empty(len(t), dtype=np.float64)
    for a in range(0, len(t), _PICK_ROWS):
        b = min(len(t), a + _PICK_ROWS)
        z = np.array(logits[a:b], dtype=np.float64)
        z -= np.max(z, axis=-1, keepdims=True)
        picked = z[np.arange(b - a), t[a:b]]
        np.exp(z, out=z)
        out[a:b] = picked - np.log(np.sum(z, axis=-1))
    return out


def pick_token(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Greedy at temperature 0, else softmax sampling with our own seeded RNG so every
    runtime samples identically from identical logits."""
    x = np.asarray(logits, dtype=np.float64)
    if temperature <= 0.0:
        return int(np.argmax(x))
    p = np.exp(log_softmax(x / temperature))
    return int(rng.choice(len(p), p=p / p.sum()))


def check_context(n_tokens: int, n_ctx: int, runtime: str, what: str) -> None:
    if n_tokens > n_ctx:
        raise InputError(
            f"{what} needs {n_tokens} tokens but the {runtime} context holds {n_ctx}",
            field="n_ctx",
            hint="raise --n-ctx (up to the model's trained context) or shorten the input",
        )


def check_tokens(tokens: Sequence[int], n_vocab: int, runtime: str) -> None:
    if len(tokens) and (min(tokens) < 0 or max(tokens) >= n_vocab):
        raise InputError(
            f"token id out of range for the {runtime} model (vocabulary {n_vocab})",
            field="tokens",
            hint="tokens must come from this model's tokenizer",
        )


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    """Compiling a chat template costs milliseconds (more than a small model's prefill):
    BBQ renders one prompt per item, so compile each template once."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def render_chat(
    template: str | None,
    system: str | None,
    user: str,
    *,
    bos_token: str = "",
    eos_token: str = "",
) -> str | None:
    """Apply a Jinja chat template in a sandbox (templates come from checkpoints: never let
    them reach Python objects). Returns None without a template."""
    if not template:
        return None
    from jinja2.exceptions import TemplateError

    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user})
    try:
        return _compiled(template).render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except TemplateError as exc:
        if system:  # some templates (Gemma) refuse a system role: fold it into the user turn
            return render_chat(
                template, None, f"{system}\n\n{user}", bos_token=bos_token, eos_token=eos_token
            )
        raise BackendError(f"chat template failed: {exc}") from exc


def read_json(path: Path) -> dict[str, Any]:
    from edgegate import safe_json  # one loader for user JSON: depth/size guard, file named

    data: dict[str, Any] = safe_json.load(path, error=InputError)
    return data


def hf_chat_template(model_dir: Path) -> tuple[str | None, str, str]:
    """(chat_template, bos_token, eos_token) from an HF directory's tokenizer_config.json
    (or chat_template.jinja beside it)."""
    cfg_path = model_dir / "tokenizer_config.json"
    cfg = read_json(cfg_path) if cfg_path.is_file() else {}
    tmpl = cfg.get("chat_template")
    jinja = model_dir / "chat_template.jinja"
    if not tmpl and jinja.is_file():
        tmpl = jinja.read_text(encoding="utf-8")
    if isinstance(tmpl, list):  # named templates: take the default one
        tmpl = next((t.get("template") for t in tmpl if t.get("name") == "default"), None)

    def tok(key: str) -> str:
        v = cfg.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        return v if isinstance(v, str) else ""

    return (tmpl if isinstance(tmpl, str) else None), tok("bos_token"), tok("eos_token")
