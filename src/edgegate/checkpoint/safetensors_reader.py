"""safetensors reader: our own header parser (precise errors on hostile files) + np.memmap.

Layout (https://huggingface.co/docs/safetensors): 8-byte little-endian header length N,
N bytes of UTF-8 JSON ``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
{str: str}}``, then the data section; offsets are relative to the data section, tensors
are contiguous, non-overlapping and cover it exactly.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.checkpoint.base import Checkpoint, Format, TensorInfo
from edgegate.checkpoint.names import make_info
from edgegate.errors import CheckpointError, excerpt

MAX_HEADER_BYTES = 100_000_000  # the upstream library's cap; larger headers are refused
INDEX_NAME = "model.safetensors.index.json"

# dtype name -> numpy storage type. BF16/F8 have no numpy type: stored as raw integers.
STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"),
    "F8_E5M2": np.dtype("u1"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def _fp8_table(exp_bits: int, bias: int, fn: bool) -> np.ndarray:
    """float32 value of each of the 256 fp8 codes (E4M3FN when ``fn``, else IEEE-like E5M2)."""
    man_bits = 7 - exp_bits
    out = np.empty(256, dtype=np.float32)
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        e = (b >> man_bits) & ((1 << exp_bits) - 1)
        m = b & ((1 << man_bits) - 1)
        emax = (1 << exp_bits) - 1
        if fn and e == emax and m == (1 << man_bits) - 1:
            v = float("nan")
        elif not fn and e == emax:
            v = float("inf") if m == 0 else float("nan")
        elif e == 0:
            v = m / (1 << man_bits) * 2.0 ** (1 - bias)
        else:
            v = (1 + m / (1 << man_bits)) * 2.0 ** (e - bias)
        out[b] = sign * v
    return out


_FP8 = {"F8_E4M3": _fp8_table(4, 7, True), "F8_E5M2": _fp8_table(5, 15, False)}


def to_float32(native: np.ndarray, dtype: str) -> np.ndarray:
    """float32 copy of a native-typed array (bf16 uint16 view, fp8 codes, ints, bools)."""
    if dtype == "BF16":
        return (native.astype(np.uint32) << 16).view(np.float32)
    if dtype in _FP8:
        return _FP8[dtype][native]
    with np.errstate(over="ignore"):
        return np.asarray(native, dtype=np.float32)


@dataclass(frozen=True)
class Entry:
    """One tensor's header record, with absolute file offsets resolved."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    nbytes: int
    file: Path


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _err(
    path: Path, msg: str, tensor: str | None = None, hint: str | None = None
) -> CheckpointError:
    return CheckpointError(
        msg, path=path, field=f"tensor '{tensor}'" if tensor else None, hint=hint
    )


def read_header(path: Path) -> tuple[list[Entry], dict[str, str]]:
    """Parse and validate a safetensors header; entries sorted by offset."""
    n, raw, size = _read_raw_header(path)
    header = _parse_header_json(path, raw)
    meta_raw = header.pop("__metadata__", None) or {}
    if not isinstance(meta_raw, dict) or not all(isinstance(v, str) for v in meta_raw.values()):
        raise _err(path, "__metadata__ must map strings to strings")
    data_start = 8 + n
    data_len = size - data_start
    entries = [_entry(path, name, rec, data_start, data_len) for name, rec in header.items()]
    entries.sort(key=lambda t: (t[0], t[1]))
    _check_coverage(path, entries, data_len)
    return [t[2] for t in entries], dict(meta_raw)


