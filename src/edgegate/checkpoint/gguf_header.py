"""GGUF header parser: metadata and tensor table, with precise errors and no vocab blow-up.

gguf.GGUFReader builds a numpy view per string of every metadata array, which takes
~50 s for a 262k-token vocabulary on a small CPU; we walk those arrays and keep only their
length. Layout (GGUF v2/v3, little-endian): magic "GGUF", u32 version, u64 tensor count,
u64 KV count, KVs (string key, u32 type, value), tensor infos (string name, u32 n_dims,
u64 dims in ggml order, u32 ggml type, u64 offset), padding to ``general.alignment``
(default 32), then tensor data.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf.constants import GGUFValueType as VT

from edgegate.errors import CheckpointError, excerpt

# struct formats of the scalar value types (gguf's own enum names the wire codes)
_SCALAR: dict[int, str] = {
    VT.UINT8: "<B",
    VT.INT8: "<b",
    VT.UINT16: "<H",
    VT.INT16: "<h",
    VT.UINT32: "<I",
    VT.INT32: "<i",
    VT.FLOAT32: "<f",
    VT.BOOL: "<?",
    VT.UINT64: "<Q",
    VT.INT64: "<q",
    VT.FLOAT64: "<d",
}
_STRING, _ARRAY = VT.STRING, VT.ARRAY
MAX_ARRAY_DEPTH = 16  # ggml's own loader reads no nested arrays at all
KEEP_ARRAY = 64  # arrays longer than this are summarised as {"array": type, "count": n}
MAX_DIMS = 4
HINT = "re-convert or re-download the file"


@dataclass(frozen=True)
class ArraySummary:
    """A long metadata array (vocabularies, merges): its element type and length only."""

    type: int
    count: int


@dataclass(frozen=True)
class RawTensor:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the contiguous (row) dimension
    qtype: int
    start: int  # absolute byte offset in the file
    nbytes: int


@dataclass(frozen=True)
class Header:
    version: int
    metadata: dict[str, Any]
    tensors: list[RawTensor]
    alignment: int
    data_start: int


class _Cursor:
    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.path = path

    def take(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > self.size:
            raise CheckpointError(
                f"truncated: the file ends inside {what} (needs byte {self.pos + n}, "
                f"file is {self.size} bytes)",
                path=self.path,
                hint=HINT,
            )
        p = self.pos
        self.pos += n
        return p

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("<Q", what)
        p = self.take(n, what)
        return self.buf[p : p + n].decode("utf-8", errors="replace")

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype], what)
        if vtype == _STRING:
            return self.string(what)
        if vtype != _ARRAY:
            raise CheckpointError(
                f"unknown metadata value type {vtype}", path=self.path, field=what, hint=HINT
            )
        if depth >= MAX_ARRAY_DEPTH:  # each level recurses: 100,000 levels was a RecursionError
            raise CheckpointError(
                f"arrays nested more than {MAX_ARRAY_DEPTH} levels deep",
                path=self.path,
                field=what,
                hint=HINT,
            )
        etype = self.unpack("<I", what)
        count = self.unpack("<Q", what)
        if etype in _SCALAR:
            width = struct.calcsize(_SCALAR[etype])
            p = self.take(count * width, what)
            if count > KEEP_ARRAY:
                return ArraySummary(etype, count)
            return list(struct.unpack_from(f"<{count}{_SCALAR[etype][1]}", self.buf, p))
        if count * 8 > self.size - self.pos:  # every string or array element needs >= 8 bytes
            raise CheckpointError(
                f"truncated: array of {count} elements cannot fit in the file",
                path=self.path,
                field=what,
                hint=HINT,
            )
        if etype == _STRING and count > KEEP_ARRAY:
            for _ in range(count):  # skip without decoding: only the count is kept
                self.take(self.unpack("<Q", what), what)
            return ArraySummary(etype, count)
        items = [self.value(etype, what, depth + 1) for _ in range(count)]
        return ArraySummary(etype, count) if count > KEEP_ARRAY else items


def read_header(path: Path, quant_sizes: dict[int, tuple[int, int]]) -> Header:
    """Parse ``path``; ``quant_sizes`` maps ggml type id -> (block size, bytes per block)."""
    size = path.stat().st_size
    if size < 24:
        raise CheckpointError(
            f"truncated: {size} bytes is shorter than a GGUF header", path=path, hint=HINT
        )
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        version, n_tensors, n_kv = _preamble(buf, path, size)
        cur = _Cursor(buf, path)
        cur.pos = 24
        meta = _read_metadata(cur, n_kv)
        align = _alignment(meta, path)
        infos = _read_tensor_infos(cur, n_tensors)
        data_start = -(-cur.pos // align) * align
    tensors = _lay_out(path, infos, quant_sizes, align, data_start, size)
    return Header(version, meta, tensors, align, data_start)


def _preamble(buf: mmap.mmap, path: Path, size: int) -> tuple[int, int, int]:
    """The fixed 24 bytes: magic, version, tensor and KV counts -> (version, n_tensors, n_kv)."""
    magic = buf[:4]
    if magic != b"GGUF":
        raise CheckpointError(
            f"bad magic {magic!r}, expected b'GGUF'",
            path=path,
            hint="not a GGUF file (or a corrupt one)",
        )
    version: int = struct.unpack_from("<I", buf, 4)[0]
    # a version that reads 2 or 3 the other way round is a big-endian file, not a corrupt one
    if struct.unpack_from(">I", buf, 4)[0] in (2, 3):
        raise CheckpointError(
            "big-endian GGUF is not supported",
            path=path,
            hint="convert it with llama.cpp for a little-endian machine",
        )
    if version not in (2, 3):
        raise CheckpointError(
            f"unsupported GGUF version {version} (expected 2 or 3)",
            path=path,
            hint="re-convert with a current llama.cpp",
        )
    n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)
    # each KV needs >= 13 bytes and each tensor info >= 28: refuse absurd counts up front
    if n_kv * 13 + n_tensors * 28 > size:
        raise CheckpointError(
            f"truncated or corrupt: header declares {n_tensors} tensors and {n_kv} metadata keys, more than a "
            f"{size}-byte file can hold",
            path=path,
            hint=HINT,
        )
    return version, n_tensors, n_kv


def _read_metadata(cur: _Cursor, n_kv: int) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}")
        vtype = cur.unpack("<I", f"metadata '{key}'")
        if key in meta:
            raise CheckpointError("duplicate metadata key", path=cur.path, field=key, hint=HINT)
        meta[key] = cur.value(vtype, f"metadata '{key}'")
    return meta


def _alignment(meta: dict[str, Any], path: Path) -> int:
    # every tensor offset is padded to it, so a zero or odd value would make the layout meaningless
    align = meta.get("general.alignment", 32)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise CheckpointError(
            f"general.alignment {align!r} is not a power of two", path=path, hint=HINT
        )
    return align


def _read_tensor_infos(cur: _Cursor, n_tensors: int) -> list[tuple[str, tuple[int, ...], int, int]]:
    """The tensor table as read: (name, dims in ggml order, ggml type, offset), unchecked
    beyond the dimension count; _lay_out checks them against the file."""
    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    for i in range(n_tensors):
        name = cur.string(f"tensor info #{i}")
        where = f"tensor '{name}'"
        n_dims = cur.unpack("<I", where)
        if not 1 <= n_dims <= MAX_DIMS:
            raise CheckpointError(
                f"{n_dims} dimensions (GGUF allows 1 to {MAX_DIMS})", path=cur.path, field=where
            )
        ne = tuple(cur.unpack("<Q", where) for _ in range(n_dims))
        qtype = cur.unpack("<I", where)
        offset = cur.unpack("<Q", where)
        infos.append((name, ne, qtype, offset))
    return infos


def _lay_out(
    path: Path,
    infos: list[tuple[str, tuple[int, ...], int, int]],
    quant_sizes: dict[int, tuple[int, int]],
    align: int,
    data_start: int,
    size: int,
) -> list[RawTensor]:
    """The tensors with their absolute extents, refused unless they lie as llama.cpp lays them.

    ggml's loader (gguf.cpp) requires the data section to be the tensors back to back, in
    table order, each padded to the alignment: offset == running padded size. Anything
    else (overlaps, gaps, reordering) llama.cpp refuses, so we refuse it too."""
    tensors: list[RawTensor] = []
    seen: set[str] = set()
    expected, previous = 0, None
    for name, ne, qtype, offset in infos:
        where = f"tensor '{name}'"
        if name in seen:
            raise CheckpointError("duplicate tensor name", path=path, field=where, hint=HINT)
        seen.add(name)
        nbytes = _tensor_nbytes(path, where, ne, qtype, quant_sizes, size)
        if offset % align:
            raise CheckpointError(
                f"data offset {offset} is not a multiple of the alignment {align}",
                path=path,
                field=where,
                hint=HINT,
            )
        start = data_start + offset
        if start + nbytes > size:
            raise CheckpointError(
                f"truncated or lying offset: tensor data [{start}, {start + nbytes}) runs past "
                f"the end of the file ({size} bytes)",
                path=path,
                field=where,
                hint=HINT,
            )
        if offset != expected:
            after = (
                f"the padded end of tensor {excerpt(previous, 80)}"
                if previous
                else "the start of the data section"
            )
            what = "overlaps earlier tensor data" if offset < expected else "leaves a gap"
            raise CheckpointError(
                f"data offset {offset} {what}: expected {expected}, {after} (llama.cpp's loader "
                "requires tensors back to back in table order)",
                path=path,
                field=where,
                hint=HINT,
            )
        expected += -(-nbytes // align) * align
        previous = name
        tensors.append(RawTensor(name, ne, qtype, start, nbytes))
    return tensors


def _tensor_nbytes(
    path: Path,
    where: str,
    ne: tuple[int, ...],
    qtype: int,
    quant_sizes: dict[int, tuple[int, int]],
    size: int,
) -> int:
    """Bytes of one tensor's data, from its type's block layout; dims that could not fit in
    the file are refused before they reach any arithmetic that trusts them."""
    if qtype not in quant_sizes:
        raise CheckpointError(
            f"unknown ggml type {qtype}",
            path=path,
            field=where,
            hint="upgrade the gguf package, or the file is corrupt",
        )
    block, type_size = quant_sizes[qtype]
    numel = 1
    for d in ne:
        numel *= d
    # each dim too: a zero dim makes numel 0 while another can be 2**63 (numpy then raises)
    if numel > size * 8 or max(ne) > size * 8 or ne[0] % block:
        raise CheckpointError(
            f"dims {list(ne)} do not fit the type's {block}-element blocks or the file",
            path=path,
            field=where,
            hint=HINT,
        )
    return numel // block * type_size
