"""A model file replaced by another of the same size with its mtime kept (``cp -p``,
``rsync -a``, an unpacked archive) is a different model to the BBQ answer cache (issue 22).

The cache memoised a file's sha256 by (path, size, mtime): after such a swap the next run
reused the old model's answers. The memo is now keyed by the file's identity (device, inode,
size, mtime and ctime; no user tool can set a ctime back). Real files, a real ``cp -p``, real
SQLite; the end-to-end case scores real BBQ items with llama.cpp on the fixture GGUFs, which
have the same size (same shapes, f16) and different weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgegate.bbq.cache import ResultCache

REPO = Path(__file__).resolve().parents[2]
GGUF = REPO / "fixtures" / "models" / "gguf"
BBQ = REPO / "fixtures" / "bbq"


def _ctime_moves_past(ns: int, probe: Path) -> None:
    """Return once a write gets a ctime after ``ns``: the kernel's file clock ticks coarsely, so
    two writes can share a ctime. A condition waited for, not a fixed delay."""
    for _ in range(1_000_000):
        probe.write_bytes(b".")
        if probe.stat().st_ctime_ns > ns:
            return
    raise AssertionError("the file clock did not move")


def _same_size_same_mtime(tmp_path: Path) -> tuple[Path, Path, os.stat_result]:
    a, b = tmp_path / "model.gguf", tmp_path / "other.gguf"
    a.write_bytes(b"A" * 65536)
    b.write_bytes(b"B" * 65536)
    st = a.stat()
    os.utime(
        b, ns=(st.st_atime_ns, st.st_mtime_ns)
    )  # as unpacked from archives with the same dates
    return a, b, st


def test_cp_p_over_the_model_is_a_new_model(tmp_path: Path) -> None:
    a, b, st = _same_size_same_mtime(tmp_path)
    cache = ResultCache(tmp_path / "bbq.sqlite")
    first = cache.model_hash(a)
    _ctime_moves_past(st.st_ctime_ns, tmp_path / "probe")
    subprocess.run(["cp", "-p", str(b), str(a)], check=True)  # in place: same inode, size and mtime
    now = a.stat()
    assert (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    second = cache.model_hash(a)
    assert second != first, "the cache kept the replaced model's digest"
    assert second == ResultCache(tmp_path / "fresh.sqlite").model_hash(a)
    cache.close()


def test_renamed_over_the_model_is_a_new_model(tmp_path: Path) -> None:
    """rsync -a writes a temporary file and renames it over the old one: a new inode."""
    a, b, st = _same_size_same_mtime(tmp_path)
    cache = ResultCache(tmp_path / "bbq.sqlite")
    first = cache.model_hash(a)
    os.replace(b, a)
    now = a.stat()
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert cache.model_hash(a) != first
    assert (
        cache.model_hash(a)
        == hashlib.sha256(hashlib.sha256(b"B" * 65536).hexdigest().encode()).hexdigest()
    )
    cache.close()


def test_memo_hit_for_an_unchanged_file(tmp_path: Path) -> None:
    a, _, st = _same_size_same_mtime(tmp_path)
    cache = ResultCache(tmp_path / "bbq.sqlite")
    cache.model_hash(a)
    rows = cache.db.execute(
        "SELECT path, ino, size, mtime_ns, ctime_ns FROM file_digests"
    ).fetchall()
    assert rows == [(str(a.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, a.stat().st_ctime_ns)]
    cache.close()


@pytest.mark.skipif(
    not (BBQ.is_dir() and (GGUF / "dense-f16.gguf").exists()), reason="fixtures missing"
)
def test_bbq_rerun_after_a_same_size_swap_scores_the_new_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    dense, wanda = GGUF / "dense-f16.gguf", GGUF / "wanda50-f16.gguf"
    assert dense.stat().st_size == wanda.stat().st_size
    work = tmp_path / "w"
    work.mkdir()
    model, ref = work / "model.gguf", work / "ref.gguf"
    shutil.copyfile(dense, model)
    shutil.copyfile(dense, ref)

    def run() -> dict[str, object]:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgegate.cli",
                "bbq",
                "run",
                str(ref),
                str(model),
                "--runtime",
                "llamacpp",
                "--data",
                str(BBQ),
                "--items",
                "8",
                "--disambig-items",
                "0",
                "--no-permute",
                "--min-items",
                "2",
                "--threads",
                "1",
                "--cache-dir",
                str(work / "cache"),
                "--json",
                "--allow-inconclusive",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode in (0, 1), r.stderr[-2000:]
        doc: dict[str, object] = json.loads(r.stdout)
        return doc

    run()
    st = model.stat()
    _ctime_moves_past(st.st_ctime_ns, work / "probe")
    swapped = work / "swap.gguf"
    shutil.copyfile(wanda, swapped)
    os.utime(swapped, ns=(st.st_atime_ns, st.st_mtime_ns))
    subprocess.run(["cp", "-p", str(swapped), str(model)], check=True)
    assert (model.stat().st_size, model.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    run()
    with sqlite3.connect(work / "cache" / "bbq.sqlite") as c:
        models = {m for (m,) in c.execute("SELECT DISTINCT model FROM answers")}
    want = {ResultCache(tmp_path / "k.sqlite").model_hash(p) for p in (dense, wanda)}
    assert models == want, "the swapped-in model was answered from the old model's cache"
