"""Hostile inputs through the real CLI (subprocesses): every case in tests/hostile/cases.yaml
must give its exit code and message, and none may crash, print a traceback or exit 0.

The corpus is generated once per session by tests/hostile/make_corpus.py into a temp dir.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "hostile"
CASES: list[dict[str, Any]] = yaml.safe_load((HOSTILE / "cases.yaml").read_text("utf-8"))
TIMEOUT_S = 60  # a hang is a failure, not a stuck CI job


@dataclass(frozen=True)
class Run:
    argv: list[str]
    code: int
    stdout: str
    stderr: str


def _cli(argv: list[str], cwd: Path) -> Run:
    env = {**os.environ, "EDGEGATE_DEBUG": "", "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    try:
        p = subprocess.run(
            [sys.executable, "-m", "edgegate.cli", *argv], cwd=cwd, env=env,
            capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return Run(argv, -999, "", f"HANG: no exit within {TIMEOUT_S} s")
    return Run(argv, p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(HOSTILE))
    try:
        import make_corpus
    finally:
        sys.path.remove(str(HOSTILE))
    root = tmp_path_factory.mktemp("hostile")
    make_corpus.build(root)
    return root


def _expand(argv: list[str], corpus: Path) -> list[str]:
    subst = {
        "{c}": str(corpus),
        "{m}": str(REPO / "fixtures" / "models"),
        "{b}": str(REPO / "fixtures" / "bbq"),
    }
    out = []
    for a in argv:
        for k, v in subst.items():
            a = a.replace(k, v)
        out.append(a)
    return out


# A fork server: one interpreter imports edgegate once, then forks a child per case that runs
# the console-script entry point (edgegate.cli:main, what `edgegate ...` runs) with its own
# stdout/stderr files and exit status. Same code path and process isolation as a fresh
# `python -m edgegate.cli`, without paying ~1 s of interpreter start and imports 60 times.
_SERVER = r"""
import json, os, signal, sys, traceback
import numpy, yaml, click, rich, jsonschema, safetensors, gguf
import edgegate.cli
from edgegate.commands import scan, check, policy, bbq
# what most cases import anyway: done once here, shared copy-on-write by every child
import edgegate.runner, edgegate.report, edgegate.forensics.scan, edgegate.bbq.dataset
import edgegate.checkpoint.safetensors_reader, edgegate.checkpoint.gguf_reader, rich.console
cases, out_dir, timeout = json.load(sys.stdin)
results = []
for i, argv in enumerate(cases):
    o, e = os.path.join(out_dir, f"{i}.out"), os.path.join(out_dir, f"{i}.err")
    pid = os.fork()
    if pid == 0:
        signal.alarm(timeout)  # a hang dies by SIGALRM and is reported as one
        fo, fe = os.open(o, os.O_WRONLY | os.O_CREAT), os.open(e, os.O_WRONLY | os.O_CREAT)
        os.dup2(fo, 1); os.dup2(fe, 2)
        sys.argv = ["edgegate", *argv]
        code = 0
        try:
            rv = edgegate.cli.main(argv)
            code = rv if isinstance(rv, int) else 0
        except SystemExit as x:
            code = x.code if isinstance(x.code, int) else (0 if x.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 99
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    results.append([code, open(o).read(), open(e).read()])
json.dump(results, sys.stdout)
"""


def _run_many(argvs: list[list[str]], cwd: Path, out_dir: Path) -> list[Run]:
    env = {**os.environ, "EDGEGATE_DEBUG": "", "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    p = subprocess.run(
        [sys.executable, "-c", _SERVER], input=json.dumps([argvs, str(out_dir), TIMEOUT_S]),
        cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S * 4,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    return [
        Run(a, c, o, e if c != -14 else f"HANG: killed after {TIMEOUT_S} s\n{e}")
        for a, (c, o, e) in zip(argvs, rows, strict=True)
    ]


@pytest.fixture(scope="session")
def results(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    cwd = tmp_path_factory.mktemp("cwd")
    argvs = [_expand(c["argv"], corpus) for c in CASES]
    runs = _run_many(argvs, cwd, tmp_path_factory.mktemp("out"))
    return {c["id"]: r for c, r in zip(CASES, runs, strict=True)}


@pytest.mark.parametrize(
    "case_id", ["st_truncated", "pickle_check", "pol_wrong_type", "bbq_binary"]
)
def test_fork_server_matches_a_fresh_process(
    case_id: str, results: dict[str, Run], corpus: Path, tmp_path: Path
) -> None:
    """The fork server is only a speed-up: a fresh `python -m edgegate.cli` gives the same."""
    case = next(c for c in CASES if c["id"] == case_id)
    fresh = _cli(_expand(case["argv"], corpus), tmp_path)
    assert (fresh.code, fresh.stderr.strip()) == (
        results[case_id].code,
        results[case_id].stderr.strip(),
    )


def test_case_ids_unique() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids))
    assert all(c["exit"] != 0 for c in CASES), "a hostile case must never expect exit 0"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_hostile_case(case: dict[str, Any], results: dict[str, Run], corpus: Path) -> None:
    if case.get("needs"):
        pytest.importorskip(case["needs"])
    r = results[case["id"]]
    shown = f"argv={r.argv}\nexit={r.code}\nstderr:\n{r.stderr[-3000:]}"
    assert "Traceback (most recent call last)" not in r.stderr + r.stdout, shown
    assert "internal error" not in r.stderr, shown
    assert r.code == case["exit"], shown
    assert case["stderr"] in r.stderr, shown
    # issue 15: however big the hostile value, an error line is a few hundred bytes
    long = [ln for ln in r.stderr.splitlines() if "error" in ln and len(ln.encode()) > 1200]
    assert not long, f"{len(long[0])}-byte error line: {long[0][:300]}"
    # a user mistake: the cause is on an 'edgegate: error:' line (or a validation list)
    if r.code == 2:
        assert r.stderr.strip(), shown
    assert not (corpus / "PWNED").exists(), "a pickle payload was executed"


def test_pickle_never_unpickled(results: dict[str, Run], corpus: Path) -> None:
    """The marker file is what the payload's __reduce__ would create; unpickling it here (in
    a throwaway copy) proves the payload is live, so its absence above means something."""
    import pickle

    assert not (corpus / "PWNED").exists()
    live = corpus / "PWNED"
    data = (corpus / "pickle_dir" / "pytorch_model.bin").read_bytes()
    obj = pickle.loads(data)  # the ONLY unpickling, done on purpose to prove the payload
    for v in obj.values():
        v.close()
    assert live.exists()
    live.unlink()


def test_nan_scan_reports(corpus: Path, tmp_path: Path) -> None:
    """scan measures (exit 0) but must report every NaN/Inf, and check fails on them (cases)."""
    r = _cli(["scan", "--json", "-q", str(corpus / "nan_model")], tmp_path)
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["nonfinite"] == {"nan": 2, "inf": 2}


def test_header_cap_refused_before_allocation(corpus: Path) -> None:
    """A header length of 200 MB (in a 100-byte file) is refused from the length field alone.
    tracemalloc sees the buffer that ``f.read(n)`` allocates at the requested size before
    the short read, so reading first and checking after would show a ~200 MB peak here."""
    import tracemalloc

    from edgegate.checkpoint.safetensors_reader import read_header
    from edgegate.errors import CheckpointError

    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="exceeds the 100000000-byte cap"):
            read_header(corpus / "st_header_cap.safetensors")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"peak {peak} bytes: the declared header was allocated"


# -- servers that answer garbage: a real HTTP server on 127.0.0.1 for the openai runtime --------
_MODELS = {
    "object": "list",
    "data": [{"id": "m", "object": "model", "owned_by": "llamacpp", "meta": {"n_ctx": 512}}],
}


def _garbage_server(mode: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, body: str, ctype: str = "application/json") -> None:
            raw = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            if mode == "html":
                self._send("<html>a web page, not an API</html>", "text/html")
            else:
                self._send(json.dumps(_MODELS))

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if mode == "wrong-shape":  # valid JSON, nonsense fields
                self._send('{"tokens": "nope", "choices": [{"text": 12, "logprobs": "nope"}]}')
            else:
                self._send("garbage{{{")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [
        ("html", "/v1/models returned a response that is not valid JSON"),
        ("not-json", "returned a response that is not valid JSON"),
        ("wrong-shape", "no integer 'tokens' list"),
    ],
)
def test_garbage_server_is_a_runtime_error(
    mode: str, fragment: str, corpus: Path, tmp_path: Path
) -> None:
    """`check` with the openai runtime against a server that answers garbage: exit 3 with the
    cause, and the report (when one is written) says error, never pass."""
    srv = _garbage_server(mode)
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    try:
        r = _cli(
            ["check", "--dense-endpoint", url, "--compressed-endpoint", url, "--policy",
             str(corpus / "pol_bbq_openai.yaml"), "--bbq-data", str(REPO / "fixtures" / "bbq"),
             "--json-out", "r.json", "-q"], tmp_path,
        )  # fmt: skip
    finally:
        srv.shutdown()
    shown = f"exit={r.code}\n{r.stderr[-2000:]}"
    assert r.code == 3, shown
    assert fragment in r.stderr and "Traceback" not in r.stderr, shown
    if (tmp_path / "r.json").exists():
        doc = json.loads((tmp_path / "r.json").read_text("utf-8"))
        assert doc["status"] == "error" and doc["exit_code"] == 3
