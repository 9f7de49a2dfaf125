"""A pipeline under test: its own databases, file system and checkpoint table on the session stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.drain import run_drain
from shared.encode import read_line
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Pipeline:
    env: dict
    datalake_service: object
    dbs: list = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def run(self, clock=None, **overrides):
        env = {**self.env, **{k: str(v) for k, v in overrides.items()}}
        report = run_drain(Settings.from_env(env), env=env, **({"clock": clock} if clock else {}))
        assert report.outcome != "failed", report.error
        return report

    def run_cli(self, *args, extra_env=None, check=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGO_", "ADLS_", "CHECKPOINT_"))}
        env.update(self.env)
        env.update(extra_env or {})
        proc = subprocess.run([sys.executable, "-m", "shared", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    @property
    def filesystem(self):
        return self.datalake_service.get_file_system_client(self.env["ADLS_FILESYSTEM"])

    def files(self, everything: bool = False) -> dict[str, bytes]:
        """Every data file of the lake (path -> content), in path order; ``everything``: also the
        manifests, day markers and late-event records."""
        fs = self.filesystem
        out = {}
        for path in fs.get_paths(recursive=True):
            if not everything and (path.name.startswith("_manifests/") or path.name.rpartition("/")[2].startswith("_")):
                continue
            if not path.is_directory:
                out[path.name] = fs.get_file_client(path.name).download_file().readall()
        return dict(sorted(out.items()))

    def lines(self) -> list[dict]:
        """Every line of the lake, parsed with bson.json_util, sorted by _seq, with its folder."""
        out = []
        for path, data in self.files().items():
            for raw in data.splitlines():
                doc = read_line(raw)
                doc["__path"] = path
                out.append(doc)
        return sorted(out, key=lambda d: d["_seq"])


@pytest.fixture
def pipeline(stack_env, fresh_filesystem, fresh_table_name, datalake_service, mongo_client):
    """A deployment-scope pipeline filtered to two fresh databases (``p.dbs``), so tests that run
    one after another never see each other's events."""
    tag = uuid.uuid4().hex[:8]
    dbs = [f"it_{tag}_a", f"it_{tag}_b"]
    env = {k: v for k, v in stack_env.items()}
    env.update({
        "ADLS_FILESYSTEM": fresh_filesystem,
        "CHECKPOINT_TABLE": fresh_table_name,
        "PIPELINE_NAME": f"it-{tag}",
        "MONGO_PIPELINE": json.dumps([{"$match": {"ns.db": {"$in": dbs}}}]),
        "DRAIN_BUDGET_SECONDS": "30",
    })
    yield Pipeline(env, datalake_service, dbs)
    for db in dbs:
        mongo_client.drop_database(db)


def watch_all(mongo_client, dbs):
    """An independent change stream over the same databases (the reference the lake is compared to),
    decoding dates as UTC-aware like the lake reader."""
    import pymongo

    host, port = mongo_client.address
    client = pymongo.MongoClient(host, port, replicaSet=mongo_client.options.replica_set_name, tz_aware=True)
    return client.watch([{"$match": {"ns.db": {"$in": dbs}}}], full_document="updateLookup",
                              full_document_before_change="whenAvailable", max_await_time_ms=300)


def drain_watch(stream, expected: int, attempts: int = 200) -> list:
    events = []
    for _ in range(attempts):
        event = stream.try_next()
        if event is not None:
            events.append(event)
            if len(events) >= expected:
                break
    return events
