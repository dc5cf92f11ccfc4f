"""``open_pair``: the one way a check opens the dense and the compressed model.

Both models are opened on the same runtime with the same settings, each local runtime in
its own child process with a deadline on every call (a crash or hang becomes a
``BackendError``; each model's peak RSS is its own), lazily: a model whose answers are all
cached is never loaded. Models behind a server (``openai``) use their HTTP client's timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgegate.backends import open_backend
from edgegate.backends.base import Backend
from edgegate.settings import DEFAULT_BACKEND_TIMEOUT

ROLES = ("dense", "compressed")


@dataclass(frozen=True)
class OpenSettings:
    n_ctx: int = 2048
    threads: int | None = None
    seed: int = 0
    cache_dir: str | Path | None = None
    timeout: float = DEFAULT_BACKEND_TIMEOUT  # seconds per call, model load included
    cpus: tuple[int, ...] | None = None  # pin both child processes to these CPUs


class ModelPair:
    """The dense and the compressed model of one comparison, opened on first use."""

    def __init__(
        self, runtime: str, paths: tuple[str | Path, str | Path], settings: OpenSettings
    ) -> None:
        self.runtime = runtime
        self.paths = dict(zip(ROLES, paths, strict=True))
        self.settings = settings
        self._open: dict[str, Backend] = {}

    def open(self, role: str, *, n_ctx: int | None = None) -> Backend:
        """The model of ``role`` ("dense" or "compressed"); ``n_ctx`` overrides the pair's
        context for this model (BBQ fits the window to what the model was trained on)."""
        if role not in self._open:
            self._open[role] = self.open_another(role, n_ctx=n_ctx)
        return self._open[role]

    def open_another(self, role: str, *, n_ctx: int | None = None) -> Backend:
        """A further process of the model of ``role``, with the same settings; the caller
        closes it (BBQ scores one model on several processes where the cores allow)."""
        s = self.settings
        return open_backend(
            self.runtime,
            self.paths[role],
            threads=s.threads,
            n_ctx=n_ctx or s.n_ctx,
            seed=s.seed,
            cache_dir=s.cache_dir,
            timeout=s.timeout,
            isolate=True,
            cpus=s.cpus,
        )

    @property
    def dense(self) -> Backend:
        return self.open("dense")

    @property
    def compressed(self) -> Backend:
        return self.open("compressed")

    def close(self, role: str | None = None) -> None:
        """Close one model (its memory is freed before the other is loaded) or both."""
        for r in (role,) if role else tuple(self._open):
            be = self._open.pop(r, None)
            if be is not None:
                be.close()


@contextmanager
def open_pair(
    runtime: str, paths: tuple[str | Path, str | Path], settings: OpenSettings
) -> Iterator[ModelPair]:
    """Both models of a comparison on ``runtime``; closed (their processes ended) on exit."""
    pair = ModelPair(runtime, paths, settings)
    try:
        yield pair
    finally:
        pair.close()


def trained_context(*paths: str | Path) -> int | None:
    """The smallest trained context (``max_position_embeddings`` from the config or GGUF
    header) of the given checkpoints, or None when none says (URLs, unreadable files)."""
    from edgegate.checkpoint import open_checkpoint

    found: list[int] = []
    for p in paths:
        if isinstance(p, str) and "://" in p:
            continue
        try:
            with open_checkpoint(p) as ck:
                v = (ck.config or {}).get("max_position_embeddings")
        except Exception:  # the backend reports unreadable models itself, with its own cause
            continue
        if isinstance(v, int) and v > 0:
            found.append(v)
    return min(found) if found else None
