"""Find out which checkpoint format a path holds, from names, configs and magic bytes.

Pickle checkpoints (``pytorch_model.bin``, ``*.pt``, ...) are refused here, before any
reader sees them: edgegate never unpickles, because unpickling runs arbitrary code.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from edgegate.checkpoint.base import Format
from edgegate.checkpoint.safetensors_reader import INDEX_NAME, load_json, read_header
from edgegate.errors import CheckpointError, InputError

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle")
GGUF_MAGIC = b"GGUF"
SPARSE_FORMATS = ("sparse-bitmask", "sparse-24-bitmask")
CONVERT_HINT = (
    "edgegate never unpickles (a pickle can run arbitrary code); convert it to safetensors in "
    "a trusted environment, e.g. AutoModelForCausalLM.from_pretrained(dir)"
    ".save_pretrained(out, safe_serialization=True)"
)


def _check_exists(path: Path) -> None:
    if path.exists():
        return
    if os.path.lexists(path):
        try:
            path.resolve(strict=True)
        except RuntimeError:
            raise InputError(
                "symlink loop", path=path, hint="point at the real file or directory"
            ) from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise InputError(
                    "symlink loop", path=path, hint="point at the real file or directory"
                ) from None
        raise InputError("broken symlink: its target does not exist", path=path)
    raise InputError("no such file or directory", path=path, hint="check the checkpoint path")


def _magic(path: Path, n: int = 4) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError("symlink loop", path=path) from None
        raise CheckpointError(f"cannot read file: {e.strerror or e}", path=path) from None


def _is_pickle_bytes(head: bytes) -> bool:
    # torch.save writes a zip ("PK\x03\x04"); legacy torch/pickle starts with PROTO (0x80).
    return head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"


def refuse_pickle(path: Path) -> CheckpointError:
    return CheckpointError("refusing to load a pickle checkpoint", path=path, hint=CONVERT_HINT)


def sparsity_config(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The compressed-tensors ``sparsity_config`` block of an HF config.json, if any."""
    if not config:
        return None
    for key in ("quantization_config", "compression_config"):
        block = config.get(key)
        if isinstance(block, dict) and isinstance(block.get("sparsity_config"), dict):
            return block["sparsity_config"]
    return None


def is_compressed_tensors(config: dict[str, Any] | None) -> bool:
    if sparsity_config(config) is not None:
        return True
    block = (config or {}).get("quantization_config") or (config or {}).get("compression_config")
    return isinstance(block, dict) and block.get("quant_method") == "compressed-tensors"


def _first_safetensors(root: Path) -> Path | None:
    files = sorted(root.glob("*.safetensors"))
    return files[0] if files else None


def _is_mlx(config: dict[str, Any] | None, first: Path | None) -> bool:
    if config and isinstance(config.get("quantization"), dict):
        return True  # mlx-lm's own key (HF configs use "quantization_config")
    if first is not None:
        _, meta = read_header(first)
        return meta.get("format") == "mlx"
    return False


def _detect_file(path: Path) -> Format:
    name = path.name.lower()
    if name.endswith(PICKLE_SUFFIXES):
        raise refuse_pickle(path)
    if not path.is_file():  # a FIFO would block the open below forever; a device never ends
        raise CheckpointError(
            "not a regular file (a pipe, socket or device)",
            path=path,
            hint="pass the checkpoint file or its directory",
        )
    head = _magic(path, 8)
    if name.endswith(".bin") and _is_pickle_bytes(head):
        raise refuse_pickle(path)
    if name.endswith(".gguf") or head[:4] == GGUF_MAGIC:
        return Format.GGUF
    if name.endswith(".onnx"):
        return Format.ONNX
    if name.endswith(".safetensors"):
        cfg = path.parent / "config.json"
        config = load_json(cfg) if cfg.is_file() else None
        if is_compressed_tensors(config):
            return Format.COMPRESSED_TENSORS
        return Format.MLX if _is_mlx(config, path) else Format.SAFETENSORS
    if _is_pickle_bytes(head):
        raise refuse_pickle(path)
    raise CheckpointError(
        "unknown checkpoint file type",
        path=path,
        hint="expected a directory, .safetensors, .gguf or .onnx file",
    )


def _detect_dir(root: Path) -> Format:
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError as e:
        raise InputError(f"cannot list directory: {e.strerror or e}", path=root) from None
    files = [p for p in entries if p.is_file()]
    names = [p.name.lower() for p in files]
    if any(n.endswith(".safetensors") for n in names) or INDEX_NAME in names:
        cfg = root / "config.json"
        config = load_json(cfg) if cfg.is_file() else None
        if is_compressed_tensors(config):
            return Format.COMPRESSED_TENSORS
        return Format.MLX if _is_mlx(config, _first_safetensors(root)) else Format.SAFETENSORS
    ggufs = [p for p in files if p.name.lower().endswith(".gguf")]
    if len(ggufs) == 1:
        return Format.GGUF
    if len(ggufs) > 1:
        raise CheckpointError(
            f"{len(ggufs)} .gguf files ({', '.join(p.name for p in ggufs[:4])})",
            path=root,
            hint="pass the path of the one .gguf file to use",
        )
    onnxs = [p for p in files if p.name.lower().endswith(".onnx")]
    if len(onnxs) == 1 or (onnxs and (root / "model.onnx").is_file()):
        return Format.ONNX
    if len(onnxs) > 1:
        raise CheckpointError(
            f"{len(onnxs)} .onnx files and none is model.onnx",
            path=root,
            hint="pass the path of the .onnx file to use",
        )
    pickles = [
        p
        for p in files
        if p.name.lower().endswith(PICKLE_SUFFIXES)
        or (p.name.lower().endswith(".bin") and _is_pickle_bytes(_magic(p)))
    ]
    if pickles:
        raise refuse_pickle(pickles[0])
    if not entries:
        raise CheckpointError(
            "empty directory: no checkpoint files",
            path=root,
            hint="expected .safetensors, .gguf or .onnx files",
        )
    seen = ", ".join(p.name for p in entries[:5])
    raise CheckpointError(
        f"no checkpoint files found (saw: {seen}{', ...' if len(entries) > 5 else ''})",
        path=root,
        hint="expected .safetensors (+config.json), .gguf or .onnx files",
    )


def detect_format(path: str | Path) -> Format:
    """The format stored at ``path`` (a file or a model directory)."""
    p = Path(path)
    _check_exists(p)
    return _detect_dir(p) if p.is_dir() else _detect_file(p)


def resolve_file(path: Path, suffix: str) -> Path:
    """The single ``suffix`` file for a directory path (or the path itself)."""
    if path.is_file():
        return path
    found = sorted(p for p in path.iterdir() if p.name.lower().endswith(suffix) and p.is_file())
    if len(found) == 1:
        return found[0]
    if suffix == ".onnx" and (path / "model.onnx").is_file():
        return path / "model.onnx"
    raise CheckpointError(
        f"expected one {suffix} file, found {len(found)}",
        path=path,
        hint=f"pass the path of the {suffix} file to use",
    )
