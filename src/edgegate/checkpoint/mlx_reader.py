"""mlx-lm directory reader: safetensors + MLX affine group quantisation, dequantised in numpy.

A quantised linear is stored as ``<m>.weight`` (uint32, ``bits``-bit codes packed as a
little-endian bit stream along each row), ``<m>.scales`` and ``<m>.biases`` (one per
``group_size`` consecutive inputs); the value is ``code * scale + bias`` (mx.dequantize).
Group size and bits come from config.json ``quantization`` (global, with per-module
overrides keyed by module path, as mlx-lm writes them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.checkpoint.base import Format, TensorInfo
from edgegate.checkpoint.names import make_info
from edgegate.checkpoint.safetensors_reader import (
    Entry,
    SafetensorsCheckpoint,
    read_native_entry,
    to_float32,
)
from edgegate.errors import CheckpointError


@dataclass(frozen=True)
class QuantSpec:
    weight: Entry
    scales: Entry
    biases: Entry
    group_size: int
    bits: int
    in_features: int


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """``count`` unsigned ``bits``-bit codes per row from uint32 words (little-endian stream)."""
    rows = packed.shape[0]
    as_bytes = np.ascontiguousarray(packed, dtype="<u4").view(np.uint8).reshape(rows, -1)
    if bits == 8:
        return as_bytes[:, :count].astype(np.uint32)
    if bits == 4:
        out = np.empty((rows, as_bytes.shape[1] * 2), dtype=np.uint32)
        out[:, 0::2] = as_bytes & 0x0F
        out[:, 1::2] = as_bytes >> 4
        return out[:, :count]
    stream = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, : count * bits]
    weights = (1 << np.arange(bits, dtype=np.uint32)).astype(np.uint32)
    return stream.reshape(rows, count, bits).astype(np.uint32) @ weights


def _round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> nearest bf16 (ties to even), kept as float32."""
    u = x.astype(np.float32).view(np.uint32)
    u = (u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return u.view(np.float32)


def _round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return _round_bf16(x)
    if dtype == "F16":
        return x.astype(np.float16).astype(np.float32)
    return x


def dequantize(
    packed: np.ndarray,
    scales: np.ndarray,
    biases: np.ndarray,
    group_size: int,
    bits: int,
    dtype: str = "F32",
) -> np.ndarray:
    """numpy twin of mx.dequantize (affine mode) for 2-D ``packed``.

    MLX computes ``code * scale`` and ``+ bias`` in the scales' dtype, rounding after each
    step; doing the same makes the result (and so its zero count) bit-exact with MLX.
    """
    rows, n_groups = scales.shape
    codes = unpack_codes(packed, bits, n_groups * group_size).reshape(rows, n_groups, group_size)
    out = _round_to(codes.astype(np.float32) * scales[..., None], dtype)
    out = _round_to(out + biases[..., None], dtype)
    return out.reshape(rows, n_groups * group_size)


class MLXCheckpoint(SafetensorsCheckpoint):
    def __init__(self, root: Path) -> None:
        super().__init__(root, Format.MLX)
        qcfg: dict[str, Any] = {}
        if self.config and isinstance(self.config.get("quantization"), dict):
            qcfg = dict(self.config["quantization"])
            self.metadata["quantization"] = qcfg
        self.quant: dict[str, QuantSpec] = {}
        for name, e in self.entries.items():
            if (
                not name.endswith(".weight")
                or (base := name[: -len(".weight")]) + ".scales" not in self.entries
            ):
                continue
            self.quant[name] = self._spec(base, e, qcfg)
        self._hidden = {s.scales.name for s in self.quant.values()} | {
            s.biases.name for s in self.quant.values()
        }

    def _spec(self, base: str, w: Entry, qcfg: dict[str, Any]) -> QuantSpec:
        scales = self.entries[base + ".scales"]
        biases = self.entries.get(base + ".biases")
        here = f"tensor '{w.name}'"
        per = qcfg.get(base)
        params = per if isinstance(per, dict) else qcfg
        mode = params.get("mode", "affine")
        if mode != "affine" or biases is None:
            raise CheckpointError(
                f"MLX quantisation mode '{mode}' is not supported (only affine with biases)",
                path=w.file,
                field=here,
                hint="re-quantise with mlx_lm.convert -q (affine)",
            )
        if w.dtype != "U32" or len(w.shape) != 2 or len(scales.shape) != 2:
            raise CheckpointError(
                f"quantised weight must be 2-D uint32 with 2-D scales, got {w.dtype} {list(w.shape)}",
                path=w.file,
                field=here,
            )
        gs, bits = params.get("group_size"), params.get("bits")
        if (
            not isinstance(gs, int)
            or not isinstance(bits, int)
            or bits not in (2, 3, 4, 5, 6, 8)
            or gs <= 0
        ):
            raise CheckpointError(
                f"config.json 'quantization' gives group_size={gs!r}, bits={bits!r}",
                path=self.path,
                field=here,
                hint="expected an int group_size and bits in 2,3,4,5,6,8",
            )
        rows, words = w.shape
        n_in = scales.shape[1] * gs
        if scales.shape[0] != rows or biases.shape != scales.shape or words * 32 != n_in * bits:
            raise CheckpointError(
                f"packed shape {list(w.shape)}, scales {list(scales.shape)}, biases {list(biases.shape)} do not "
                f"fit group_size={gs}, bits={bits}",
                path=w.file,
                field=here,
                hint="config.json and weights disagree",
            )
        return QuantSpec(w, scales, biases, gs, bits, n_in)

    def tensors(self) -> Iterator[TensorInfo]:
        for name, e in self.entries.items():
            if name in self._hidden:
                continue
            q = self.quant.get(name)
            if q is None:
                yield make_info(name, name, e.shape, e.dtype, e.nbytes, e.file)
            else:
                nbytes = q.weight.nbytes + q.scales.nbytes + q.biases.nbytes
                yield make_info(
                    name,
                    name,
                    (e.shape[0], q.in_features),
                    f"Q{q.bits}_G{q.group_size}",
                    nbytes,
                    e.file,
                )

    def read(self, info: TensorInfo) -> np.ndarray:
        q = self.quant.get(info.name)
        if q is None:
            return super().read(info)
        scales = to_float32(read_native_entry(q.scales), q.scales.dtype)
        biases = to_float32(read_native_entry(q.biases), q.biases.dtype)
        return dequantize(
            read_native_entry(q.weight), scales, biases, q.group_size, q.bits, q.scales.dtype
        )

    def read_native(self, info: TensorInfo) -> np.ndarray:
        if info.name in self.quant:
            return self.read(
                info
            )  # codes mean nothing alone: zeros exist only after dequantisation
        return super().read_native(info)
