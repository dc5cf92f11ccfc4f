"""Per-chunk NLLs of a model on a text, kept in the result cache so a model is scored once.

The dense model of a study, or of a CI that gates many compressed models against one dense
model, is the same file every time: its perplexity pass is the same arithmetic on the same
tokens. Its per-token NLLs are kept per chunk in the result cache's SQLite file (the file
edgegate's GitHub Action keeps between runs), keyed by

- the model file's sha256 (the answer cache's digest, memoised by file identity),
- the runtime, its thread count and the installed library versions (a different llama.cpp
  build or thread count may round differently: a new key, never a stale number),
- the chunking: n_ctx, mode, the first scored position and the sha256 of the chunks' tokens.

Only local model files are kept (a server has no file to hash). The perplexity-only pass uses
it; the fidelity pass needs the dense model's whole distributions and always scores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from edgegate.bbq.cache import ResultCache

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk_nll (
  model TEXT NOT NULL, setting TEXT NOT NULL, chunk INTEGER NOT NULL, nll BLOB NOT NULL,
  PRIMARY KEY (model, setting, chunk)
);
"""


def setting_key(runtime: str, threads: int | None, chunking: Mapping[str, Any]) -> str:
    """Everything besides the model that decides the numbers."""
    from edgegate import __version__
    from edgegate.environment import library_versions

    ident = {
        "runtime": runtime,
        "threads": threads,
        "chunking": dict(chunking),
        "libraries": library_versions(),
        "edgegate": __version__,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


class NLLCache:
    def __init__(self, cache: ResultCache) -> None:
        self.cache = cache
        with cache.db:
            cache.db.executescript(_SCHEMA)

    def get(self, model: str, setting: str, chunks: Iterable[int]) -> dict[int, np.ndarray]:
        wanted = set(chunks)
        rows = self.cache.db.execute(
            "SELECT chunk, nll FROM chunk_nll WHERE model=? AND setting=?", (model, setting)
        )
        return {
            int(k): np.frombuffer(blob, dtype="<f8").copy() for k, blob in rows if int(k) in wanted
        }

    def put(self, model: str, setting: str, chunk: int, nll: np.ndarray) -> None:
        with self.cache.db:
            self.cache.db.execute(
                "INSERT OR REPLACE INTO chunk_nll VALUES (?, ?, ?, ?)",
                (model, setting, int(chunk), np.asarray(nll, dtype="<f8").tobytes()),
            )
