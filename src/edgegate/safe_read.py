"""Reading a user's file without hanging or exhausting memory.

A FIFO where a policy, a BBQ file or a text is expected blocks ``open`` and ``read`` forever;
``/dev/zero`` is endless, so a size cap applied after ``read()`` comes too late. Here the
file must be a regular file (checked on the path, then again on the open descriptor, which
is opened non-blocking so a FIFO swapped in between cannot block), and no more than the cap
plus one byte is ever read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

from edgegate.errors import InputError


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _open_fd(
    path: str | Path,
    *,
    max_bytes: int,
    what: str,
    error: type[InputError] = InputError,
    field: str | None = None,
    hint: str | None = None,
) -> int:
    """A descriptor of ``path`` once it is known to be a regular file of at most
    ``max_bytes``; an ``error`` naming the file otherwise."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"no such {what}", path=p, field=field, hint=hint) from None
    except OSError as e:
        raise error(
            f"cannot read the {what}: {e.strerror or type(e).__name__}",
            path=p,
            field=field,
            hint=hint,
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise error(
            f"is {_kind(st.st_mode)}, not a regular file; expected a {what}",
            path=p,
            field=field,
            hint=hint or f"pass the {what} itself",
        )
    if st.st_size > max_bytes:
        raise error(
            f"{what} is {st.st_size} bytes, more than the {max_bytes}-byte cap",
            path=p,
            field=field,
            hint=hint,
        )
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise error(
            f"cannot read the {what}: {e.strerror or type(e).__name__}",
            path=p,
            field=field,
            hint=hint,
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between stat and open
        os.close(fd)
        raise error(f"is not a regular file; expected a {what}", path=p, field=field, hint=hint)
    return fd


def open_regular(
    path: str | Path,
    *,
    max_bytes: int,
    what: str,
    error: type[InputError] = InputError,
    field: str | None = None,
    hint: str | None = None,
) -> IO[bytes]:
    """``path`` opened for reading in binary once it is a regular file of at most ``max_bytes``."""
    return open(
        _open_fd(path, max_bytes=max_bytes, what=what, error=error, field=field, hint=hint), "rb"
    )


def open_text(
    path: str | Path,
    *,
    max_bytes: int,
    what: str,
    error: type[InputError] = InputError,
    field: str | None = None,
    hint: str | None = None,
) -> IO[str]:
    """``open_regular`` as UTF-8 text (decoding errors surface while reading)."""
    fd = _open_fd(path, max_bytes=max_bytes, what=what, error=error, field=field, hint=hint)
    return open(fd, encoding="utf-8")


def read_regular(
    path: str | Path,
    *,
    max_bytes: int,
    what: str,
    error: type[InputError] = InputError,
    field: str | None = None,
    hint: str | None = None,
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (never more read than that)."""
    p = Path(path)
    with open_regular(p, max_bytes=max_bytes, what=what, error=error, field=field, hint=hint) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise error(
                f"cannot read the {what}: {e.strerror or type(e).__name__}",
                path=p,
                field=field,
                hint=hint,
            ) from None
    if len(data) > max_bytes:  # it grew after the size check
        raise error(f"{what} is more than the {max_bytes}-byte cap", path=p, field=field, hint=hint)
    return data


def read_text(
    path: str | Path,
    *,
    max_bytes: int,
    what: str,
    error: type[InputError] = InputError,
    field: str | None = None,
    hint: str | None = None,
) -> str:
    """``read_regular`` decoded as UTF-8; a non-UTF-8 file is an ``error`` too."""
    data = read_regular(path, max_bytes=max_bytes, what=what, error=error, field=field, hint=hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(
            f"{what} is not UTF-8 text",
            path=Path(path),
            field=field,
            hint=hint or "save it as UTF-8",
        ) from None


__all__ = ["open_regular", "open_text", "read_regular", "read_text"]
