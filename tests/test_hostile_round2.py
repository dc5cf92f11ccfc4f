"""Issue 15, hostile inputs second round: what tests/hostile/cases.yaml cannot express
(timings, message sizes, a hung server, paths relative to the policy file).

Every test here failed on the code before issue 15's fixes; see tests/hostile/README.md.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _support import run_cli

from edgegate import safe_json
from edgegate.errors import CheckpointError, InputError, excerpt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "hostile"))
import make_corpus  # noqa: E402

sys.path.remove(str(REPO / "tests" / "hostile"))

MAX_ERROR_BYTES = 1200  # "at most a few hundred bytes": path + field + message + hint, each capped


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile2")
    make_corpus.build(root)
    return root


# ------------------------------------------------------------------ (d) the safe JSON loader


def test_depth_guard_names_the_file_without_recursion(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(InputError) as e:
        safe_json.load(p, expect_object=False)
    assert e.value.path == str(p) and "nested 200000 levels deep" in e.value.message
    assert e.value.exit_code == 2


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"a": "[" * 5000, "b": ["{" * 300, {"c": "]]]"}]}).encode()
    assert safe_json.nesting_depth(text) == 3
    assert safe_json.loads(text, where="x.json")["b"][1] == {"c": "]]]"}


def test_depth_limit_is_exact() -> None:
    ok = b"[" * safe_json.MAX_DEPTH + b"]" * safe_json.MAX_DEPTH
    assert isinstance(safe_json.loads(ok, where="x"), list)
    with pytest.raises(InputError, match="nested 257 levels"):
        safe_json.loads(b"[" + ok + b"]", where="x")


def test_size_cap_refuses_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "index.json"
    p.write_bytes(b'{"a": "' + b"x" * 2000 + b'"}')
    with pytest.raises(CheckpointError, match="more than the 1000-byte cap"):
        safe_json.load(p, error=CheckpointError, max_bytes=1000)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"a": 1', "not valid JSON"),
        (b"1" * 5000, "not valid JSON"),
    ],  # a 5000-digit int: Python's int-size guard, a ValueError
)
def test_every_failure_is_an_input_error(raw: bytes, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as e:
        safe_json.loads(raw, where="p.json", allow_nan=False)
    assert e.value.path == "p.json"


def test_tokenizer_config_goes_through_the_guard(tmp_path: Path) -> None:
    from edgegate.backends._common import hf_chat_template

    (tmp_path / "tokenizer_config.json").write_bytes(b'{"chat_template": ' + b"[" * 100_000 + b"}")
    with pytest.raises(InputError, match=r"tokenizer_config\.json: JSON nested"):
        hf_chat_template(tmp_path)


# ------------------------------------------------------------------ (f) bounded, escaped messages


def test_error_parts_are_capped() -> None:
    e = InputError("x" * 10_000_000, path="p" * 100_000, field="f" * 100_000, hint="h" * 100_000)
    assert len(e.one_line().encode()) <= MAX_ERROR_BYTES


def test_excerpt_escapes_and_shortens() -> None:
    s = excerpt("a\x1b[31m\n" + "b" * 10_000, 60)
    assert "\x1b" not in s and "\n" not in s and "(10007 chars)" in s and len(s) < 90


@pytest.mark.parametrize("name", ["pol_huge_file.yaml", "pol_big_value.yaml", "pol_big_key.yaml"])
def test_huge_policy_values_are_fast_and_short(name: str, corpus: Path) -> None:
    t0 = time.perf_counter()
    code, out = run_cli("policy", "validate", str(corpus / name))
    took = time.perf_counter() - t0
    assert code == 2, out
    assert len(out.encode()) <= MAX_ERROR_BYTES, out[:2000]
    assert took < 5, f"{took:.1f} s to refuse {name}"  # once ~19 s for 10 MB


# ------------------------------------------------------------------ (h) whose fault a refusal is


@pytest.mark.parametrize(
    ("name", "kind", "fragment"),
    [
        ("g_good.gguf", InputError, "incomplete (no metadata tokenizer.ggml.model"),
        ("g_overlap.gguf", CheckpointError, "overlaps earlier tensor data"),
        ("g_unknown_arch.gguf", None, "refused a well-formed GGUF (architecture 'llamz'"),
    ],
)
def test_llamacpp_refusal_is_classified(
    name: str, kind: type | None, fragment: str, corpus: Path
) -> None:
    """classify_refusal alone (no llama.cpp needed); the real refusal runs in cases.yaml
    (llamacpp_refuses_wellformed: exit 3, llamacpp_rejects_*: exit 2)."""
    from edgegate.backends.llamacpp_load import classify_refusal
    from edgegate.errors import BackendError

    if not (corpus / name).exists():
        pytest.skip("fixtures/models/gguf/dense-f16.gguf is missing")
    err = classify_refusal(corpus / name, ValueError("Failed to load model from file"))
    assert fragment in err.one_line()
    if kind is None:
        assert isinstance(err, BackendError) and err.exit_code == 3
    else:
        assert isinstance(err, kind) and err.exit_code == 2


# ------------------------------------------------------------------ (i) a hung server


class HungServer:
    """Accepts TCP connections on 127.0.0.1 and never answers: a server that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)  # kept open, never read or answered

    def close(self) -> None:
        self._stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def hung() -> object:
    srv = HungServer()
    yield srv
    srv.close()


