"""Typed run settings: what the command-line flags (and library callers) decide for a run,
as a frozen value instead of a free-form dict, plus where things are cached.

``RunSettings`` is built once by ``edgegate check`` (or a test) and read by every check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

Shard = tuple[int, int]  # (i, n) of --shard i/n, 1 <= i <= n

DEFAULT_BACKEND_TIMEOUT = (
    1800.0  # seconds per runtime call (model load included) before the child is killed
)


def default_cache_dir() -> Path:
    """$EDGEGATE_CACHE, else $XDG_CACHE_HOME/edgegate, else ~/.cache/edgegate."""
    if os.environ.get("EDGEGATE_CACHE"):
        return Path(os.environ["EDGEGATE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgegate"


class SettingsFingerprint(TypedDict, total=False):
    """The settings that can change a result, those set (``RunSettings.fingerprint``)."""

    bbq_data: str  # a hub dataset (hf:NAME); local data is identified by its files' sha256s
    runtimes: list[str]
    seed: int


@dataclass(frozen=True)
class RunSettings:
    """Flags that change how checks run; ``None`` means "as the policy says"."""

    runtimes: tuple[str, ...] | None = None  # --runtime (speed check)
    threads: int | None = None  # --threads
    workers: int | None = None  # --workers: processes per model scoring BBQ (None: auto)
    bbq_data: str | None = None  # --bbq-data (a directory or hf:NAME)
    seed: int | None = None  # --seed
    cache_dir: str | None = None  # --cache-dir
    dense_endpoint: str | None = None  # --dense-endpoint URL
    compressed_endpoint: str | None = None  # --compressed-endpoint URL
    backend_timeout: float = DEFAULT_BACKEND_TIMEOUT  # per runtime call, in the child process

    @property
    def endpoints(self) -> bool:
        """Both models are behind servers (the runtime checks then score those)."""
        return bool(self.dense_endpoint and self.compressed_endpoint)

    def fingerprint(self) -> SettingsFingerprint:
        """The settings that can change a result (shards of one run must agree on them):
        where files lie, how many threads and how long to wait change none. Keys in sorted
        order."""
        out: SettingsFingerprint = {}
        # a local data set is identified by its files' sha256s in the inputs, not here
        if self.bbq_data is not None and self.bbq_data.startswith("hf:"):
            out["bbq_data"] = self.bbq_data
        if self.runtimes is not None:
            out["runtimes"] = list(self.runtimes)
        if self.seed is not None:
            out["seed"] = self.seed
        return out
