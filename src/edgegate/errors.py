"""Typed errors and exit codes.

Every user-facing failure is an ``EdgegateError`` with a one-line message that names the
file, the field or tensor, what was expected and what to do. The CLI turns it into the
exit code below and never prints a traceback for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TypedDict

# A message is one line a person reads: hostile input (a 10 MB policy string, a huge JSON
# value) must not be echoed whole. Values are quoted through ``excerpt``; the parts of an
# error are capped again here as a last line of defence.
MAX_MESSAGE_CHARS = 400
MAX_PART_CHARS = 240  # path, field, hint


def excerpt(value: object, limit: int = 60, *, quote: bool = True) -> str:
    """A short, escaped rendering of ``value`` for an error message: ``repr``-style for
    strings (control characters escaped), cut in the middle with the full length noted."""
    text = repr(value) if quote else str(value)
    if not quote:
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    if len(text) <= limit:
        return text
    head = max(8, limit * 2 // 3)
    tail = max(4, limit - head - 1)
    n = len(value) if isinstance(value, str) else len(text)
    return f"{text[:head]}…{text[-tail:]} ({n} chars)"


def _cap(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return excerpt(text, limit, quote=False)


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
        self.message = _cap(message, MAX_MESSAGE_CHARS) or ""
        self.path = _cap(str(path), MAX_PART_CHARS) if path is not None else None
        self.field = _cap(field, MAX_PART_CHARS)
        self.hint = _cap(hint, MAX_PART_CHARS)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [p for p in (self.path, self.field) if p]
        where = ": ".join(parts)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def record(self) -> ErrorRecord:
        return ErrorRecord(
            type(self).__name__, self.message, self.path, self.field, self.hint, self.exit_code
        )

    def to_dict(self) -> ErrorEntry:
        return self.record().to_dict()


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


# The exit codes an error can carry: 0 and 1 are a gate's verdicts, never an error's.
_ERROR_CODES = (ExitCode.INPUT_ERROR, ExitCode.RUNTIME_ERROR)


class ErrorEntry(TypedDict, total=False):
    """Why a check errored or was skipped (errors.ErrorRecord); ``exit_code`` only when set."""

    type: str
    message: str
    path: str | None
    field: str | None
    hint: str | None
    exit_code: int


@dataclass(frozen=True)
class ErrorRecord:
    """Why a check errored or did not run, as a report and a partial file hold it.

    ``exit_code`` is None for a record that is not an error of its own (fail-fast's "not
    run"): its JSON then has no ``exit_code`` key, and ``code`` reads it as a runtime error.
    """

    type: str
    message: str
    path: str | None = None
    field: str | None = None
    hint: str | None = None
    exit_code: ExitCode | None = None

    @property
    def code(self) -> ExitCode:
        return ExitCode.RUNTIME_ERROR if self.exit_code is None else self.exit_code

    def to_dict(self) -> ErrorEntry:
        d: ErrorEntry = {
            "type": self.type,
            "message": self.message,
            "path": self.path,
            "field": self.field,
            "hint": self.hint,
        }
        if self.exit_code is not None:
            d["exit_code"] = int(self.exit_code)
        return d

    @staticmethod
    def from_dict(
        d: object, *, path: str | Path | None = None, field: str = "error"
    ) -> ErrorRecord:
        """Inverse of ``to_dict`` for a record read back from a file (``path``; ``field``
        names the record in it). A malformed record is an InputError naming the key."""
        hint = "pass files written by this edgegate, unedited"
        if not isinstance(d, Mapping):
            raise InputError(
                f"expected an error record (an object), got {excerpt(d)}",
                path=path,
                field=field,
                hint=hint,
            )
        for key in ("type", "message"):
            if not isinstance(d.get(key), str):
                what = "missing" if key not in d else f"not a string: {excerpt(d[key])}"
                raise InputError(what, path=path, field=f"{field}.{key}", hint=hint)
        for key in ("path", "field", "hint"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise InputError(
                    f"expected a string or null, got {excerpt(d[key])}",
                    path=path,
                    field=f"{field}.{key}",
                    hint=hint,
                )
        code = d.get("exit_code")
        if code is not None and (type(code) is not int or code not in _ERROR_CODES):
            raise InputError(
                f"expected {' or '.join(str(int(c)) for c in _ERROR_CODES)}, got {excerpt(code)}",
                path=path,
                field=f"{field}.exit_code",
                hint=hint,
            )
        return ErrorRecord(
            d["type"],
            d["message"],
            d.get("path"),
            d.get("field"),
            d.get("hint"),
            None if code is None else ExitCode(code),
        )
