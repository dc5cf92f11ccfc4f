"""Typed errors and exit codes.

Every user-facing failure is an ``EdgegateError`` with a one-line message that names the
file, the field or tensor, what was expected and what to do. The CLI turns it into the
exit code below and never prints a traceback for it.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    PASS = 0
    POLICY_FAILED = 1
    INPUT_ERROR = 2
    RUNTIME_ERROR = 3


class EdgegateError(Exception):
    """Base class; ``exit_code`` decides what the CLI returns."""

    exit_code: ExitCode = ExitCode.RUNTIME_ERROR

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.field = field
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [p for p in (self.path, self.field) if p]
        where = ": ".join(parts)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "type": type(self).__name__,
            "message": self.message,
            "path": self.path,
            "field": self.field,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
        }


class InputError(EdgegateError):
    """Bad user input: a file, flag, checkpoint or dataset we cannot accept (exit 2)."""

    exit_code = ExitCode.INPUT_ERROR


class CheckpointError(InputError):
    """A checkpoint that is corrupt, truncated, lying, unsafe (pickle) or mismatched."""


class PolicyError(InputError):
    """A policy file that does not validate."""


class DatasetError(InputError):
    """A BBQ or evaluation-text file we cannot use."""


class BackendError(EdgegateError):
    """A runtime failed, crashed, hung or produced garbage (exit 3)."""

    exit_code = ExitCode.RUNTIME_ERROR


class BackendUnavailable(BackendError):
    """The runtime is not installed; checks using it are skipped (or fail under --strict)."""

    def __init__(self, runtime: str, extra: str) -> None:
        super().__init__(
            f"runtime '{runtime}' is not installed",
            hint=f"install it with: pip install 'edgegate[{extra}]'",
        )
        self.runtime = runtime
        self.extra = extra
