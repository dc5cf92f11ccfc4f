"""A FAKE, deterministic in-test Backend for the BBQ scoring logic (no tests in this file).

It is a fake on purpose: it lets the scoring/caching/resume tests control exactly which answer
a "model" prefers, which a real model cannot guarantee. Real-backend tests live in
test_bbq_e2e.py. Tokens are characters (id = code point, BOS = 1); the "model" reads the
option lines back out of the prompt and prefers options by a seeded hash of their text, plus
optional boosts (to make it biased) and a position bias (to make it prefer a letter).

Run as a script it scores items into a cache (used by the kill-and-resume test):
    python tests/test_bbq_fakebackend.py DATA CACHE LOG MODEL_FILE [DELAY_S]
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edgegate.backends.base import LoglikResult, Timing

BOS = 1
# the last option line may end in the chat template's closing tag (the options end the prompt)
_OPT = re.compile(r"^([ABC])\. (.*?)(?:\[ASSISTANT\])?$", re.M)


class FakeBackend:
    runtime = "fake"
    n_ctx = 100_000
    load_s = 0.0

    def __init__(
        self,
        model_path: Path,
        *,
        seed: int = 0,
        boost: Mapping[str, float] | None = None,
        position_bias: Mapping[str, float] | None = None,
        other_logit: float = -5.0,
        chat: bool = False,
        delay_s: float = 0.0,
        log: Path | None = None,
        garbage_every: int = 0,
    ) -> None:
        self.model_path = model_path
        self.seed = seed
        self.boost = dict(boost or {})
        self.position_bias = dict(position_bias or {})
        self.other_logit = other_logit
        self.chat = chat
        self.delay_s = delay_s
        self.log = log
        self.garbage_every = garbage_every
        self.calls = 0  # prompts seen
        self.generate_calls = 0

    # what the fake "model" thinks of an answer text (tests compute expectations with it)
    def preference(self, text: str) -> float:
        h = int(hashlib.sha256(f"{self.seed}:{text}".encode()).hexdigest(), 16)
        return (h % 1000) / 1000.0 * 2.0 + self.boost.get(text, 0.0)

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        ids = [ord(c) for c in text]
        return [BOS, *ids] if add_special else ids

    def detokenize(self, ids: Sequence[int]) -> str:
        return "".join(chr(i) for i in ids if i != BOS)

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        return f"[SYS]{system}[USER]{user}[ASSISTANT]" if self.chat else None

    def _letter_logits(self, text: str) -> dict[str, float]:
        opts = dict(_OPT.findall(text))
        return {k: self.preference(v) + self.position_bias.get(k, 0.0) for k, v in opts.items()}

    def _tick(self, text: str) -> None:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.log is not None:
            with self.log.open("a") as fh:
                fh.write(text.replace("\n", " ")[-60:] + "\n")

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], candidates: Sequence[int]
    ) -> np.ndarray:
        out = np.full((len(prompts), len(candidates)), -math.inf)
        for i, p in enumerate(prompts):
            text = self.detokenize(p)
            self._tick(text)
            logits = self._letter_logits(text)
            z = math.log(sum(math.exp(v) for v in logits.values()) + math.exp(self.other_logit))
            for j, c in enumerate(candidates):
                letter = chr(c)
                if letter in logits:
                    out[i, j] = logits[letter] - z
        return out

    def loglikelihood(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[LoglikResult]:
        res = []
        for ctx, cont in requests:
            self._tick(self.detokenize(ctx))
            text = self.detokenize(cont).strip()
            res.append(LoglikResult(-3.0 + self.preference(text), len(cont), False))
        return res

    def generate(
        self, prompt: Sequence[int], max_tokens: int, *, temperature: float = 0.0, seed: int = 0
    ) -> list[int]:
        self.generate_calls += 1
        text = self.detokenize(prompt)
        self._tick(text)
        if self.garbage_every and self.generate_calls % self.garbage_every == 0:
            return self.tokenize("I think so", add_special=False)
        logits = self._letter_logits(text)
        letters = sorted(logits)
        w = np.array([logits[k] / max(temperature, 1e-6) for k in letters])
        p = np.exp(w - w.max())
        p /= p.sum()
        h = int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest(), 16) % (2**32)
        pick = letters[int(np.random.default_rng(h).choice(len(letters), p=p))]
        return self.tokenize(f" {pick}.", add_special=False)[:max_tokens]

    def token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        return np.zeros(max(0, len(tokens) - 1))

    def time_run(self, prompt: Sequence[int], gen_tokens: int) -> Timing:
        return Timing(len(prompt), gen_tokens, 0.0, 0.0, 0.0)

    def close(self) -> None:
        pass


def main(argv: list[str]) -> None:
    from edgegate.bbq.cache import ResultCache
    from edgegate.bbq.dataset import load_dir
    from edgegate.bbq.scoring import ScoreConfig, Scorer

    data, cache_path, log, model = (Path(a) for a in argv[:4])
    delay = float(argv[4]) if len(argv) > 4 else 0.0
    items = load_dir(data, condition="both")
    backend = FakeBackend(model, delay_s=delay, log=log)
    cache = ResultCache(cache_path)
    Scorer(backend, ScoreConfig(batch_size=4), cache=cache).score(items)
    cache.close()


if __name__ == "__main__":
    main(sys.argv[1:])
