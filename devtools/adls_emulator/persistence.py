"""Durable state for ``--data-dir``: one SQLite database (standard library) in that folder.

The store stays the source of truth in memory; after each change it writes the touched file
systems and paths here (write-through), and loads everything at start-up. Calls arrive under the
store's lock, so one connection is shared.

A path's row holds its properties; its content is kept as blocks (``blocks``: committed bytes from
an offset) and its uncommitted appends as rows of their own (``pending``), so that an append or a
flush writes what it adds, not the whole file again: a file written in appends costs its size once,
not once per append. A path whose content changed otherwise (replaced, or bytes rewritten) is
written whole again.
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
CREATE TABLE IF NOT EXISTS deleted_paths (
    fs TEXT NOT NULL, deletion_id TEXT NOT NULL, record BLOB NOT NULL, PRIMARY KEY (fs, deletion_id)
);
CREATE TABLE IF NOT EXISTS deleted_filesystems (
    name TEXT NOT NULL, version TEXT NOT NULL, record BLOB NOT NULL, PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    fs TEXT NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL, bytes BLOB NOT NULL,
    PRIMARY KEY (fs, path, offset)
);
CREATE TABLE IF NOT EXISTS pending (
    fs TEXT NOT NULL, path TEXT NOT NULL, n INTEGER NOT NULL, position INTEGER NOT NULL, bytes BLOB NOT NULL,
    PRIMARY KEY (fs, path, n)
);
"""


def _nodes_record(nodes: dict[str, Node]) -> dict:
    return {path: node.to_record() for path, node in nodes.items()}


def _nodes_from(record: dict) -> dict[str, Node]:
    return {path: Node.from_record(*parts) for path, parts in record.items()}


def _deleted_path_record(entry: dict) -> bytes:
    return pickle.dumps({**{k: v for k, v in entry.items() if k != "nodes"}, "nodes": _nodes_record(entry["nodes"])},
                        protocol=4)


def _deleted_path_from(blob: bytes) -> dict:
    entry = pickle.loads(blob)
    entry["nodes"] = _nodes_from(entry["nodes"])
    return entry


