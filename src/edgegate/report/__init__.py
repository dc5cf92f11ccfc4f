"""Report formats, pluggable like pip-audit's: each module has ``render(gate) -> str``.

``FORMATS`` maps a format name to its module; ``write_report`` renders and writes one file.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from edgegate.errors import InputError

FORMATS: dict[str, str] = {
    "json": "edgegate.report.json_report",
    "markdown": "edgegate.report.markdown",
    "html": "edgegate.report.html",
    "junit": "edgegate.report.junit",
}


def render(fmt: str, gate: object) -> str:
    if fmt not in FORMATS:
        raise InputError(f"unknown report format '{fmt}'", hint=f"formats: {', '.join(FORMATS)}")
    module = importlib.import_module(FORMATS[fmt])
    text: str = module.render(gate)
    return text


def write_report(fmt: str, gate: object, path: str | Path) -> Path:
    out = Path(path)
    text = render(fmt, gate)
    try:
        if out.parent and not out.parent.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"cannot write {fmt} report: {exc.strerror}", path=out, hint="choose a writable path"
        ) from exc
    return out
