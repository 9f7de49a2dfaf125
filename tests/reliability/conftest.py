"""Fixtures of the reliability tests: pipelines on the session's stack (see ``harness``)."""

from __future__ import annotations

import pytest

from .harness import new_pipeline


@pytest.fixture
def make_pipeline(stack_env, mongo_client, datalake_service, fresh_filesystem, fresh_table_name):
    """``make_pipeline(scope="database", coll="items", **settings)``: a new pipeline (own database,
    name, file system and table); its databases are dropped after the test."""
    made = []

    def make(scope: str = "database", coll: str | None = "items", **settings):
        """``mode="defaults"`` for the product's defaults (see ``harness.new_pipeline``)."""
        pipeline = new_pipeline(stack_env, mongo_client, datalake_service, fresh_filesystem, fresh_table_name,
                                scope=scope, coll=coll, **settings)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        mongo_client.drop_database(pipeline.db)


@pytest.fixture
def busy_machine():
    """Two processes that keep both cores busy for the test's duration, as on a shared CI machine:
    a guarantee must not depend on the timing of an idle machine."""
    import subprocess
    import sys

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for proc in burners:
            proc.kill()
            proc.wait()


class PrivateMongo:
    """A SecantusDB server of its own (a small oplog cap, test commands on), started by a fixture
    and stopped by its PID: for lost history and server-side failpoints."""

    def __init__(self, base, oplog_max_entries: int) -> None:
        import socket

        from devtools.stack import _find_secantusd

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        (base / "secantusd.toml").write_text("")
        self.argv = [_find_secantusd(), "--config", str(base / "secantusd.toml"), "--host", "127.0.0.1",
                     "--port", str(self.port), "--storage-path", str(base / "data"),
                     "--oplog-max-entries", str(oplog_max_entries), "--enable-test-commands"]
        self.log = open(base / "secantusd.log", "wb")
        self.proc = None
        self.uri = f"mongodb://127.0.0.1:{self.port}/?replicaSet=secantus"

    def start(self) -> None:
        import subprocess
        import time

        from devtools.stack import port_open

        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            if port_open(self.port):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"secantusd exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError("secantusd did not open its port")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _private_mongo(folder, oplog_max_entries: int):
    """Start a ``PrivateMongo``, yield it with a connected ``client``, stop it after."""
    import pymongo

    server = PrivateMongo(folder, oplog_max_entries=oplog_max_entries)
    server.start()
    try:
        client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=15000)
        client.admin.command("ping")
        server.client = client
        yield server
        client.close()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def small_oplog_mongo(tmp_path_factory):
    """A private SecantusDB whose oplog keeps 100 entries (pruned every 1000 writes, see the notes
    on the local stack): writing 1100 documents drops older positions. Yields its URI."""
    yield from _private_mongo(tmp_path_factory.mktemp("small-oplog"), oplog_max_entries=100)


@pytest.fixture(scope="module")
def test_commands_mongo(tmp_path_factory):
    """A private SecantusDB with the usual oplog and ``configureFailPoint`` (server-side faults)."""
    yield from _private_mongo(tmp_path_factory.mktemp("failpoints"), oplog_max_entries=100000)


def _private_maker(server, stack_env, datalake_service, fresh_filesystem, fresh_table_name):
    from .harness import new_pipeline

    def make(scope: str = "database", coll: str | None = "items", **settings):
        env = {**stack_env, "MONGO_URI": server.uri}
        return new_pipeline(env, server.client, datalake_service, fresh_filesystem, fresh_table_name,
                            scope=scope, coll=coll, **settings)

    return make


@pytest.fixture
def make_private_pipeline(stack_env, datalake_service, fresh_filesystem, fresh_table_name, small_oplog_mongo):
    """Like ``make_pipeline``, on the private small-oplog server."""
    return _private_maker(small_oplog_mongo, stack_env, datalake_service, fresh_filesystem, fresh_table_name)


@pytest.fixture
def make_failpoint_pipeline(stack_env, datalake_service, fresh_filesystem, fresh_table_name, test_commands_mongo):
    """Like ``make_pipeline``, on the private server with test commands."""
    return _private_maker(test_commands_mongo, stack_env, datalake_service, fresh_filesystem, fresh_table_name)