def _read_raw_header(path: Path) -> tuple[int, bytes, int]:
    """The declared header length, the header's bytes and the file size. The length is checked
    against a cap and the file before anything is read: a hostile length must not make us
    allocate it."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _err(
                    path,
                    f"truncated: file is {size} bytes, shorter than the 8-byte header length",
                    hint="re-download or re-export the file",
                )
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise _err(
                    path,
                    f"header length {n} bytes exceeds the {MAX_HEADER_BYTES}-byte cap",
                    hint="the file is corrupt or not safetensors",
                )
            if 8 + n > size:
                raise _err(
                    path,
                    f"header length {n} bytes exceeds the file size ({size} bytes): truncated or corrupt",
                    hint="re-download or re-export the file",
                )
            raw = f.read(n)
    except OSError as e:
        raise _err(path, f"cannot read file: {e.strerror or e}") from None
    return n, raw, size


def _parse_header_json(path: Path, raw: bytes) -> dict[str, Any]:
    from edgegate.safe_json import MAX_DEPTH, too_deep

    if too_deep(raw):  # json recurses per level: 200k '[' was a RecursionError
        raise _err(
            path,
            f"header JSON nests more than {MAX_DEPTH} levels",
            hint="the file is corrupt or not safetensors",
        )
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except _DuplicateKey as e:
        raise _err(
            path,
            "duplicate tensor name in header",
            tensor=e.key,
            hint="each tensor may appear once",
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _err(
            path,
            f"header is not valid UTF-8 JSON ({e})",
            hint="the file is corrupt or not safetensors",
        ) from None
    if not isinstance(header, dict):
        raise _err(path, "header JSON is not an object")
    return header


def _entry(
    path: Path, name: str, rec: Any, data_start: int, data_len: int
) -> tuple[int, int, Entry]:
    """One tensor's record, checked on its own: (begin, end) relative to the data section, and
    the entry. Every field is untrusted JSON, so each type is checked before it is used."""
    if not isinstance(rec, dict):
        raise _err(path, "header record is not an object", tensor=name)
    dtype = rec.get("dtype")
    if not isinstance(dtype, str) or dtype not in STORAGE_DTYPES:  # a list/dict is unhashable
        raise _err(
            path,
            f"unknown dtype {dtype!r}",
            tensor=name,
            hint=f"expected one of {', '.join(STORAGE_DTYPES)}",
        )
    shape = rec.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _err(path, f"shape {shape!r} is not a list of non-negative integers", tensor=name)
    offs = rec.get("data_offsets")
    if (
        not isinstance(offs, list)
        or len(offs) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
    ):
        raise _err(path, f"data_offsets {offs!r} is not a pair of integers", tensor=name)
    begin, end = offs
    if begin > end:
        raise _err(
            path,
            f"data_offsets [{begin}, {end}] are reversed (begin > end)",
            tensor=name,
            hint="lying header",
        )
    if not 0 <= begin <= end <= data_len:
        raise _err(
            path,
            f"data_offsets [{begin}, {end}] fall outside the data section (0..{data_len} bytes)",
            tensor=name,
            hint="truncated or lying header",
        )
    numel = 1
    for d in shape:
        numel *= d
    want = numel * STORAGE_DTYPES[dtype].itemsize
    if end - begin != want:
        raise _err(
            path,
            f"shape {shape} x {dtype} needs {want} bytes but data_offsets span {end - begin}",
            tensor=name,
            hint="lying header: shape, dtype or offsets are wrong",
        )
    return begin, end, Entry(name, dtype, tuple(shape), data_start + begin, end - begin, path)


def _check_coverage(path: Path, entries: list[tuple[int, int, Entry]], data_len: int) -> None:
    """Sorted entries must tile the data section exactly: an overlap means two tensors share
    bytes, a gap or a tail hides bytes no tensor accounts for."""
    pos, prev = 0, None
    for begin, end, ent in entries:
        if begin < pos:
            raise _err(
                path,
                f"data overlaps tensor '{prev}' (starts at {begin}, previous ends at {pos})",
                tensor=ent.name,
                hint="lying header",
            )
        if begin > pos:
            raise _err(
                path,
                f"gap of {begin - pos} unreferenced bytes before this tensor",
                tensor=ent.name,
                hint="tensors must cover the data section contiguously",
            )
        pos, prev = end, ent.name
    if pos != data_len:
        raise _err(
            path,
            f"data section is {data_len} bytes but tensors cover {pos}",
            hint="trailing bytes or truncation: re-export the file",
        )


def read_native_entry(e: Entry) -> np.ndarray:
    """The entry's bytes as a read-only memmap in its storage dtype and shape."""
    dt = STORAGE_DTYPES[e.dtype]
    if e.nbytes == 0:
        return np.zeros(e.shape, dtype=dt)
    try:
        return np.memmap(e.file, dtype=dt, mode="r", offset=e.start, shape=e.shape)
    except (OSError, ValueError) as err:
        raise _err(e.file, f"cannot map tensor data: {err}", tensor=e.name) from None


