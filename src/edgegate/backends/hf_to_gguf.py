"""HF safetensors directory -> GGUF for llama.cpp, with llama.cpp's own converter.

llama.cpp's ``convert_hf_to_gguf.py`` knows every architecture llama.cpp runs (Llama, Mistral,
Gemma 2/3, Qwen 2/3, Phi-3, ...) and the tensor layouts each needs, so edgegate does not keep
a per-architecture writer of its own for this. It is third-party code that imports torch and
the model's tokenizer files: it always runs as a *subprocess*, never imported, and it is found
in this order:

1. ``EDGEGATE_GGUF_CONVERTER`` (or ``converter=``): a llama.cpp checkout (its
   ``convert_hf_to_gguf.py`` runs with ``EDGEGATE_GGUF_CONVERTER_PYTHON``, default the current
   interpreter), the script itself, or a ``convert-hf-to-gguf`` executable;
2. ``convert-hf-to-gguf`` (the registry package of the same name) on ``PATH`` or beside the
   current interpreter. That package ships its own copy of the ``gguf`` Python package, which
   would overwrite the ``gguf`` edgegate depends on: install it in its own environment
   (``make`` does: ``.venv-convert``) and point ``EDGEGATE_GGUF_CONVERTER`` at it.

Without a converter, Llama and Mistral checkpoints still convert with edgegate's small writer
(``checkpoint/gguf_writer.py``, kept for that and for the bit-exact fixture GGUFs); any other
architecture is exit 2 with the install hint. The converter's name and version are recorded
with the converted file, and the cache key includes them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgegate.errors import BackendError, InputError

ENV = "EDGEGATE_GGUF_CONVERTER"
ENV_PYTHON = "EDGEGATE_GGUF_CONVERTER_PYTHON"
PACKAGE = "convert-hf-to-gguf"
WRITER_ARCHS = ("LlamaForCausalLM", "MistralForCausalLM")
_HF_INPUTS = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
INSTALL_HINT = (
    f"install llama.cpp's converter in its own environment: python -m venv .venv-convert && "
    f".venv-convert/bin/pip install torch {PACKAGE} ; then export {ENV}=$PWD/.venv-convert/bin/{PACKAGE} "
    f"(or point {ENV} at a llama.cpp checkout); or run the HF directory on --runtime transformers"
)


@dataclass(frozen=True)
class Converter:
    name: str  # "llama.cpp convert_hf_to_gguf.py (convert-hf-to-gguf 0.1.1)" or "edgegate-gguf-writer"
    version: str
    argv: tuple[str, ...]  # command prefix; the model dir and options follow

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


WRITER = Converter("edgegate-gguf-writer", "1", ())


def _package_version(exe: Path) -> str:
    """Version of the convert-hf-to-gguf distribution installed beside ``exe`` (read from its
    dist-info, without importing it)."""
    for site in exe.resolve().parent.parent.glob("lib/python*/site-packages"):
        for meta in site.glob("convert_hf_to_gguf-*.dist-info/METADATA"):
            for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    return "unknown"


def _checkout_version(root: Path) -> str:
    """A llama.cpp checkout's commit (``git describe``-like, read from .git without git)."""
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref:"):
            return (root / ".git" / ref.split(" ", 1)[1]).read_text().strip()[:12]
        return ref[:12]
    except OSError:
        return "unknown (no .git)"


def find_converter(explicit: str | Path | None = None) -> Converter | None:
    spec = str(explicit) if explicit else os.environ.get(ENV, "").strip()
    if spec:
        p = Path(spec).expanduser()
        py = os.environ.get(ENV_PYTHON, "").strip() or sys.executable
        if p.is_dir() and (p / "convert_hf_to_gguf.py").is_file():
            return Converter(
                "llama.cpp convert_hf_to_gguf.py (checkout)",
                _checkout_version(p),
                (py, str(p / "convert_hf_to_gguf.py")),
            )
        if p.is_file() and p.suffix == ".py":
            return Converter(
                "llama.cpp convert_hf_to_gguf.py", _checkout_version(p.parent), (py, str(p))
            )
        if p.is_file() and os.access(p, os.X_OK):
            return Converter(f"llama.cpp converter ({PACKAGE})", _package_version(p), (str(p),))
        raise InputError(
            f"{ENV} does not name a converter",
            path=p,
            field=ENV,
            hint="a llama.cpp checkout, its convert_hf_to_gguf.py, or a convert-hf-to-gguf executable",
        )
    for cand in (Path(sys.executable).parent / PACKAGE, shutil.which(PACKAGE)):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return Converter(
                f"llama.cpp converter ({PACKAGE})", _package_version(Path(cand)), (str(cand),)
            )
    return None


