"""Durable state for ``--data-dir``: one SQLite database (standard library) in that folder.

The store stays the source of truth in memory; after each change it writes the touched file
systems and paths here (write-through, one row per path), and loads everything at start-up.
Calls arrive under the store's lock, so one connection is shared.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
import threading
from pathlib import Path

from .store import FileSystem, Node

_SCHEMA = """
CREATE TABLE IF NOT EXISTS filesystems (name TEXT PRIMARY KEY, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS paths (
    fs TEXT NOT NULL, path TEXT NOT NULL, meta TEXT NOT NULL, data BLOB NOT NULL, uncommitted BLOB NOT NULL,
    PRIMARY KEY (fs, path)
);
"""


class SqlitePersistence:
    def __init__(self, data_dir: str | Path) -> None:
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path / "adls-emulator.sqlite3", check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def load(self) -> dict[str, FileSystem]:
        with self._lock:
            out: dict[str, FileSystem] = {}
            for name, meta in self._db.execute("SELECT name, meta FROM filesystems"):
                out[name] = FileSystem.from_meta(json.loads(meta))
            for fs, path, meta, data, unc in self._db.execute(
                    "SELECT fs, path, meta, data, uncommitted FROM paths"):
                if fs in out:
                    out[fs].nodes[path] = Node.from_record(json.loads(meta), data, pickle.loads(unc))
            return out

    def save_filesystem(self, fs: FileSystem) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO filesystems (name, meta) VALUES (?, ?)",
                             (fs.name, json.dumps(fs.to_meta())))

    def delete_filesystem(self, name: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM paths WHERE fs = ?", (name,))
            self._db.execute("DELETE FROM filesystems WHERE name = ?", (name,))
            self._db.execute("COMMIT")

    def save_node(self, fs: str, path: str, node: Node) -> None:
        meta, data, unc = node.to_record()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO paths (fs, path, meta, data, uncommitted) VALUES (?, ?, ?, ?, ?)",
                (fs, path, json.dumps(meta), data, pickle.dumps(unc, protocol=4)))

    def delete_node(self, fs: str, path: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM paths WHERE fs = ? AND path = ?", (fs, path))

    def close(self) -> None:
        with self._lock:
            self._db.close()