def load_json(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON file (config.json, the shard index) through the shared safe loader."""
    from edgegate import safe_json

    obj: dict[str, Any] = safe_json.load(path, error=CheckpointError, hint="fix or remove the file")
    return obj


def _shard_files(root: Path) -> list[Path]:
    """Safetensors files of a checkpoint, validated against the shard index if there is one."""
    if root.is_file():
        return [root]
    index = root / INDEX_NAME
    if not index.exists():
        files = sorted(p for p in root.glob("*.safetensors") if p.is_file())
        if not files:
            raise CheckpointError("no .safetensors files", path=root)
        return files
    wm = load_json(index).get("weight_map")
    if not isinstance(wm, dict) or not wm:
        raise CheckpointError("missing or empty 'weight_map'", path=index, field="weight_map")
    names: list[str] = []
    for tensor, fname in wm.items():
        # a NUL or a name over the filesystem's 255 bytes made is_file() raise (found by fuzzing)
        if (
            not isinstance(fname, str)
            or "/" in fname
            or "\\" in fname
            or fname in ("", ".", "..")
            or "\x00" in fname
            or len(fname.encode("utf-8", "surrogatepass")) > 255
        ):
            raise CheckpointError(
                f"shard name {excerpt(fname)} is not a file name in this directory",
                path=index,
                field=f"weight_map['{tensor}']",
            )
        if fname not in names:
            names.append(fname)
    for fname in names:
        if not (root / fname).is_file():
            raise CheckpointError(
                f"shard '{fname}' listed in the index is missing",
                path=index,
                hint="download every shard of the checkpoint",
            )
    return [root / f for f in names]


def _validate_index(root: Path, entries: dict[str, Entry]) -> None:
    index = root / INDEX_NAME
    if not root.is_dir() or not index.exists():
        return
    wm: dict[str, str] = load_json(index)["weight_map"]
    for tensor, fname in wm.items():
        stored = entries.get(tensor)
        if stored is None:
            raise CheckpointError(
                f"index maps it to '{fname}' but no shard contains it",
                path=index,
                field=f"tensor '{tensor}'",
            )
        if stored.file.name != fname:
            raise CheckpointError(
                f"index maps it to '{fname}' but it is stored in '{stored.file.name}'",
                path=index,
                field=f"tensor '{tensor}'",
            )
    extra = [n for n in entries if n not in wm]
    if extra:
        raise CheckpointError(
            f"{len(extra)} tensor(s) stored in shards but absent from the index, "
            f"first: {', '.join(extra[:3])}",
            path=index,
            hint="regenerate the index",
        )


# HF quantisers that pack several weights into one integer: element zero counts of the
# stored tensors say nothing about the model's weights, so reading them would mislead.
PACKED_QUANT_METHODS = frozenset(
    {"gptq", "awq", "bitsandbytes", "aqlm", "hqq", "quanto", "eetq", "exl2", "marlin"}
)


def _refuse_packed_quant(cfg_path: Path, config: dict[str, Any] | None) -> None:
    qc = (config or {}).get("quantization_config")
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    if isinstance(method, str) and method.lower() in PACKED_QUANT_METHODS:
        raise CheckpointError(
            f"quantised with '{method}' (packed integer weights) is not supported",
            path=cfg_path,
            field="quantization_config.quant_method",
            hint="scan the unquantised checkpoint, or a GGUF/MLX/compressed-tensors export",
        )


class SafetensorsCheckpoint(Checkpoint):
    """HF directory (single or sharded) or a single .safetensors file."""

    def __init__(self, root: Path, fmt: Format = Format.SAFETENSORS) -> None:
        files = _shard_files(root)
        entries: dict[str, Entry] = {}
        meta: dict[str, str] = {}
        for f in files:
            found, m = read_header(f)
            meta.update(m)
            for e in found:
                if e.name in entries:
                    raise CheckpointError(
                        f"stored in two shards: '{entries[e.name].file.name}' and '{f.name}'",
                        path=root,
                        field=f"tensor '{e.name}'",
                    )
                entries[e.name] = e
        _validate_index(root, entries)
        config = None
        cfg_path = root / "config.json" if root.is_dir() else root.parent / "config.json"
        if cfg_path.is_file():
            from edgegate.checkpoint.config_fields import check_shape_fields

            config = load_json(cfg_path)
            check_shape_fields(config, cfg_path)
        if fmt is Format.SAFETENSORS:
            _refuse_packed_quant(cfg_path, config)
        extra = [root / INDEX_NAME] if root.is_dir() and (root / INDEX_NAME).exists() else []
        super().__init__(
            path=root,
            format=fmt,
            files=files + extra,
            config=config,
            metadata={"__metadata__": meta},
        )
        self.entries = entries

    def tensors(self) -> Iterator[TensorInfo]:
        for e in self.entries.values():
            yield make_info(e.name, e.name, e.shape, e.dtype, e.nbytes, e.file)

    def entry(self, info: TensorInfo) -> Entry:
        e = self.entries.get(info.name)
        if e is None:
            raise CheckpointError(
                "no such tensor in this checkpoint", path=self.path, field=f"tensor '{info.name}'"
            )
        return e

    def read_native(self, info: TensorInfo) -> np.ndarray:
        return read_native_entry(self.entry(info))

    def read(self, info: TensorInfo) -> np.ndarray:
        e = self.entry(info)
        return to_float32(read_native_entry(e), e.dtype)