def content_hash(hf_dir: Path, converter: Converter, outtype: str) -> str:
    """sha256 over the converter's identity and the names and bytes of the files a conversion
    reads: a changed weight or a new converter gives a new cache entry, a touched mtime does not."""
    h = hashlib.sha256(
        f"edgegate-gguf-v2\0{converter.name}\0{converter.version}\0{outtype}\0".encode()
    )
    files = sorted(hf_dir.glob("*.safetensors")) + [
        hf_dir / n for n in _HF_INPUTS if (hf_dir / n).is_file()
    ]
    for f in sorted(set(files)):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            while block := fh.read(1 << 23):
                h.update(block)
    return h.hexdigest()


def _architecture(hf_dir: Path) -> str:
    from edgegate import safe_json

    try:  # through the guarded loader: a FIFO or a huge config.json must not block or exhaust
        archs = safe_json.load(hf_dir / "config.json").get("architectures") or ["?"]
    except InputError:
        return "?"
    return str(archs[0]) if isinstance(archs, list) and archs else "?"


def run_converter(
    conv: Converter, hf_dir: Path, out: Path, outtype: str, timeout: float = 3600.0
) -> None:
    cmd = [*conv.argv, "--outtype", outtype, "--outfile", str(out), str(hf_dir)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")  # never the hub
    env.pop("PYTHONPATH", None)  # our source tree must not shadow the converter's own gguf package
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise BackendError(f"{conv.name} did not finish within {timeout:g}s", path=hf_dir) from None
    except OSError as exc:
        raise BackendError(
            f"cannot run {conv.name}: {exc}", path=hf_dir, hint=INSTALL_HINT
        ) from exc
    if proc.returncode != 0 or not out.is_file():
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()][-3:]
        msg = " | ".join(tail)[-500:]
        # the converter refuses what it does not know: an input problem (exit 2), not a crash
        raise InputError(
            f"{conv.name} {conv.version} could not convert {_architecture(hf_dir)}: {msg}",
            path=hf_dir,
            hint="run the HF directory on --runtime transformers, or convert it to GGUF yourself",
        )


def convert(
    hf_dir: Path, cache_dir: Path, outtype: str = "f16", converter: str | Path | None = None
) -> tuple[Path, dict[str, str]]:
    """(cached GGUF, converter info) for ``hf_dir``; converts on the first call."""
    conv = find_converter(converter)
    arch = _architecture(hf_dir)
    if conv is None:
        if arch not in WRITER_ARCHS:
            raise InputError(
                f"llama.cpp's HF->GGUF converter is not installed; it is needed for {arch}",
                path=hf_dir,
                field="runtime",
                hint=INSTALL_HINT,
            )
        return _with_writer(
            hf_dir,
            cache_dir,
            outtype,
            f"llama.cpp's converter is not installed; {arch} converted with edgegate's writer",
        )
    out = cache_dir / "gguf" / f"{content_hash(hf_dir, conv, outtype)}.gguf"
    refused = out.with_suffix(".refused")  # the converter said no before: do not ask again
    if not out.is_file() and not refused.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}.gguf")
        try:
            run_converter(conv, hf_dir, tmp, outtype)
            tmp.replace(out)  # atomic: a half-written cache entry is never picked up
        except InputError as exc:
            if arch not in WRITER_ARCHS:
                raise
            refused.write_text(exc.message)
        finally:
            tmp.unlink(missing_ok=True)
    if not out.is_file():
        # e.g. a BPE tokenizer whose pre-tokenizer llama.cpp's converter does not recognise (it
        # knows tokenizers by a hash of their output on a probe text): Llama/Mistral only
        why = refused.read_text()[:300]
        return _with_writer(
            hf_dir,
            cache_dir,
            outtype,
            f"{conv.name} refused ({why}); {arch} converted with edgegate's writer",
        )
    return out, {**conv.as_dict(), "outtype": outtype}


def _with_writer(
    hf_dir: Path, cache_dir: Path, outtype: str, note: str
) -> tuple[Path, dict[str, str]]:
    from edgegate.checkpoint.gguf_writer import write_gguf

    conv = WRITER
    out = cache_dir / "gguf" / f"{content_hash(hf_dir, conv, outtype)}.gguf"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}.gguf")
        try:
            write_gguf(hf_dir, tmp, outtype)
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
    return out, {**conv.as_dict(), "outtype": outtype, "note": note}