_NO_APPENDS = pickle.dumps([], protocol=4)


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
        # what is written of each path: (its content object, bytes in blocks, its uncommitted list, rows)
        self._saved: dict[tuple[str, str], tuple[bytearray, int, list, int]] = {}

    def load(self) -> dict[str, FileSystem]:
        with self._lock:
            out: dict[str, FileSystem] = {}
            for name, meta in self._db.execute("SELECT name, meta FROM filesystems"):
                out[name] = FileSystem.from_meta(json.loads(meta))
            blocks: dict[tuple[str, str], list[bytes]] = {}
            for fs, path, block in self._db.execute("SELECT fs, path, bytes FROM blocks ORDER BY fs, path, offset"):
                blocks.setdefault((fs, path), []).append(block)
            pending: dict[tuple[str, str], list[tuple[int, bytes]]] = {}
            for fs, path, position, block in self._db.execute(
                    "SELECT fs, path, position, bytes FROM pending ORDER BY fs, path, n"):
                pending.setdefault((fs, path), []).append((position, block))
            for fs, path, meta, data, unc in self._db.execute(
                    "SELECT fs, path, meta, data, uncommitted FROM paths"):
                if fs in out:
                    key = (fs, path)
                    out[fs].nodes[path] = Node.from_record(json.loads(meta), data + b"".join(blocks.get(key, ())),
                                                           pickle.loads(unc) + pending.get(key, []))
            for fs, record in self._db.execute("SELECT fs, record FROM deleted_paths ORDER BY fs, deletion_id"):
                if fs in out:
                    out[fs].deleted.append(_deleted_path_from(record))
            return out

    # Soft-deleted paths (a file system's ``deleted`` entries) and file systems.
    def save_deleted_path(self, fs: str, entry: dict) -> None:
        record = _deleted_path_record(entry)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO deleted_paths (fs, deletion_id, record) VALUES (?, ?, ?)",
                             (fs, entry["deletion_id"], record))

    def drop_deleted_path(self, fs: str, deletion_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM deleted_paths WHERE fs = ? AND deletion_id = ?", (fs, deletion_id))

    def save_deleted_filesystem(self, name: str, version: str, fs: FileSystem, when: float, days: int) -> None:
        record = pickle.dumps({"meta": fs.to_meta(), "nodes": _nodes_record(fs.nodes),
                               "deleted": [_deleted_path_record(d) for d in fs.deleted], "when": when, "days": days},
                              protocol=4)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO deleted_filesystems (name, version, record) VALUES (?, ?, ?)",
                             (name, version, record))

    def drop_deleted_filesystem(self, name: str, version: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM deleted_filesystems WHERE name = ? AND version = ?", (name, version))

    def load_deleted_filesystems(self) -> dict[tuple[str, str], tuple[FileSystem, float, int]]:
        out = {}
        with self._lock:
            rows = list(self._db.execute("SELECT name, version, record FROM deleted_filesystems"))
        for name, version, blob in rows:
            record = pickle.loads(blob)
            fs = FileSystem.from_meta(record["meta"])
            fs.nodes = _nodes_from(record["nodes"])
            fs.deleted = [_deleted_path_from(d) for d in record["deleted"]]
            out[(name, version)] = (fs, record["when"], record["days"])
        return out

    # Account settings (the service properties).
    def save_setting(self, name: str, value) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", (name, json.dumps(value)))

    def load_setting(self, name: str):
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def save_filesystem(self, fs: FileSystem) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO filesystems (name, meta) VALUES (?, ?)",
                             (fs.name, json.dumps(fs.to_meta())))

    def delete_filesystem(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._saved if k[0] == name]:
                del self._saved[key]
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM paths WHERE fs = ?", (name,))
            self._db.execute("DELETE FROM blocks WHERE fs = ?", (name,))
            self._db.execute("DELETE FROM pending WHERE fs = ?", (name,))
            self._db.execute("DELETE FROM deleted_paths WHERE fs = ?", (name,))
            self._db.execute("DELETE FROM filesystems WHERE name = ?", (name,))
            self._db.execute("COMMIT")

    def save_node(self, fs: str, path: str, node: Node) -> None:
        """The path's properties, and what its content and uncommitted appends gained since the last
        save (everything when they changed otherwise)."""
        meta = node.to_record(content=False)[0]
        key = (fs, path)
        data, unc = node.data, node.uncommitted
        with self._lock:
            saved = self._saved.get(key)
            db = self._db
            db.execute("BEGIN")
            try:
                db.execute("INSERT OR REPLACE INTO paths (fs, path, meta, data, uncommitted) VALUES (?, ?, ?, ?, ?)",
                           (fs, path, json.dumps(meta), b"", _NO_APPENDS))
                if saved is not None and saved[0] is data and len(data) >= saved[1]:
                    written = saved[1]  # the same content, grown at its end (see Store._commit)
                else:
                    db.execute("DELETE FROM blocks WHERE fs = ? AND path = ?", key)
                    written = 0
                if len(data) > written:
                    db.execute("INSERT INTO blocks (fs, path, offset, bytes) VALUES (?, ?, ?, ?)",
                               (fs, path, written, bytes(memoryview(data)[written:])))
                if saved is not None and saved[2] is unc and len(unc) >= saved[3]:
                    rows = saved[3]
                else:
                    db.execute("DELETE FROM pending WHERE fs = ? AND path = ?", key)
                    rows = 0
                for n in range(rows, len(unc)):
                    position, block = unc[n]
                    db.execute("INSERT INTO pending (fs, path, n, position, bytes) VALUES (?, ?, ?, ?, ?)",
                               (fs, path, n, position, block))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._saved.pop(key, None)
                raise
            self._saved[key] = (data, len(data), unc, len(unc))

    def delete_node(self, fs: str, path: str) -> None:
        with self._lock:
            self._saved.pop((fs, path), None)
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM paths WHERE fs = ? AND path = ?", (fs, path))
            self._db.execute("DELETE FROM blocks WHERE fs = ? AND path = ?", (fs, path))
            self._db.execute("DELETE FROM pending WHERE fs = ? AND path = ?", (fs, path))
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
