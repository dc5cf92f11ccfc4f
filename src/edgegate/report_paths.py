"""Where reports may be written: refused before anything is measured when writing there would
lose data or cannot work.

A report path that equals another report's path keeps only the last report; one that equals
(or lies inside) an input overwrites the weights, policy or data the gate just judged; one
whose folder is a regular file, or that lies in a kernel pseudo-filesystem, fails only when
the report is written, after every check ran. Paths are compared after resolving symlinks
and ``..``, so two spellings of one file collide too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

# Kernel pseudo-filesystems: writing a "report" there changes kernel settings or fails late.
# /dev is left alone: /dev/stdout and /dev/null are common, deliberate report paths.
_PSEUDO = ("/proc", "/sys")


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def problems(
    outputs: Mapping[str, str | None], inputs: Mapping[str, str | Path | None]
) -> list[tuple[str, str]]:
    """``(flag, message)`` for every report destination in ``outputs`` (flag -> path; ``-``
    is stdout) that collides with another, with an input in ``inputs`` (role -> path, a
    file or folder), or cannot be a file."""
    out: list[tuple[str, str]] = []
    seen: dict[Path, str] = {}
    real_inputs = [
        (role, _real(p)) for role, p in inputs.items() if p is not None and os.path.lexists(p)
    ]
    for flag, dest in outputs.items():
        if not dest or dest == "-":
            continue
        real = _real(dest)
        if real in seen:
            out.append(
                (flag, f"{dest} is also the path of {seen[real]}; each report needs its own file")
            )
            continue
        seen[real] = flag
        hit = next(((role, p) for role, p in real_inputs if _inside(real, p)), None)
        if hit is not None:
            role, p = hit
            where = f"is the {role} input" if real == p else f"is inside the {role} input {p}"
            out.append(
                (
                    flag,
                    f"{dest} {where}: the report would overwrite what the gate reads; "
                    "choose a path outside the inputs",
                )
            )
            continue
        parent = real.parent
        # as written, not resolved: /dev/stdout resolves to /proc/self/fd/1 and is fine
        if any(_inside(Path(os.path.abspath(dest)), Path(root)) for root in _PSEUDO):
            out.append(
                (
                    flag,
                    f"{dest} is in {parent}, a kernel pseudo-filesystem, not a place for reports",
                )
            )
        elif parent.exists() and not parent.is_dir():
            out.append((flag, f"the folder of {dest} ({parent}) is a regular file, not a folder"))
    return out


def input_paths(
    dense: Path | None,
    compressed: Path | None,
    others: Iterable[tuple[str, str | Path | None]] = (),
) -> dict[str, str | Path | None]:
    """The inputs a run reads, by role, for ``problems``."""
    found: dict[str, str | Path | None] = {"dense": dense, "compressed": compressed}
    for role, p in others:
        if p is not None and not str(p).startswith("hf:"):
            found[role] = p
    return found


__all__ = ["input_paths", "problems"]
