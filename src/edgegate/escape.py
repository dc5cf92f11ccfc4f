"""Untrusted text, escaped for the place it is written to: the one module every sink uses.

Tensor names, folder names, config.json fields, BBQ categories and a policy's ``name:`` come
from files an attacker may have written. Raw, they rewrite a reviewer's terminal (ESC/OSC
sequences), forge GitHub Actions workflow commands in a CI log (a newline, then ``::error``),
break rich's markup parser, inject Markdown or HTML into a report, make JUnit XML
ill-formed, and (a non-UTF-8 file name arrives as lone surrogates) crash every UTF-8 writer.

``printable`` is the common core: every character that can move the cursor, end a line,
start an escape sequence, reorder text (bidi controls) or fail to encode is shown as a
visible escape (``\\x1b``, ``\\n``, ``\\u202e``; a byte of a non-UTF-8 name as ``\\xff``).
Each sink adds its own syntax on top:

=============  ===================================================================
``terminal``   printable + no workflow command (every ``::`` broken; ``##[`` everywhere)
``markup``     terminal + rich's ``[`` escaped (for ``Console.print`` with markup)
``markdown``   printable + Markdown/HTML punctuation escaped, one line
``html``       printable + ``& < > " '`` as entities
``xml``        printable (only characters XML 1.0 allows remain); ElementTree adds
               the entities itself
``json_safe``  printable applied to every string (keys too) of a JSON-able value
=============  ===================================================================
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

# C0 and C1 controls, DEL, line/paragraph separators, bidi embeddings/overrides/isolates and
# marks (text that displays in another order than it reads), BOM/zero-width no-break, the
# XML-forbidden non-characters, and all surrogates (lone ones cannot be encoded as UTF-8).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufffe\uffff\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


# GitHub Actions runs a log line as a command when, after leading blanks, it starts with
# "::" (v2 syntax), or when it contains "##[" (v1 syntax, matched anywhere in the line). Any
# report may end up in a log (``--json-out -``, ``cat report.xml``), so every sink breaks "##[".
# On a terminal every "::" is broken, not only a leading one: rich wraps long lines at
# spaces, and "a ::error::x" can wrap so that "::error::x" starts a line.
_WORKFLOW_V1 = "##["
_WORKFLOW_V2 = re.compile(":(?=:)")


def printable(value: object) -> str:
    """``value`` as text with every control, bidi, separator and unencodable character shown
    as a visible escape, and no v1 workflow command; always one line, always encodable as
    UTF-8."""
    text = _UNSAFE.sub(_visible, value if isinstance(value, str) else str(value))
    return text.replace(_WORKFLOW_V1, "#\\#[")


def terminal(value: object) -> str:
    """For stdout/stderr and CI logs: printable, and unable to start a workflow command."""
    return _WORKFLOW_V2.sub(":\\\\", printable(value))


def markup(value: object) -> str:
    """For rich ``Console.print`` with markup on: ``terminal`` with rich's tags escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(terminal(value))


# What CommonMark/GFM treats as syntax inside a line (emphasis, code spans, links and images,
# table pipes, strikethrough), plus the HTML specials; line-start syntax (#, -, 1.) cannot
# occur since the text never starts a line of its own. An underscore inside a word
# (q_proj) is not emphasis in GFM and stays readable.
_MD_SPECIAL = re.compile(r"([\\`*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_MD_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def markdown(value: object) -> str:
    """For a Markdown document (a table cell, a list item, GitHub's job summary): one line,
    no emphasis, links, images, code spans, table pipes or raw HTML from the data."""
    text = _MD_SPECIAL.sub(r"\\\1", printable(value))
    return "".join(_MD_ENTITY.get(c, c) for c in text)


def html(value: object) -> str:
    """For HTML text and quoted attribute values."""
    return _html.escape(printable(value), quote=True)


def xml(value: object, *, multiline: bool = False) -> str:
    """For ElementTree text and attributes: only characters XML 1.0 allows (ElementTree
    escapes ``& < > "`` itself; it does not refuse control characters, so a report with
    them would be ill-formed). ``multiline`` keeps line breaks, for element text; each line
    is then made safe as a log line too (``--junit-out -`` prints it)."""
    text = value if isinstance(value, str) else str(value)
    if multiline:
        return "\n".join(terminal(line) for line in text.split("\n"))
    return terminal(text)


def json_safe(value: Any) -> Any:
    """A JSON-able value with every string in it (keys too) made ``printable``: a strict
    JSON parser refuses lone surrogates, and a consumer printing a field must not be handed
    an escape sequence."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {json_safe(k) if isinstance(k, str) else k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


__all__ = ["html", "json_safe", "markdown", "markup", "printable", "terminal", "xml"]
