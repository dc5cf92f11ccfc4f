"""compressed-tensors (llm-compressor) sparse checkpoints, decompressed in numpy.

Packing, as the library's sparse-bitmask / sparse-24-bitmask compressors write it, for a
dense weight ``W`` stored under prefix ``<m>`` (the ``.weight`` suffix dropped):
``<m>.shape`` (int, dense shape), ``<m>.bitmask`` (uint8, ``np.packbits(mask, axis=-1,
bitorder="little")``, one row per dense row), ``<m>.compressed`` (the kept values in
row-major order; 2:4 keeps exactly two per group of four, so its shape is [rows, cols/2]),
and for sparse-bitmask also ``<m>.row_offsets`` (index of each row's first value). The
dense tensor is zeros with the kept values scattered to the mask positions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegate.checkpoint.base import Format, TensorInfo
from edgegate.checkpoint.detect import SPARSE_FORMATS, sparsity_config
from edgegate.checkpoint.names import make_info
from edgegate.checkpoint.safetensors_reader import (
    STORAGE_DTYPES,
    Entry,
    SafetensorsCheckpoint,
    read_native_entry,
    to_float32,
)
from edgegate.errors import CheckpointError

PARTS = ("compressed", "bitmask", "shape", "row_offsets")


@dataclass(frozen=True)
class Packed:
    name: str  # logical name, "<m>.weight"
    compressed: Entry
    bitmask: Entry
    shape_entry: Entry
    row_offsets: Entry | None
    shape: tuple[int, ...]

    @property
    def parts(self) -> list[Entry]:
        return [
            e
            for e in (self.compressed, self.bitmask, self.shape_entry, self.row_offsets)
            if e is not None
        ]


class CompressedTensorsCheckpoint(SafetensorsCheckpoint):
    def __init__(self, root: Path) -> None:
        super().__init__(root, Format.COMPRESSED_TENSORS)
        cfg = dict(self.config or {})
        sc = sparsity_config(cfg)
        self.metadata["sparsity_config"] = sc
        self.sparse_format = (sc or {}).get("format", "dense")
        if self.sparse_format not in (*SPARSE_FORMATS, "dense"):
            raise CheckpointError(
                f"sparsity format '{self.sparse_format}' is not supported",
                path=root,
                field="sparsity_config.format",
                hint=f"supported: {', '.join(SPARSE_FORMATS)}",
            )
        qc = cfg.get("quantization_config") or cfg.get("compression_config") or {}
        qc = qc if isinstance(qc, dict) else {}
        qfmt = qc.get("format")
        if qc.get("config_groups") and qfmt not in (None, "dense"):
            raise CheckpointError(
                f"quantised compressed-tensors format '{qfmt}' is not supported here",
                path=root,
                field="quantization_config.format",
                hint="only sparse-bitmask / sparse-24-bitmask (unquantised values) can be read",
            )
        self.packed: dict[str, Packed] = {}
        for name in self.entries:
            if name.endswith(".compressed"):
                p = self._group(name[: -len(".compressed")])
                self.packed[p.name] = p
        self._hidden = {e.name for p in self.packed.values() for e in p.parts}
        clash = [n for n in self.packed if n in self.entries]
        if clash:
            raise CheckpointError(
                "stored both dense and compressed", path=root, field=f"tensor '{clash[0]}'"
            )

    def _group(self, prefix: str) -> Packed:
        e = self.entries
        where = f"tensor '{prefix}.compressed'"
        comp, bm, sh = (
            e.get(prefix + ".compressed"),
            e.get(prefix + ".bitmask"),
            e.get(prefix + ".shape"),
        )
        if comp is None or bm is None or sh is None:
            missing = [p for p in ("bitmask", "shape") if prefix + "." + p not in e]
            raise CheckpointError(
                f"missing part(s) {', '.join(missing)}",
                path=self.path,
                field=where,
                hint="the checkpoint is incomplete",
            )
        ro = e.get(prefix + ".row_offsets")
        if self.sparse_format == "sparse-bitmask" and ro is None:
            raise CheckpointError(
                "sparse-bitmask tensor lacks row_offsets", path=comp.file, field=where
            )
        if sh.dtype not in ("I64", "I32", "I16", "U64", "U32", "U16", "I8", "U8"):
            raise CheckpointError(
                f"shape part has dtype {sh.dtype}, expected integers", path=sh.file, field=where
            )
        dims = tuple(int(d) for d in np.asarray(read_native_entry(sh)).reshape(-1))
        if len(dims) != 2 or min(dims) < 0:
            raise CheckpointError(
                f"dense shape {list(dims)} is not a 2-D shape", path=sh.file, field=where
            )
        rows, cols = dims
        if bm.dtype not in ("U8", "I8", "BOOL") or bm.shape != (rows, (cols + 7) // 8):
            raise CheckpointError(
                f"bitmask is {bm.dtype} {list(bm.shape)}, expected uint8 [{rows}, {(cols + 7) // 8}]",
                path=bm.file,
                field=where,
            )
        if comp.dtype not in STORAGE_DTYPES:
            raise CheckpointError(f"values dtype {comp.dtype} unknown", path=comp.file, field=where)
        return Packed(prefix + ".weight", comp, bm, sh, ro, dims)

    def tensors(self) -> Iterator[TensorInfo]:
        emitted: set[str] = set()
        for name, e in self.entries.items():
            if name not in self._hidden:
                yield make_info(name, name, e.shape, e.dtype, e.nbytes, e.file)
                continue
            prefix = name.rsplit(".", 1)[0]
            p = self.packed.get(prefix + ".weight")
            if p is not None and p.name not in emitted:
                emitted.add(p.name)
                nbytes = sum(x.nbytes for x in p.parts)
                yield make_info(
                    p.name, p.name, p.shape, p.compressed.dtype, nbytes, p.compressed.file
                )

    def _decompress(self, p: Packed) -> np.ndarray:
        rows, cols = p.shape
        packed_bits = np.asarray(read_native_entry(p.bitmask)).view(np.uint8)
        mask = np.unpackbits(packed_bits, axis=-1, count=cols, bitorder="little").astype(bool)
        values = np.asarray(read_native_entry(p.compressed)).reshape(-1)
        kept = int(mask.sum())
        where = f"tensor '{p.name}'"
        if kept != values.size:
            raise CheckpointError(
                f"bitmask marks {kept} values but {values.size} are stored",
                path=p.compressed.file,
                field=where,
                hint="corrupt or lying compressed tensor",
            )
        if p.row_offsets is not None:
            offs = np.asarray(read_native_entry(p.row_offsets)).reshape(-1)
            counts = mask.sum(axis=1)
            expect = np.cumsum(counts) - counts
            if offs.shape != expect.shape or not np.array_equal(offs, expect):
                raise CheckpointError(
                    "row_offsets disagree with the bitmask", path=p.row_offsets.file, field=where
                )
        if self.sparse_format == "sparse-24-bitmask" and cols % 4 == 0:
            per_group = mask.reshape(rows, cols // 4, 4).sum(-1)
            if not np.all(per_group == 2):
                raise CheckpointError(
                    "2:4 bitmask does not keep exactly 2 of every 4",
                    path=p.bitmask.file,
                    field=where,
                )
        out = np.zeros((rows, cols), dtype=values.dtype)
        out[mask] = values
        return out

    def read_native(self, info: TensorInfo) -> np.ndarray:
        p = self.packed.get(info.name)
        return super().read_native(info) if p is None else self._decompress(p)

    def read(self, info: TensorInfo) -> np.ndarray:
        p = self.packed.get(info.name)
        if p is None:
            return super().read(info)
        return to_float32(self._decompress(p), p.compressed.dtype)
