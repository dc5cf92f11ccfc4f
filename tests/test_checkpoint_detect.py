"""Format detection and refusals: pickles are never unpickled, bad paths get clear errors."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from edgegate.checkpoint import Format, detect_format, open_checkpoint
from edgegate.errors import CheckpointError, InputError


class _Boom:
    """Unpickling this creates the marker file: proof that nothing unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def _evil_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(_Boom(marker), protocol=2))


def test_evil_pickle_is_a_valid_exploit(tmp_path: Path) -> None:
    # Control: the payload really does create the marker when unpickled.
    marker = tmp_path / "control"
    _evil_pickle(tmp_path / "x.pkl", marker)
    pickle.loads((tmp_path / "x.pkl").read_bytes())
    assert marker.exists()


@pytest.mark.parametrize(
    "name", ["pytorch_model.bin", "model.pt", "model.pth", "last.ckpt", "state.pkl"]
)
def test_pickle_files_refused_without_unpickling(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "PWNED"
    _evil_pickle(tmp_path / name, marker)
    (tmp_path / "config.json").write_text("{}")
    for target in (tmp_path, tmp_path / name):
        with pytest.raises(
            CheckpointError,
            match=r"refusing to load a pickle checkpoint.*never unpickles.*safetensors",
        ):
            open_checkpoint(target)
    assert not marker.exists()


def test_torch_zip_bin_refused(tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(CheckpointError, match="pickle"):
        detect_format(f)


def test_safetensors_preferred_over_pickle_in_hf_dir(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    _evil_pickle(tmp_path / "pytorch_model.bin", marker)
    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "model.safetensors"))
    assert detect_format(tmp_path) is Format.SAFETENSORS
    assert not marker.exists()


def test_missing_path() -> None:
    with pytest.raises(InputError, match="no such file or directory"):
        detect_format("/nonexistent/edgegate/model")


def test_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="empty directory"):
        detect_format(tmp_path)


def test_unknown_files(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(
        CheckpointError, match=r"no checkpoint files found \(saw: README.md, notes.txt\)"
    ):
        detect_format(tmp_path)
    with pytest.raises(CheckpointError, match="unknown checkpoint file type"):
        detect_format(tmp_path / "notes.txt")


def test_symlink_loop(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(InputError, match="symlink loop"):
        open_checkpoint(a)


def test_broken_symlink(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone", tmp_path / "link")
    with pytest.raises(InputError, match="broken symlink"):
        detect_format(tmp_path / "link")


def test_gguf_magic_without_suffix_and_multiple_ggufs(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"GGUF" + b"\0" * 20)
    assert detect_format(tmp_path / "model.bin") is Format.GGUF
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(CheckpointError, match=r"2 .gguf files.*pass the path"):
        detect_format(tmp_path)


def test_mlx_and_compressed_detection(tmp_path: Path) -> None:
    mlx_dir = tmp_path / "mlx"
    mlx_dir.mkdir()
    save_file(
        {"w": np.zeros(2, np.float32)},
        str(mlx_dir / "model.safetensors"),
        metadata={"format": "mlx"},
    )
    assert detect_format(mlx_dir) is Format.MLX
    ct = tmp_path / "ct"
    ct.mkdir()
    save_file({"w": np.zeros(2, np.float32)}, str(ct / "model.safetensors"))
    cfg = {"quantization_config": {"sparsity_config": {"format": "sparse-bitmask"}}}
    (ct / "config.json").write_text(json.dumps(cfg))
    assert detect_format(ct) is Format.COMPRESSED_TENSORS
    assert detect_format(ct / "model.safetensors") is Format.COMPRESSED_TENSORS
