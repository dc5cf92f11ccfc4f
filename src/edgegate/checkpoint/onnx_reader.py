"""ONNX reader: float initializers (inline or external data, memory-mapped), HF names.

The graph is loaded without external data and never executed. Exporters name weights
``onnx::MatMul_123`` and keep the module path in the consuming node's name
(``/model/layers.0/self_attn/q_proj/MatMul``), so canonical names come from the consumer's
scope. A MatMul's B input is ``[in, out]``: it is transposed to HF ``[out, in]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.checkpoint.base import Checkpoint, Format, ModuleKind, TensorInfo
from edgegate.checkpoint.names import kind_of, make_info
from edgegate.checkpoint.safetensors_reader import to_float32
from edgegate.errors import CheckpointError, excerpt

MAX_NUMEL = 1 << 40  # a trillion elements in one tensor: far beyond any model, and int64-safe

# ONNX TensorProto data types we expose -> (our dtype name, numpy storage type).
_TYPES: dict[int, tuple[str, str]] = {
    1: ("F32", "<f4"),
    10: ("F16", "<f2"),
    11: ("F64", "<f8"),
    16: ("BF16", "<u2"),
    17: ("F8_E4M3", "u1"),
    19: ("F8_E5M2", "u1"),
}
_HF_ROOTS = ("model", "lm_head")
_PARAM_RE = re.compile(r"^[A-Za-z_][\w.]*\.(weight|bias)$")
_WEIGHT_INPUT = {
    "MatMul": 1,
    "Gemm": 1,
    "Gather": 0,
    "Mul": 1,
    "SimplifiedLayerNormalization": 1,
    "LayerNormalization": 1,
    "SkipSimplifiedLayerNormalization": 2,
}
# A consumer's scope names a parameter only if its role fits the op (a Mul inside a norm
# scales by the norm weight; a Mul elsewhere multiplies by a folded constant).
_ANY = lambda k: True  # noqa: E731
_NORM = lambda k: k is ModuleKind.NORM  # noqa: E731
_ROLE_OK = {
    "MatMul": _ANY,
    "Gemm": _ANY,
    "Gather": lambda k: k is ModuleKind.EMBED,
    "Mul": _NORM,
    "SimplifiedLayerNormalization": _NORM,
    "LayerNormalization": _NORM,
    "SkipSimplifiedLayerNormalization": _NORM,
}


@dataclass(frozen=True)
class _Init:
    name: str
    dims: tuple[int, ...]
    dtype: str
    storage: str
    transpose: bool
    external: tuple[Path, int, int] | None  # file, offset, length
    proto: Any


def _unwrap(name: str) -> str:
    """Drop a wrapper module's prefix (``m.model.layers.0...`` -> ``model.layers.0...``):
    exporters name parameters by their path from the exported root module."""
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p in _HF_ROOTS:
            return ".".join(parts[i:]) if i and all(q.isidentifier() for q in parts[:i]) else name
    return name


def _scope(node_name: str) -> str | None:
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return None
    return ".".join(parts[:-1])


class ONNXCheckpoint(Checkpoint):
    def __init__(self, path: Path) -> None:
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # protobuf DecodeError and friends
            raise CheckpointError(
                f"not a readable ONNX model: {type(e).__name__}: {e}",
                path=path,
                hint="re-export the model",
            ) from None
        graph = model.graph
        consumers: dict[str, list[tuple[Any, int]]] = {}
        for node in graph.node:
            for i, inp in enumerate(node.input):
                consumers.setdefault(inp, []).append((node, i))
        self._inits: dict[str, _Init] = {}
        infos: list[TensorInfo] = []
        used: set[str] = set()
        skipped: list[str] = []
        extra_files: set[Path] = set()
        for init in graph.initializer:
            kind = _TYPES.get(init.data_type)
            if kind is None or len(init.dims) == 0:
                continue  # int shape constants, scalars: not weights
            dims = tuple(int(d) for d in init.dims)
            # protobuf dims are int64: a negative or absurd one made numpy raise ValueError
            # ("internal error", exit 3); it is a corrupt file, so refuse it as one (exit 2)
            if any(d < 0 for d in dims) or math.prod(dims) > MAX_NUMEL:
                raise CheckpointError(
                    f"dims {excerpt(list(dims), 120)} are not a valid tensor shape "
                    f"(negative, or more than {MAX_NUMEL} elements)",
                    path=path,
                    field=f"initializer {excerpt(init.name, 120)}",
                    hint="re-export the model",
                )
            canonical, transpose = self._canonical(init.name, consumers.get(init.name, []))
            if not _PARAM_RE.match(canonical):
                skipped.append(init.name)  # folded constants (rotary tables, masks): not weights
                continue
            if len(dims) != 2:
                transpose = False
            if canonical in used:  # two initializers resolved to one module: keep them apart
                canonical = f"{canonical}#{init.name}"
            used.add(canonical)
            external = (
                self._external(path, init)
                if init.data_location == onnx.TensorProto.EXTERNAL
                else None
            )
            if external:
                extra_files.add(external[0])
            rec = _Init(init.name, dims, kind[0], kind[1], transpose, external, init)
            numel = int(np.prod(dims)) if dims else 1
            nbytes = numel * np.dtype(kind[1]).itemsize
            shape = (dims[1], dims[0]) if transpose else dims
            self._inits[init.name] = rec
            infos.append(
                make_info(
                    init.name, canonical, shape, kind[0], nbytes, external[0] if external else path
                )
            )
        self._infos = infos
        meta = {p.key: p.value for p in model.metadata_props}
        config = {
            "producer_name": model.producer_name,
            "opset": [o.version for o in model.opset_import],
        }
        super().__init__(
            path=path,
            format=Format.ONNX,
            files=[path, *sorted(extra_files)],
            config=config,
            metadata={"onnx_metadata": meta, "onnx_skipped_initializers": skipped},
        )

    @staticmethod
    def _canonical(name: str, uses: list[tuple[Any, int]]) -> tuple[str, bool]:
        transpose = False
        derived = None
        for node, idx in uses:
            if node.op_type == "MatMul" and idx == 1:
                transpose = True
            elif node.op_type == "Gemm" and idx == 1:
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                transpose = trans_b == 0
            scope = _scope(node.name)
            if derived is not None or not scope:
                continue
            leaf_kind = kind_of(scope + ".weight")
            if _WEIGHT_INPUT.get(node.op_type) == idx and _ROLE_OK[node.op_type](leaf_kind):
                derived = f"{scope}.weight"
            elif (node.op_type == "Add" and idx == 1 and leaf_kind.prunable) or (
                node.op_type == "Gemm" and idx == 2
            ):
                derived = f"{scope}.bias"
        if _PARAM_RE.match(name):
            return _unwrap(name), transpose
        return _unwrap(derived or name), transpose

    @staticmethod
    def _external(model_path: Path, init: Any) -> tuple[Path, int, int]:
        kv = {e.key: e.value for e in init.external_data}
        loc = kv.get("location", "")
        where = f"initializer '{init.name}'"
        target = (model_path.parent / loc).resolve()
        if not loc or Path(loc).is_absolute() or model_path.parent.resolve() not in target.parents:
            raise CheckpointError(
                f"external data location {loc!r} is not a file beside the model",
                path=model_path,
                field=where,
                hint="external data must live in the model's directory",
            )
        if not target.is_file():
            raise CheckpointError(
                f"external data file '{loc}' is missing",
                path=model_path,
                field=where,
                hint="copy the .onnx together with its data file(s)",
            )
        try:
            offset = int(kv.get("offset", "0"))
            length = int(kv["length"]) if "length" in kv else target.stat().st_size - offset
        except ValueError:
            raise CheckpointError(
                "external data offset/length are not integers", path=model_path, field=where
            ) from None
        return target, offset, length

    def tensors(self) -> Iterator[TensorInfo]:
        yield from self._infos

    def _rec(self, info: TensorInfo) -> _Init:
        r = self._inits.get(info.name)
        if r is None:
            raise CheckpointError(
                "no such initializer", path=self.path, field=f"tensor '{info.name}'"
            )
        return r

    def read_native(self, info: TensorInfo) -> np.ndarray:
        r = self._rec(info)
        dt = np.dtype(r.storage)
        numel = int(np.prod(r.dims))
        where = f"tensor '{r.name}'"
        if r.external is not None:
            f, offset, length = r.external
            if length != numel * dt.itemsize or offset + length > f.stat().st_size or offset < 0:
                raise CheckpointError(
                    f"external data [{offset}, +{length}) does not hold {list(r.dims)} x {r.dtype} "
                    f"within '{f.name}' ({f.stat().st_size} bytes)",
                    path=self.path,
                    field=where,
                )
            arr: np.ndarray = (
                np.zeros(r.dims, dt)
                if numel == 0
                else np.memmap(f, dtype=dt, mode="r", offset=offset, shape=r.dims)
            )
        elif r.proto.HasField("raw_data"):
            raw = r.proto.raw_data
            if len(raw) != numel * dt.itemsize:
                raise CheckpointError(
                    f"raw_data has {len(raw)} bytes, {list(r.dims)} x {r.dtype} needs "
                    f"{numel * dt.itemsize}",
                    path=self.path,
                    field=where,
                )
            arr = np.frombuffer(raw, dtype=dt).reshape(r.dims)
        else:
            arr = self._typed(r)
        return arr.T if r.transpose else arr

    def _typed(self, r: _Init) -> np.ndarray:
        # Values in typed fields (float_data, int32_data for 16-bit types) rather than raw bytes.
        p = r.proto
        dt = np.dtype(r.storage)
        if r.dtype in ("F32",):
            vals = np.asarray(p.float_data, dtype=dt)
        elif r.dtype == "F64":
            vals = np.asarray(p.double_data, dtype=dt)
        else:  # 16-bit and 8-bit types travel as int32_data holding the raw bit patterns
            vals = np.asarray(p.int32_data, dtype=np.int64).astype(dt.str.replace("f", "u"))
            vals = vals.view(dt)
        if vals.size != int(np.prod(r.dims)):
            raise CheckpointError(
                f"holds {vals.size} values, shape {list(r.dims)} needs {int(np.prod(r.dims))}",
                path=self.path,
                field=f"tensor '{r.name}'",
            )
        return vals.reshape(r.dims)

    def read(self, info: TensorInfo) -> np.ndarray:
        return to_float32(self.read_native(info), self._rec(info).dtype)
