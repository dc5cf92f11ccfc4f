"""Timeout and retries for requests to servers: flag > environment > default, set for one
command at a time by ``http_settings``."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

from edgegate.errors import InputError


@dataclass(frozen=True)
class HttpSettings:
    """Per-request timeout and retries for servers (the openai runtime). Defaults 60 s and 5
    retries, or EDGEGATE_HTTP_TIMEOUT / EDGEGATE_HTTP_MAX_RETRIES; the --timeout and
    --max-retries flags of check, bbq run and ppl win over both. A hung server then costs
    (max_retries + 1) x timeout plus backoff, not a fixed 6 x 60 s."""

    timeout_s: float = 60.0
    max_retries: int = 5

    @classmethod
    def from_env(cls) -> HttpSettings:
        t, r = os.environ.get("EDGEGATE_HTTP_TIMEOUT"), os.environ.get("EDGEGATE_HTTP_MAX_RETRIES")
        try:
            timeout = float(t) if t else cls.timeout_s
            retries = int(r) if r else cls.max_retries
        except ValueError:
            raise InputError(
                f"EDGEGATE_HTTP_TIMEOUT={t!r:.40} / EDGEGATE_HTTP_MAX_RETRIES={r!r:.40} are not numbers",
                field="environment",
            ) from None
        return cls(timeout, retries).checked("environment")

    def checked(self, field: str) -> HttpSettings:
        if (
            not (math.isfinite(self.timeout_s) and self.timeout_s > 0)
            or not 0 <= self.max_retries <= 100
        ):
            raise InputError(
                f"timeout must be > 0 s and max retries 0..100, got {self.timeout_s:g} s and "
                f"{self.max_retries}",
                field=field,
            )
        return self


_settings: HttpSettings | None = None  # set for one command by ``http_settings``


def current_http_settings() -> HttpSettings:
    return _settings if _settings is not None else HttpSettings.from_env()


@contextlib.contextmanager
def http_settings(
    timeout_s: float | None = None, max_retries: int | None = None
) -> Iterator[HttpSettings]:
    """Within the block, servers opened without explicit values use these (flag > env > default)."""
    global _settings
    base = current_http_settings()
    new = HttpSettings(
        base.timeout_s if timeout_s is None else float(timeout_s),
        base.max_retries if max_retries is None else int(max_retries),
    ).checked("--timeout/--max-retries")
    previous, _settings = _settings, new
    try:
        yield new
    finally:
        _settings = previous
