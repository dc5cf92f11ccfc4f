"""Untrusted text reaches every sink escaped (issue 22).

Tensor names, a model folder's name, config fields and a policy's ``name:`` are written by
whoever built the checkpoint or the policy. The same hostile strings are fed to every sink:
the terminal summary and the errors on stderr (a CI log), ``scan --per-tensor`` on stdout,
and the JSON, Markdown, HTML and JUnit reports plus GitHub's job summary. Each must come out
without control bytes (ESC/OSC sequences rewrite a terminal), without a line a GitHub runner
would execute as a workflow command (``::error …`` after a newline; ``##[…]``), without rich
markup crashing the printer, without HTML/Markdown injected into a report, well-formed (XML,
JSON) and writable as UTF-8 (a non-UTF-8 folder name arrives as lone surrogates).

The checkpoints are real safetensors files (written by the safetensors library) in folders
with hostile names; the gate runs through the real CLI in a subprocess.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from edgegate import escape

ESC_OSC = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"
WORKFLOW = "x\n::error file=a.py,line=1::forged\r\n##[warning]v1 forged ::notice::mid"
MARKUP = "[/x][bold]b[/bold][link=http://e]l[/link]"
HTML_MD = (
    "<img src=x onerror=alert(1)><script>alert(2)</script>|`code`*em*_u_ [l](http://e) ~~s~~ &amp;"
)
XML_BAD = "\x00\x01\x08\x0b\x0c\x1f\x7f\x85\x9b31m\ufffe"
BIDI = "\u202eevil\u2066\u2028\u2029\ufeff"
NASTY = [
    ESC_OSC,
    WORKFLOW,
    MARKUP,
    HTML_MD,
    XML_BAD,
    BIDI,
    "a\udcffb",
]  # the last: a non-UTF-8 byte
ALL = "".join(NASTY)

# a folder name may hold anything but "/" and NUL; bytes that are not UTF-8 are legal on Linux
FOLDER = os.fsdecode(b"comp\n::error::folder\x1b[2J[bold]<b>|\xff\xfe")  # no "/": a separator


def _control(text: str) -> list[str]:
    """Characters that must never reach a sink raw (newlines are checked separately)."""
    return [
        c
        for c in text
        if (ord(c) < 32 and c not in "\n")
        or 0x7F <= ord(c) <= 0x9F
        or c in "\u202e\u2066\u2028\u2029\ufeff"
        or 0xD800 <= ord(c) <= 0xDFFF
    ]


def _workflow_lines(text: str) -> list[str]:
    """Lines a GitHub Actions runner would parse as a workflow command."""
    return [
        line
        for line in re.split(r"\r\n|\r|\n", text)
        if line.lstrip().startswith("::") or "##[" in line
    ]


def _assert_log_safe(text: str, what: str) -> None:
    assert _control(text) == [], f"{what}: raw control characters {_control(text)[:5]}"
    assert _workflow_lines(text) == [], (
        f"{what}: workflow-command lines {_workflow_lines(text)[:3]}"
    )


# ------------------------------------------------------------------ the module, sink by sink


@pytest.mark.parametrize("value", [*NASTY, ALL])
def test_every_escape_is_safe_for_its_sink(value: str) -> None:
    from rich.console import Console
    from rich.text import Text

    for fn in (escape.printable, escape.terminal, escape.markdown, escape.html, escape.xml):
        out = fn(value)
        assert "\n" not in out and "\r" not in out
        assert _control(out) == []
        out.encode("utf-8")  # strict: no lone surrogates left
    _assert_log_safe(escape.terminal(value), "terminal")
    # rich: the escaped text renders as itself (no tag consumed, no MarkupError)
    con = Console(width=400, record=True, color_system=None)
    con.print(escape.markup(value))
    assert con.export_text().rstrip("\n") == Text(escape.terminal(value)).plain
    # XML: an attribute and a text node holding it parse back to the escaped text
    el = ET.Element("t", name=escape.xml(value))
    el.text = escape.xml(value + "\n" + value, multiline=True)
    back = ET.fromstring(ET.tostring(el, encoding="unicode"))
    assert back.get("name") == escape.xml(value)
    # HTML: no tag or attribute from the data
    assert "<" not in escape.html(value) and '"' not in escape.html(value)
    # Markdown: no raw HTML, no pipe that would split a table cell, no unescaped code span
    md = escape.markdown(value)
    assert "<" not in md and re.search(r"(?<!\\)[|`]", md) is None
    # JSON: strict parsers accept it
    doc = json.dumps(escape.json_safe({value: [value, {"k": value}]}), ensure_ascii=False)
    assert json.loads(doc) == {
        escape.printable(value): [escape.printable(value), {"k": escape.printable(value)}]
    }
    doc.encode("utf-8")


def test_escapes_keep_ordinary_text_readable() -> None:
    plain = "model.layers.0.mlp.down_proj.weight: 50.0% (2:4) vs claimed 50% — ok"
    assert escape.terminal(plain) == plain == escape.printable(plain) == escape.xml(plain)
    assert escape.markdown("model.layers.0.self_attn.q_proj") == "model.layers.0.self_attn.q_proj"
    assert escape.terminal("a\x1bb") == "a\\x1bb" and escape.terminal("\udcff") == "\\xff"


# ------------------------------------------------------------------ a real gate run, every sink


def _model(folder: Path, names: list[str], prune: bool) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    tensors = {}
    for name in names:
        w = rng.standard_normal((16, 16)).astype(np.float32)
        if prune:
            w[:, ::2] = 0
        tensors[name] = w
    save_file(tensors, str(folder / "model.safetensors"))


def _yaml_quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar (escapes for every control character)."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029\ufeff\ufffe":
            out.append(f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "edgegate.cli", *args],
        capture_output=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def hostile_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[bytes]]:
    root = tmp_path_factory.mktemp("untrusted")
    names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"]
    _model(root / "dense", names, prune=False)
    _model(root / FOLDER, names, prune=True)
    policy = root / "policy.yaml"
    # no surrogates in a policy (it is UTF-8 text); every other hostile string is its name
    name = "".join(NASTY[:-1])
    policy.write_text(
        f"version: 1\nname: {_yaml_quoted(name)}\nclaims: {{sparsity: 0.5}}\n"
        "checks:\n  sparsity: {}\n  size: {}\n",
        "utf-8",
    )
    run = _cli(
        "check",
        str(root / "dense"),
        str(root / FOLDER),
        "--policy",
        str(policy),
        "--no-hash",
        "--json-out",
        str(root / "r.json"),
        "--md-out",
        str(root / "r.md"),
        "--html-out",
        str(root / "r.html"),
        "--junit-out",
        str(root / "r.xml"),
        env={"GITHUB_STEP_SUMMARY": str(root / "summary.md"), "COLUMNS": "60"},
    )
    return root, run


def test_the_gate_runs_to_its_verdict(
    hostile_run: tuple[Path, subprocess.CompletedProcess[bytes]],
) -> None:
    _, run = hostile_run
    err = run.stderr.decode("utf-8")
    # was exit 3: rich markup in the policy name crashed the summary; the Markdown writer
    # crashed on the non-UTF-8 folder name (an empty file left behind)
    assert run.returncode == 0, err[-3000:]
    assert "internal error" not in err and "Traceback" not in err


def test_terminal_and_ci_log_are_safe(
    hostile_run: tuple[Path, subprocess.CompletedProcess[bytes]],
) -> None:
    _, run = hostile_run
    err = run.stderr.decode("utf-8")  # strict: the log is valid UTF-8
    _assert_log_safe(err, "stderr")
    assert "\\x1b]0;pwned\\x07" in err  # the name is shown, escaped, not dropped


@pytest.mark.parametrize("report", ["r.json", "r.md", "r.html", "r.xml", "summary.md"])
def test_every_report_is_safe_and_well_formed(
    report: str, hostile_run: tuple[Path, subprocess.CompletedProcess[bytes]]
) -> None:
    root, _ = hostile_run
    text = (root / report).read_bytes().decode("utf-8")
    assert "sparsity" in text and "edgegate" in text, f"{report} is empty or cut short"
    _assert_log_safe(text, report)
    if report == "r.json":
        doc = json.loads(text)
        assert doc["policy"]["name"] == escape.printable("".join(NASTY[:-1]))
        comp = next(i for i in doc["inputs"] if i["role"] == "compressed")
        assert comp["path"].endswith(escape.printable(FOLDER))
    elif report == "r.xml":
        suites = ET.fromstring(text)  # well-formed: the CI can read the verdict
        assert (
            suites.get("name", "").startswith("edgegate (")
            and len(list(suites.iter("testcase"))) >= 3
        )
    elif report == "r.html":
        tags: list[str] = []

        class _Tags(html.parser.HTMLParser):
            def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
                tags.append(tag)

        _Tags().feed(text)
        assert "script" not in tags and "img" not in tags
    else:  # Markdown: no HTML from the data, and every table row keeps its columns
        assert "<img" not in text and "<script" not in text and "<b>" not in text
        for block in re.split(r"\n\s*\n", text):
            rows = [r for r in block.splitlines() if r.startswith("|")]
            widths = {len(re.findall(r"(?<!\\)\|", r)) for r in rows}
            assert len(widths) <= 1, f"a table row has extra columns: {rows}"


def test_per_tensor_scan_and_errors_quote_names_escaped(tmp_path: Path) -> None:
    """``scan --per-tensor`` prints tensor names on stdout; a pairing error quotes one on stderr."""
    hostile = f"model.layers.0.mlp.{ESC_OSC}{WORKFLOW}{MARKUP}.down_proj.weight"
    _model(tmp_path / "a", [hostile, "model.layers.0.self_attn.q_proj.weight"], prune=True)
    _model(
        tmp_path / "b",
        ["model.layers.0.mlp.down_proj.weight", "model.layers.0.self_attn.q_proj.weight"],
        prune=False,
    )
    scan = _cli("scan", str(tmp_path / "a"), "--per-tensor", "-q", env={"COLUMNS": "400"})
    out = scan.stdout.decode("utf-8")
    assert scan.returncode == 0, scan.stderr.decode()[-2000:]  # was exit 3 (MarkupError) before
    _assert_log_safe(out, "scan stdout")
    assert "pwned" in out
    pair = _cli("scan", str(tmp_path / "a"), "--against", str(tmp_path / "b"), "-q")
    err = pair.stderr.decode("utf-8")
    assert pair.returncode == 2 and "pwned" in err, err
    _assert_log_safe(err, "scan --against stderr")


def test_markup_in_a_policy_name_validates(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        f"version: 1\nname: {_yaml_quoted(MARKUP + WORKFLOW)}\nchecks: {{sparsity: {{}}}}\n",
        "utf-8",
    )
    run = _cli("policy", "validate", str(p))
    assert run.returncode == 0, run.stderr
    _assert_log_safe(run.stdout.decode("utf-8"), "policy validate")


def test_an_escaped_error_stays_one_short_line(tmp_path: Path) -> None:
    """A name of 300 ESC bytes becomes 1200 characters once escaped: cut again, still one line."""
    _model(tmp_path / "a", ["model.layers.0.mlp." + "\x1b" * 300 + ".down_proj.weight"], prune=True)
    _model(tmp_path / "b", ["model.layers.0.mlp.down_proj.weight"], prune=False)
    run = _cli("scan", str(tmp_path / "a"), "--against", str(tmp_path / "b"), "-q")
    err = run.stderr.decode("utf-8")
    assert run.returncode == 2, err
    _assert_log_safe(err, "stderr")
    assert err.count("\n") == 1 and len(err.encode()) <= 1200, err