def _edgegate(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "edgegate.cli", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    return p.returncode, p.stderr, time.perf_counter() - t0


def test_check_timeout_flags_bound_a_hung_server(
    hung: HungServer, corpus: Path, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{hung.port}/v1"
    code, err, took = _edgegate(
        [
            "check",
            "--dense-endpoint",
            url,
            "--compressed-endpoint",
            url,
            "--policy",
            str(corpus / "pol_bbq_openai.yaml"),
            "--bbq-data",
            str(REPO / "fixtures" / "bbq"),
            "--timeout",
            "0.5",
            "--max-retries",
            "1",
            "-q",
        ],
        tmp_path,
    )
    assert code == 3, err
    assert "no answer within 0.5 s (timeout)" in err and "failed after 2 attempts" in err, err
    assert took < 30, f"{took:.1f} s: the flags did not bound the wait (6 x 60 s before)"


def test_env_settings_apply_without_flags(hung: HungServer, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{hung.port}/v1"
    code, err, took = _edgegate(
        [
            "bbq",
            "run",
            url,
            url,
            "--runtime",
            "openai",
            "--data",
            str(REPO / "fixtures" / "bbq"),
            "--items",
            "4",
        ],
        tmp_path,
        env={"EDGEGATE_HTTP_TIMEOUT": "0.4", "EDGEGATE_HTTP_MAX_RETRIES": "0"},
    )
    assert code == 3, err
    assert "no answer within 0.4 s" in err and "failed after 1 attempts" in err, err
    assert took < 30


def test_bad_settings_are_input_errors(tmp_path: Path) -> None:
    code, err, _ = _edgegate(
        ["check", "a", "b", "--policy", "default", "--max-retries", "-1"], tmp_path
    )
    assert code == 2 and "--max-retries" in err
    from edgegate.backends._http import HttpSettings

    with pytest.raises(InputError, match="not numbers"):
        os.environ["EDGEGATE_HTTP_TIMEOUT"] = "soon"
        try:
            HttpSettings.from_env()
        finally:
            del os.environ["EDGEGATE_HTTP_TIMEOUT"]


# ------------------------------------------------------------------ (j) policy-relative paths


def _ppl_policy(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "gate.yaml"
    p.write_text(
        f"version: 1\nchecks:\n  perplexity: {{required: true, runtime: llamacpp, text: {text}}}\n"
    )
    return p


def test_missing_text_is_named_relative_to_the_policy(tmp_path: Path) -> None:
    pol = _ppl_policy(tmp_path / "policies", "eval/missing.txt")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    m = REPO / "fixtures" / "models" / "gguf"
    code, err, _ = _edgegate(
        [
            "check",
            str(m / "dense-f16.gguf"),
            str(m / "wanda50-f16.gguf"),
            "--policy",
            str(pol),
            "-q",
            "--no-hash",
        ],
        elsewhere,
    )
    assert code == 2, err
    assert f"{tmp_path / 'policies' / 'eval' / 'missing.txt'}" in err, err


def test_text_resolves_against_the_policy_not_the_cwd(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    pol = _ppl_policy(tmp_path / "policies", "eval.txt")
    (tmp_path / "policies" / "eval.txt").write_text(
        "The cat sat on the mat and looked at the door. " * 60
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    m = REPO / "fixtures" / "models" / "gguf"
    code, err, _ = _edgegate(
        [
            "check",
            str(m / "dense-f16.gguf"),
            str(m / "wanda50-f16.gguf"),
            "--policy",
            str(pol),
            "--json-out",
            "r.json",
            "-q",
            "--no-hash",
        ],
        elsewhere,
    )
    assert code in (0, 1), err  # a verdict either way; never an input error about the text
    doc = json.loads((elsewhere / "r.json").read_text("utf-8"))
    roles = {i["role"]: i["path"] for i in doc["inputs"]}
    assert Path(roles["perplexity_text"]) == tmp_path / "policies" / "eval.txt", roles
    assert "cannot read the perplexity text" not in json.dumps(doc)


def test_ppl_timeout_bounds_each_request(hung: HungServer) -> None:
    """`edgegate ppl --timeout S` (a whole-call bound for local runtimes) also bounds each HTTP
    request to a server: the 1800 s default once became the per-request timeout."""
    from edgegate.backends import open_backend
    from edgegate.backends._http import HttpError, http_settings

    t0 = time.perf_counter()
    with http_settings(max_retries=0), pytest.raises(HttpError, match=r"no answer within 0\.3 s"):
        open_backend("openai", f"http://127.0.0.1:{hung.port}/v1", timeout=0.3)
    assert time.perf_counter() - t0 < 10


def test_deeply_nested_server_answer_is_a_runtime_error() -> None:
    """A server answering 200k-deep JSON: exit 3 with the cause (was a RecursionError)."""
    from edgegate.backends._http import HttpClient, HttpError

    with pytest.raises(HttpError, match="not valid JSON") as e:
        HttpClient("http://127.0.0.1:1")._decode(b"[" * 200_000 + b"]" * 200_000, "GET /v1/models")
    assert e.value.exit_code == 3 and len(e.value.one_line()) < MAX_ERROR_BYTES


def test_bbq_data_resolves_against_the_policy_not_the_cwd(tmp_path: Path) -> None:
    """`checks.bbq.data: bbq` next to the policy file is found from any working directory
    (it once resolved against the cwd); a missing one is named with the resolved path."""
    pytest.importorskip("llama_cpp")
    folder = tmp_path / "policies"
    folder.mkdir()
    shutil.copytree(REPO / "fixtures" / "bbq", folder / "bbq")
    pol = folder / "gate.yaml"
    pol.write_text(
        "version: 1\nchecks:\n  bbq: {required: true, runtime: llamacpp, data: bbq, items: 60,"
        " disambig_items: 0, min_items: 10, min_items_per_category: 2}\n"
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    m = REPO / "fixtures" / "models" / "gguf"
    code, err, _ = _edgegate(
        [
            "check",
            str(m / "dense-f16.gguf"),
            str(m / "wanda50-f16.gguf"),
            "--policy",
            str(pol),
            "--only",
            "bbq",
            "--json-out",
            "r.json",
            "-q",
            "--no-hash",
        ],
        elsewhere,
    )
    assert code in (0, 1), err  # a verdict either way; never "BBQ data not found"
    doc = json.loads((elsewhere / "r.json").read_text("utf-8"))
    roles = {i["role"]: i["path"] for i in doc["inputs"]}
    assert Path(roles["bbq_data"]) == folder / "bbq", roles
    bbq = next(c for c in doc["checks"] if c["check"] == "bbq")
    assert bbq["measurements"]["overall"]["n"] > 0, bbq["summary"]  # items were read and scored
    shutil.rmtree(folder / "bbq")
    code, err, _ = _edgegate(
        [
            "check",
            str(m / "dense-f16.gguf"),
            str(m / "wanda50-f16.gguf"),
            "--policy",
            str(pol),
            "--only",
            "bbq",
            "-q",
            "--no-hash",
        ],
        elsewhere,
    )
    assert code == 2 and str(folder / "bbq") in err, err
