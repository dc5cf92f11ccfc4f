"""Runtime registry and ``open_backend``.

``open_backend("llamacpp", path, threads=2, n_ctx=512)`` returns a ``Backend``. Runtimes are
imported only when opened, so a missing one raises ``BackendUnavailable`` (checks then report
SKIPPED with the install hint) and never breaks unrelated commands. With ``timeout`` set, the
runtime runs in a child process (``_subprocess``): a crash or hang becomes ``BackendError``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgegate.backends.base import Backend, LoglikResult, Timing
from edgegate.errors import BackendError, BackendUnavailable, InputError

__all__ = [
    "AUTO",
    "LOCAL_RUNTIME_CHOICES",
    "RUNTIMES",
    "RUNTIME_CHOICES",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "LoglikResult",
    "RuntimeSpec",
    "Timing",
    "available",
    "open_backend",
    "parse_runtimes",
    "register_runtime",
    "runtime_names",
]


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    factory: str  # "module:Class", imported lazily (also inside a child process)
    modules: tuple[str, ...]  # importable when the runtime is installed
    extra: str  # pip extra that installs it: edgegate[<extra>]
    local: bool = True  # False: ``path`` is a URL (a server), never isolated in a child


RUNTIMES: dict[str, RuntimeSpec] = {}


def register_runtime(spec: RuntimeSpec) -> None:
    RUNTIMES[spec.name] = spec


register_runtime(
    RuntimeSpec(
        "llamacpp", "edgegate.backends.llamacpp:LlamaCppBackend", ("llama_cpp",), "llamacpp"
    )
)
register_runtime(
    RuntimeSpec("mlx", "edgegate.backends.mlx_backend:MLXBackend", ("mlx.core", "mlx_lm"), "mlx")
)
register_runtime(
    RuntimeSpec("onnx", "edgegate.backends.onnx_backend:ONNXBackend", ("onnxruntime",), "onnx")
)
# HF checkpoints as transformers runs them (PyTorch: CPU, CUDA, MPS)
register_runtime(
    RuntimeSpec(
        "transformers",
        "edgegate.backends.transformers_backend:TransformersBackend",
        ("torch", "transformers"),
        "torch",
    )
)
register_runtime(
    RuntimeSpec("openai", "edgegate.backends.openai_backend:OpenAIBackend", (), "all", local=False)
)


AUTO = "auto"  # the runtime the artifact ships for (backends/auto.py): the default everywhere


def runtime_names(*, local_only: bool = False, auto: bool = True) -> tuple[str, ...]:
    """What a ``--runtime`` flag accepts, from the registry: one list for every command, so no command offers a runtime the others refuse."""
    names = tuple(n for n, s in RUNTIMES.items() if s.local or not local_only)
    return ((AUTO,) if auto else ()) + names


# `bbq run` scores models behind servers too; `check` (speed), `bench` and `ppl` time or score
# local files, where a server (openai) has nothing to load.
RUNTIME_CHOICES = runtime_names()
LOCAL_RUNTIME_CHOICES = runtime_names(local_only=True)


def parse_runtimes(
    values: Sequence[str],
    allowed: Sequence[str] = LOCAL_RUNTIME_CHOICES,
    *,
    flag: str = "--runtime",
) -> tuple[str, ...]:
    """``--runtime`` values, repeated and/or comma-separated (``llamacpp,onnx``), deduplicated
    in order; an unknown name, or one that does not apply to this command, is exit 2."""
    names = [n.strip() for v in values for n in str(v).split(",") if n.strip()]
    for n in names:
        if n not in allowed:
            what = (
                f"runtime '{n}' does not apply here" if n in RUNTIMES else f"unknown runtime '{n}'"
            )
            raise InputError(what, field=flag, hint=f"choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(names))


def _spec(runtime: str) -> RuntimeSpec:
    try:
        return RUNTIMES[runtime]
    except KeyError:
        raise InputError(
            f"unknown runtime '{runtime}'",
            field="runtime",
            hint=f"choose from {', '.join(sorted(RUNTIMES))}",
        ) from None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def available(runtime: str) -> bool:
    """True when the runtime's Python packages are importable (without importing them)."""
    return all(_installed(m) for m in _spec(runtime).modules)


def open_backend(
    runtime: str,
    path: str | Path,
    *,
    threads: int | None = None,
    n_ctx: int = 2048,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    timeout: float | None = None,
    isolate: bool | None = None,
    cpus: Sequence[int] | None = None,
) -> Backend:
    """Open ``path`` on ``runtime``.

    ``timeout`` (seconds per call, model load included) implies ``isolate``: the runtime then
    lives in a child process that is killed when it overruns. ``cpus`` pins that process.
    """
    if runtime == "auto":  # the runtime the artifact ships for (backends/auto.py)
        from edgegate.backends.auto import resolve_runtime

        runtime = resolve_runtime(path).runtime
    spec = _spec(runtime)
    if not spec.local:  # a server: its client has its own HTTP timeout and retries
        from edgegate.backends._http import current_http_settings
        from edgegate.backends._subprocess import _load_factory

        # ``timeout`` bounds a whole local call (1800 s by default); per HTTP request the
        # --timeout setting applies, never more than that bound (retries once multiplied it: 6 x 1800 s)
        http = current_http_settings().timeout_s
        extra: dict[str, Any] = {
            "timeout": min(float(timeout), http) if timeout is not None else http
        }
        remote: Backend = _load_factory(spec.factory)(
            str(path), n_ctx=n_ctx, seed=seed, threads=threads, **extra
        )
        return remote
    p = Path(path)
    if not p.exists():
        raise InputError("model path does not exist", path=p)
    if not available(runtime):
        raise BackendUnavailable(runtime, spec.extra)
    if n_ctx < 2:
        raise InputError(f"n_ctx must be at least 2, got {n_ctx}", field="n_ctx")
    options: dict[str, Any] = {
        "threads": threads,
        "n_ctx": int(n_ctx),
        "seed": int(seed),
        "cache_dir": str(cache_dir) if cache_dir else None,
    }
    if isolate or timeout is not None or cpus:
        from edgegate.backends._subprocess import IsolatedBackend

        return IsolatedBackend(runtime, spec.factory, p, options, timeout=timeout, cpus=cpus)
    from edgegate.backends._subprocess import _load_factory

    options["cache_dir"] = Path(cache_dir) if cache_dir else None
    local: Backend = _load_factory(spec.factory)(p, **options)
    return local


def supports(runtime: str, path: str | Path) -> str | None:
    """None when ``runtime`` can load ``path``'s format, else why not (a check then skips that
    runtime instead of failing: an ONNX export is not a GGUF)."""
    p = Path(path)
    is_hf = p.is_dir() and (p / "config.json").is_file() and any(p.glob("*.safetensors"))
    if runtime == "llamacpp":
        ok = (
            (p.is_file() and p.suffix == ".gguf")
            or is_hf
            or (p.is_dir() and len(list(p.glob("*.gguf"))) == 1)
        )
        return None if ok else "llama.cpp loads .gguf files or HF safetensors directories"
    if runtime == "mlx":
        return None if is_hf else "MLX loads HF or mlx-lm safetensors directories"
    if runtime == "transformers":
        return None if is_hf else "transformers loads HF safetensors directories"
    if runtime == "onnx":
        ok = (p.is_file() and p.suffix == ".onnx") or (p.is_dir() and any(p.glob("*.onnx")))
        return None if ok else "ONNX Runtime loads .onnx exports"
    return None
