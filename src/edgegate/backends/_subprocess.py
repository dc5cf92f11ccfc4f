"""Run a backend in its own process, so a runtime that crashes (segfault in native code) or
hangs becomes a ``BackendError`` instead of taking edgegate down, and so each model's peak RSS
is its own process's.

Parent and child talk over two pipes with length-prefixed JSON frames (arrays as their raw bytes after the JSON);
no pickle crosses the boundary. Every call has a deadline: past it the child is killed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgegate import errors
from edgegate.backends.base import REMOTE_METHODS, Backend, LoglikResult, Timing
from edgegate.errors import BackendError, EdgegateError, ErrorEntry

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]


# -- wire format ---------------------------------------------------------------------------------
# A frame is two little-endian u64 (JSON length, raw length), the JSON, then the raw bytes of
# every array in the message, back to back: the JSON holds each array's dtype, shape and offset.
# Arrays cross as their own bytes (a fidelity read is 16 MB of logits: base64 inside JSON cost
# a third more bytes plus an encode and a decode on each side).
class WireError(ErrorEntry, total=False):
    """An error as the child sends it: the record, and the pip extra of a missing runtime."""

    extra: str | None


_HEAD = struct.Struct("<QQ")


def _enc(obj: Any, raw: list[memoryview], size: list[int]) -> Any:
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        if a.dtype.hasobject:
            raise TypeError("object arrays do not cross the process boundary")
        view = memoryview(a.reshape(-1).view(np.uint8).data)
        raw.append(view)
        size[0] += view.nbytes
        return {"__nd__": size[0] - view.nbytes, "dtype": a.dtype.str, "shape": list(a.shape)}
    if isinstance(obj, (LoglikResult, Timing)):
        return {"__dc__": type(obj).__name__, **obj.__dict__}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [_enc(x, raw, size) for x in obj]
    if isinstance(obj, dict):
        return {k: _enc(v, raw, size) for k, v in obj.items()}
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, set):
        return sorted(obj)
    return obj


def _dec(obj: Any, raw: bytearray) -> Any:
    if isinstance(obj, dict):
        if "__nd__" in obj:
            dtype, shape = np.dtype(obj["dtype"]), [int(n) for n in obj["shape"]]
            count = int(np.prod(shape, dtype=np.int64))
            return np.frombuffer(raw, dtype=dtype, count=count, offset=int(obj["__nd__"])).reshape(
                shape
            )
        if "__dc__" in obj:
            cls = {"LoglikResult": LoglikResult, "Timing": Timing}[obj["__dc__"]]
            return cls(**{k: v for k, v in obj.items() if k != "__dc__"})
        return {k: _dec(v, raw) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_dec(x, raw) for x in obj]
    return obj


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _send(fd: int, msg: Any) -> None:
    raw: list[memoryview] = []
    size = [0]
    body = json.dumps(_enc(msg, raw, size)).encode()
    _write_all(fd, memoryview(_HEAD.pack(len(body), size[0]) + body))
    for view in raw:
        _write_all(fd, view)


def _read_exact(fd: int, n: int, deadline: float | None) -> bytearray | None:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        k = os.readv(fd, [view[got:]])
        if not k:
            return None  # EOF: the other side died
        got += k
    return buf


def _recv(fd: int, deadline: float | None) -> Any:
    head = _read_exact(fd, _HEAD.size, deadline)
    if head is None:
        return None
    n_json, n_raw = _HEAD.unpack(head)
    body = _read_exact(fd, n_json, deadline)
    raw = _read_exact(fd, n_raw, deadline) if body is not None else None
    return None if body is None or raw is None else _dec(json.loads(body), raw)


def _widen(fd: int) -> None:
    """A bigger pipe buffer (Linux): fewer wake-ups per megabyte of logits. Best effort."""
    setsz = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if setsz is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setsz, 1 << 20)


# -- parent side -----------------------------------------------------------------------------
class IsolatedBackend:
    """A Backend whose runtime lives in a child process; same methods, same results. Each
    method of the protocol forwards its call by name; the child answers exactly the
    protocol's ``REMOTE_METHODS`` (tests/test_backend_isolation.py checks the two agree)."""

    def __init__(
        self,
        runtime: str,
        factory: str,
        path: Path,
        options: dict[str, Any],
        *,
        timeout: float | None,
        cpus: Sequence[int] | None = None,
    ) -> None:
        self.runtime = runtime
        self.timeout = timeout
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child)
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "edgegate.backends._subprocess", str(p2c_r), str(c2p_w)],
            pass_fds=(p2c_r, c2p_w),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(p2c_r)
        os.close(c2p_w)
        for fd in (p2c_w, c2p_r):
            _widen(fd)
        self._w, self._r = p2c_w, c2p_r
        try:
            meta = self._call(
                "open",
                factory=factory,
                path=str(path),
                options=options,
                cpus=list(cpus) if cpus else None,
                sys_path=sys.path,
            )
        except BaseException:
            self.close()  # a refused model must not leave its child process behind
            raise
        self.model_path = Path(meta["model_path"])
        conv = meta.get("converted_from")
        self.converted_from = Path(conv) if conv else None
        self.n_ctx = int(meta["n_ctx"])
        self.n_vocab = int(meta["n_vocab"])
        self.load_s = float(meta["load_s"])
        self.threads = meta.get("threads")
        self._info = meta

    def _stderr_tail(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1][-300:] if lines else ""

    def _call(self, op: str, **kwargs: Any) -> Any:
        if self._proc.poll() is not None and op != "open":
            raise BackendError(
                f"{self.runtime} runtime process is gone (exit {self._proc.returncode})"
            )
        deadline = time.monotonic() + self.timeout if self.timeout else None
        try:
            _send(self._w, {"op": op, **kwargs})
            reply = _recv(self._r, deadline)
        except TimeoutError:
            self._kill()
            raise BackendError(
                f"{self.runtime} did not answer '{op}' within {self.timeout:g}s (hung); killed it",
                hint="raise --timeout or check the model/runtime",
            ) from None
        except BrokenPipeError:
            reply = None
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # Ctrl-C or SIGTERM (edgegate.signals) mid-call: nobody will read the answer the
                # child is computing; kill it now instead of letting close() wait out its batch
                self._kill()
            raise
        if reply is None:
            code = self._proc.wait(timeout=10)
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
            tail = self._stderr_tail()
            raise BackendError(
                f"{self.runtime} runtime crashed during '{op}' ({how})"
                + (f": {tail}" if tail else "")
            )
        if "error" in reply:
            e = reply["error"]
            cls = getattr(errors, e["type"], BackendError)
            if cls is errors.BackendUnavailable:
                raise errors.BackendUnavailable(self.runtime, e.get("extra") or self.runtime)
            if not (isinstance(cls, type) and issubclass(cls, EdgegateError)):
                cls = BackendError
            raise cls(e["message"], path=e.get("path"), field=e.get("field"), hint=e.get("hint"))
        return reply["ok"]

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def abort(self) -> None:
        """Kill the child now, a call in flight on another thread included (it then raises
        BackendError): Ctrl-C or SIGTERM while the fidelity pass's threads wait on both
        models (backends/together.py)."""
        self._kill()

    # -- Backend protocol ---------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return list(self._call("tokenize", text=text, add_special=add_special))

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self._call("detokenize", ids=[int(i) for i in ids]))

    def chat_prompt(self, system: str | None, user: str) -> str | None:
        out = self._call("chat_prompt", system=system, user=user)
        return None if out is None else str(out)

    def token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        return np.asarray(self._call("token_logprobs", tokens=[int(t) for t in tokens]))

    def score_tokens(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        return np.asarray(self._call("score_tokens", tokens=[int(t) for t in tokens], first=first))

    def score_tokens_kept(self, tokens: Sequence[int], first: int = 1) -> np.ndarray:
        return np.asarray(
            self._call("score_tokens_kept", tokens=[int(t) for t in tokens], first=first)
        )

    def kept_logits(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self._call("kept_logits", start=int(start), stop=int(stop)))

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], candidates: Sequence[int]
    ) -> np.ndarray:
        return np.asarray(
            self._call(
                "next_token_logprobs",
                prompts=[[int(t) for t in p] for p in prompts],
                candidates=[int(c) for c in candidates],
            )
        )

    def loglikelihood(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[LoglikResult]:
        reqs = [[[int(t) for t in c], [int(t) for t in d]] for c, d in requests]
        return list(self._call("loglikelihood", requests=reqs))

    def generate(
        self, prompt: Sequence[int], max_tokens: int, *, temperature: float = 0.0, seed: int = 0
    ) -> list[int]:
        out = self._call(
            "generate",
            prompt=[int(t) for t in prompt],
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
        )
        return [int(t) for t in out]

    def time_run(self, prompt: Sequence[int], gen_tokens: int) -> Timing:
        out: Timing = self._call("time_run", prompt=[int(t) for t in prompt], gen_tokens=gen_tokens)
        return out

    def work(self) -> dict[str, int]:
        return dict(self._call("work"))

    @property
    def pid(self) -> int:
        """The child process that holds the model (fresh per benchmark repetition)."""
        return int(self._proc.pid)

    def info(self) -> dict[str, Any]:
        return dict(self._info, isolated=True)

    def close(self) -> None:
        if getattr(self, "_closed", False):  # idempotent: a closed fd number may be reused
            return
        self._closed = True
        if self._proc.poll() is None:
            try:
                _send(self._w, {"op": "close"})
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
            except BaseException:  # interrupted while waiting: do not leave the child behind
                self._kill()
                raise
        for fd in (self._w, self._r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()


# -- child side ------------------------------------------------------------------------------
def _load_factory(spec: str) -> Any:
    mod, _, name = spec.partition(":")
    return getattr(importlib.import_module(mod), name)


def _child(fd_in: int, fd_out: int) -> None:
    backend: Backend | None = None
    while True:
        msg = _recv(fd_in, None)
        if msg is None or msg["op"] == "close":
            if backend is not None:
                backend.close()
            return
        op = msg.pop("op")
        try:
            if op == "open":
                for p in msg["sys_path"]:
                    if p not in sys.path:
                        sys.path.append(p)
                if msg.get("cpus") and hasattr(os, "sched_setaffinity"):
                    os.sched_setaffinity(0, msg["cpus"])
                opts = dict(msg["options"])
                if opts.get("cache_dir"):
                    opts["cache_dir"] = Path(opts["cache_dir"])
                backend = _load_factory(msg["factory"])(Path(msg["path"]), **opts)
                # a registered plugin runtime (or a test's fault injector) may leave out info()
                info = backend.info() if callable(getattr(backend, "info", None)) else {}
                result: Any = {
                    "model_path": str(backend.model_path),
                    "n_ctx": backend.n_ctx,
                    "n_vocab": backend.n_vocab,
                    "load_s": backend.load_s,
                    **info,
                }
            elif op in REMOTE_METHODS and backend is not None:
                result = getattr(backend, op)(**msg)
            else:
                raise BackendError(f"internal: unknown operation {op}")
            _send(fd_out, {"ok": result})
        except EdgegateError as exc:
            err: WireError = {**exc.to_dict(), "extra": getattr(exc, "extra", None)}
            _send(fd_out, {"error": err})
        except Exception as exc:  # a runtime's own exception: report it, keep serving
            traceback.print_exc()
            _send(
                fd_out,
                {"error": {"type": "BackendError", "message": f"{type(exc).__name__}: {exc}"}},
            )


if __name__ == "__main__":
    _child(int(sys.argv[1]), int(sys.argv[2]))
