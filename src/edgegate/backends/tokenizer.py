"""Is the compressed model's tokenizer the dense model's tokenizer?

Perplexity and BBQ feed one token stream (tokenized by the dense model) to both models; if the
tokenizers differ, those ids mean different text to the compressed model and every number
would be silently wrong. We compare behaviour, not files (a GGUF and an HF directory store the
same tokenizer differently): vocabulary size, BOS/EOS, and the ids of probe texts covering
whitespace, digits, punctuation, non-ASCII and the model's own special-token strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgegate.backends.base import Backend
from edgegate.errors import InputError

PROBES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing tabs\t\nand\r\nnewlines  ",
    "Numbers 0 7 42 1234567890 3.14159 -17 1e-5 and dates 2026-11-23.",
    "Punctuation: (a) [b] {c} <d> \"e\" 'f' ; : ! ? ... -- / \\ | @ # $ % ^ & * _ + = ~ `",
    "Ünïcödé: café naïve Straße 東京 Москва مرحبا 🙂 👍🏽",
    "def f(x):\n    return x ** 2  # code-like text\n",
    "A nurse and a construction worker were at the meeting. Who was late?",
)


@dataclass(frozen=True)
class TokenizerComparison:
    identical: bool
    n_vocab: tuple[int, int]
    probes: int
    mismatch: str | None = None  # first difference, human-readable


def compare_tokenizers(
    a: Backend, b: Backend, extra_texts: tuple[str, ...] = ()
) -> TokenizerComparison:
    """Compare two open backends' tokenizers on the probes (and ``extra_texts``, e.g. the start
    of the evaluation text)."""
    # 0: not reported (a model behind a server); the probes below still compare the tokenizers
    va, vb = int(a.n_vocab or 0), int(b.n_vocab or 0)
    texts = (*PROBES, *extra_texts)
    if va and vb and va != vb:
        return TokenizerComparison(False, (va, vb), 0, f"vocabulary sizes differ: {va} vs {vb}")
    for add_special in (True, False):
        for i, text in enumerate(texts):
            ta = a.tokenize(text, add_special=add_special)
            tb = b.tokenize(text, add_special=add_special)
            if ta != tb:
                pos = next(
                    (k for k, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y),
                    min(len(ta), len(tb)),
                )
                return TokenizerComparison(
                    False,
                    (va, vb),
                    i + 1,
                    f"probe {i + 1} ({'with' if add_special else 'without'} special tokens) "
                    f"differs at token {pos}: {ta[pos : pos + 4]} vs {tb[pos : pos + 4]}",
                )
    return TokenizerComparison(True, (va, vb), len(texts) * 2)


def require_same_tokenizer(
    dense: Backend, compressed: Backend, extra_texts: tuple[str, ...] = ()
) -> TokenizerComparison:
    """Raise ``InputError`` (exit 2) when the tokenizers differ."""
    cmp = compare_tokenizers(dense, compressed, extra_texts)
    if not cmp.identical:
        raise InputError(
            f"the compressed model's tokenizer differs from the dense model's ({cmp.mismatch})",
            path=compressed.model_path,
            field="tokenizer",
            hint="compare a compressed model with the dense model it was made from",
        )
    return cmp
