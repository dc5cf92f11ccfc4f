"""What a report needs to be reproducible: tool and library versions, the machine, and the
sha256 of every input file (streamed, so multi-GB checkpoints never sit in memory)."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TypedDict

from edgegate import __version__
from edgegate.errors import InputError
from edgegate.progress import NullProgress, Progress

# Distributions whose versions change measurements (readers, runtimes) or the gate itself.
LIBRARIES: tuple[str, ...] = (
    "numpy",
    "safetensors",
    "gguf",
    "transformers",
    "tokenizers",
    "llama-cpp-python",
    "mlx",
    "mlx-lm",
    "onnxruntime",
    "onnx",
    "torch",  # the transformers runtime
    "compressed-tensors",
    "jsonschema",
    "pyyaml",
    "click",
    "rich",
)

_CHUNK = 1 << 20
_BAR_BYTES = 64 << 20


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU's marketing name where the OS tells us, else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            import subprocess

            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


class EnvironmentInfo(TypedDict):
    """The machine and software a run used (the report's ``environment``)."""

    edgegate: str
    python: str
    python_implementation: str
    platform: str
    system: str
    machine: str
    cpu_model: str
    cpu_count: int | None
    cpu_available: int | None
    libraries: dict[str, str | None]


class InputFile(TypedDict):
    path: str  # relative to the input (its name, for a single file)
    bytes: int
    sha256: str | None  # None: not hashed (--no-hash)


class _InputDescription(TypedDict):
    role: str  # "dense", "compressed", "policy", "bbq_data", ...
    path: str
    kind: Literal["file", "directory", "endpoint"]
    format: str | None  # a guess from the file names, models only
    total_bytes: int
    files: list[InputFile]


class InputDescription(_InputDescription, total=False):
    """One input of a run as the report records it (``describe_input``, ``endpoint_input``):
    a model behind a server also says what the server reports it is."""

    base_url: str
    model: str
    dialect: str


class HubInput(TypedDict):
    """A dataset named on a hub (``hf:NAME``): no local files, the name is all there is."""

    role: str
    kind: Literal["hub"]
    path: str


def environment_info() -> EnvironmentInfo:
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "edgegate": __version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_available": len(affinity(0)) if affinity else os.cpu_count(),
        "libraries": library_versions(),
    }


def sha256_file(path: Path, advance: Any = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            if advance is not None:
                advance(len(chunk))
    return h.hexdigest()


def input_files(path: Path) -> list[Path]:
    """Every regular file that makes up an input, in a stable order (VCS folders excluded)."""
    if path.is_file():
        return [path]
    files = [
        p
        for p in path.rglob("*")
        if p.is_file()
        and not any(part in (".git", "__pycache__") for part in p.relative_to(path).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(path).as_posix())


def guess_format(path: Path) -> str | None:
    """A cheap format guess from file names; the readers decide for real when checks run."""
    try:
        from edgegate.checkpoint import detect_format

        fmt = detect_format(path)
        return str(getattr(fmt, "value", fmt))
    except Exception:  # readers not in this build, or not a checkpoint they know
        pass
    if path.is_file():
        return {".gguf": "gguf", ".onnx": "onnx", ".safetensors": "safetensors"}.get(
            path.suffix.lower()
        )
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    if any(n.endswith(".gguf") for n in names):
        return "gguf"
    if any(n.endswith(".onnx") for n in names):
        return "onnx"
    if any(n.endswith(".safetensors") for n in names):
        return "safetensors"
    return None


def describe_input(
    role: str, path: Path, *, hash_files: bool = True, progress: Progress | None = None
) -> InputDescription:
    """Paths, sizes and sha256 of one input (a checkpoint, the policy, a dataset folder)."""
    if not path.exists():
        raise InputError(f"{role} not found", path=path, hint="check the path")
    progress = progress or NullProgress()
    files = input_files(path)
    total = sum(f.stat().st_size for f in files)
    entries: list[InputFile] = []
    # A bar only where hashing takes a noticeable time (checkpoints, not policy files).
    shown = progress if hash_files and total > _BAR_BYTES else NullProgress()
    with shown.task(f"hashing {role} ({total / 1e6:.1f} MB)", total=total) as advance:
        for f in files:
            rel = f.name if path.is_file() else f.relative_to(path).as_posix()
            entries.append(
                {
                    "path": rel,
                    "bytes": f.stat().st_size,
                    "sha256": sha256_file(f, advance) if hash_files else None,
                }
            )
    return {
        "role": role,
        "path": str(path),
        "kind": "file" if path.is_file() else "directory",
        "format": guess_format(path) if role in ("dense", "compressed") else None,
        "total_bytes": total,
        "files": entries,
    }


def endpoint_input(role: str, url: str, timeout: float | None = None) -> InputDescription:
    """Describe a model behind a server by what the server says it is (base URL, model id,
    dialect), as the report's inputs and the shard fingerprint record it."""
    from edgegate.backends._http import current_http_settings
    from edgegate.backends.openai_backend import OpenAIBackend

    retries = min(2, current_http_settings().max_retries)  # timeout None: the --timeout setting
    be = OpenAIBackend(url, timeout=timeout, max_retries=retries, n_ctx=2048)  # n_ctx: unused here
    try:  # what its info() reports, read from the backend itself (typed there)
        base_url, model, dialect = be.base_url, be.model, be.dialect
    finally:
        be.close()
    return {
        "role": role,
        "path": url,
        "kind": "endpoint",
        "format": None,
        "total_bytes": 0,
        "files": [],
        "base_url": base_url,
        "model": model,
        "dialect": dialect,
    }
