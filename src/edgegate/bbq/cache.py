"""SQLite cache of scored BBQ answers, so a killed run resumes and a re-run is instant.

Key: (model file hash, backend, prompt/template hash, item uid, seed, rotation). The database
runs in WAL mode and the scorer commits after every small batch, so a SIGKILL loses at most
the batch in flight and never leaves a half-written row.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from edgegate.bbq.metrics import Answer
from edgegate.errors import InputError
from edgegate.settings import default_cache_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
  model TEXT NOT NULL, backend TEXT NOT NULL, prompt TEXT NOT NULL,
  uid TEXT NOT NULL, seed INTEGER NOT NULL, rotation INTEGER NOT NULL,
  choice INTEGER, detail TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (model, backend, prompt, uid, seed, rotation)
);
CREATE TABLE IF NOT EXISTS file_digests (
  path TEXT PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL
);
"""
# (The older table ``file_hashes`` keyed a digest by path, size and mtime only: a file
# replaced by another of the same size with its mtime kept (cp -p, rsync -a, an unpacked
# archive) reused the old model's answers. It is left unread in old caches.)


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes whenever a file's bytes may have: a new file (rename, rsync) has a new
    inode, and any write sets the ctime, which no user tool can set back (unlike mtime)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ResultCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=30.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise InputError(
                f"cannot open the result cache: {e}",
                path=self.path,
                hint="pass another --cache-dir",
            ) from e

    @classmethod
    def in_dir(cls, cache_dir: str | Path | None) -> ResultCache:
        return cls(Path(cache_dir or default_cache_dir()) / "bbq.sqlite")

    def model_hash(self, path: str | Path) -> str:
        """sha256 of a model file (or of every file in a model folder), memoised by the file's
        identity (device, inode, size, mtime, ctime) so re-runs do not re-read gigabytes."""
        p = Path(path).resolve()
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        if not files:
            raise InputError("no model files found", path=p)
        h = hashlib.sha256()
        for f in files:
            if p.is_dir():  # a renamed file inside a model folder is a different model
                h.update(str(f.relative_to(p)).encode())
            h.update(self._file_hash(f).encode())
        return h.hexdigest()

    @staticmethod
    def endpoint_hash(info: Mapping[str, object]) -> str:
        """Key for a model behind a server (no file to hash): its base URL, the model id the
        server reports and the dialect, from ``backend.info()``."""
        ident = {k: str(info.get(k, "")) for k in ("runtime", "base_url", "model", "dialect")}
        return "endpoint:" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    def _file_hash(self, f: Path) -> str:
        before = _identity(f.stat())
        row = self.db.execute(
            "SELECT sha256 FROM file_digests WHERE path=? AND dev=? AND ino=? AND size=? AND mtime_ns=? AND ctime_ns=?",
            (str(f), *before),
        ).fetchone()
        if row:
            return str(row[0])
        h = hashlib.sha256()
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        digest = h.hexdigest()
        if (
            _identity(f.stat()) == before
        ):  # changed while being read: use the digest, do not memoise it
            with self.db:
                self.db.execute(
                    "INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (str(f), *before, digest),
                )
        return digest

    def get(
        self, model: str, backend: str, prompt: str, keys: Iterable[tuple[str, int, int]]
    ) -> dict[tuple[str, int, int], Answer]:
        wanted = set(keys)
        out: dict[tuple[str, int, int], Answer] = {}
        rows = self.db.execute(
            "SELECT uid, seed, rotation, choice, detail FROM answers WHERE model=? AND backend=? AND prompt=?",
            (model, backend, prompt),
        )
        for uid, seed, rot, choice, detail in rows:
            k = (uid, seed, rot)
            if k in wanted:
                out[k] = Answer(uid, seed, rot, choice, detail)
        return out

    def put(self, model: str, backend: str, prompt: str, answers: Sequence[Answer]) -> None:
        """Store one batch in one transaction (committed before returning)."""
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (model, backend, prompt, a.uid, a.seed, a.rotation, a.choice, a.detail)
                    for a in answers
                ],
            )

    def count(self, model: str, backend: str, prompt: str) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM answers WHERE model=? AND backend=? AND prompt=?",
            (model, backend, prompt),
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def scoring_lock(
        self, model: str, backend: str, prompt: str, on_wait: Callable[[], None] | None = None
    ) -> Iterator[None]:
        """One process at a time scores a (model, backend, prompt) into this cache: two runs
        sharing a cache (two PRs against one dense model) once both scored the dense model.
        The second waits, then finds the answers cached. An advisory ``flock``: the kernel
        drops it when its holder dies, so a killed run never blocks the next one."""
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the runs then duplicate work, as before
            yield
            return
        key = hashlib.sha256("\0".join((model, backend, prompt)).encode()).hexdigest()[:24]
        where = self.path.parent / "locks" / f"{key}.lock"
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            fh = where.open("a")
        except OSError:  # a read-only cache folder: scoring still works, unshared
            yield
            return
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
