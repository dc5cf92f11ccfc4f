"""Could the compressed artifact be faster at all on this runtime? Read from the files.

Decode on a CPU is bound by the bytes of weights streamed per token, and every runtime
edgegate drives multiplies stored tensors with dense kernels: none of them skips zeros stored
in a dense layout. So when the compressed checkpoint is in the dense one's format and stores
every tensor with the same storage type and the same number of bytes, there is no mechanism
by which it could run faster; a timing that says otherwise is noise or a machine effect, and
the speed verdict must not pass on it.

Only headers are read (tensor names, types, byte sizes). Where they cannot be read (an
endpoint URL, an unreadable file) the mechanism is unknown and the timing alone decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Runtimes with a kernel that exploits unstructured or 2:4 zeros in the formats edgegate
# loads. None at present: llama.cpp, transformers (CPU), MLX and ONNX Runtime's CPU provider
# all run dense matrix products over what is stored.
SPARSE_KERNELS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Mechanism:
    possible: bool | None  # None: the headers could not be compared
    reason: str
    tensors: int = 0  # tensors compared
    differing: int = 0  # of them, stored with another type or size

    def to_dict(self) -> dict[str, object]:
        return {
            "possible": self.possible,
            "reason": self.reason,
            "tensors": self.tensors,
            "differing": self.differing,
        }


def speed_mechanism(dense: str | Path, compressed: str | Path, runtime: str) -> Mechanism:
    from edgegate.checkpoint import open_checkpoint, pair_tensors
    from edgegate.errors import EdgegateError

    if any(isinstance(p, str) and "://" in p for p in (dense, compressed)):
        return Mechanism(None, "a model behind an endpoint: its stored bytes cannot be read")
    try:
        with open_checkpoint(dense) as d, open_checkpoint(compressed) as c:
            if d.format != c.format:
                return Mechanism(True, f"formats differ ({d.format.value} vs {c.format.value})")
            pairs = pair_tensors(d, c)
            fmt = c.format.value
    except (EdgegateError, OSError, ValueError) as exc:
        return Mechanism(None, f"the tensor headers could not be compared ({type(exc).__name__})")
    differing = [(a, b) for a, b in pairs if a.dtype != b.dtype or a.nbytes != b.nbytes]
    if differing:
        a, b = differing[0]
        saved = sum(x.nbytes for x, _ in pairs) - sum(y.nbytes for _, y in pairs)
        more_less = (
            f"{saved:,} bytes of weights fewer"
            if saved >= 0
            else f"{-saved:,} bytes of weights more"
        )
        return Mechanism(
            True,
            f"{len(differing)} of {len(pairs)} tensors stored differently "
            f"(e.g. {a.dtype} -> {b.dtype}); {more_less} to read",
            len(pairs),
            len(differing),
        )
    if runtime in SPARSE_KERNELS:
        return Mechanism(True, f"same bytes, but {runtime} has sparse kernels", len(pairs), 0)
    return Mechanism(
        False,
        f"no mechanism for a speedup: same format ({fmt}), same storage type and bytes "
        f"for all {len(pairs)} tensors, and {runtime} runs dense kernels",
        len(pairs),
        0,
    )
