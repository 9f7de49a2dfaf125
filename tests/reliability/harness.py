"""Helpers of the reliability tests: a pipeline under test, drain processes, the lake as read back,
and the independent change-stream read every exactly-once assertion compares against.

``Pipeline`` holds the settings of one pipeline (its own database, pipeline name, table and file
system on the session's stack). ``drain()`` runs ``python -m shared drain`` as a real subprocess
with the settings in its environment (a failpoint from ``shared.failpoints`` SIGKILLs it at a
step); ``drain_in_process()`` calls ``run_drain`` with injected clients (for Table faults through
an azure-core policy). ``assert_exactly_once()`` reads every line of the lake, sorts by ``_seq``,
and checks it against a separate ``watch()`` from the pipeline's first position.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import bson
from bson import Timestamp

from shared.encode import read_line

REPO_ROOT = Path(__file__).resolve().parents[2]
DRAIN_TIMEOUT = 180  # seconds a drain subprocess may take before the test fails (a hang, not a timing check)


@dataclass
class DrainResult:
    returncode: int
    report: dict | None
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    @property
    def outcome(self) -> str | None:
        return self.report.get("outcome") if self.report else None

    def describe(self) -> str:
        return f"rc={self.returncode} report={self.report} stderr={self.stderr[-2000:]}"


@dataclass
class Pipeline:
    """One pipeline under test. ``env`` is the complete environment of its drain processes."""

    env: dict
    mongo: object  # pymongo.MongoClient of the test
    datalake: object  # DataLakeServiceClient of the test
    db: str
    coll: str | None
    scope: str  # "collection", "database" or "deployment"
    start: Timestamp | None  # the pipeline's first position (None: START_AT=now, read from its checkpoint)
    extra: dict = field(default_factory=dict)
    _files: dict = field(default_factory=dict, repr=False)  # path -> ((length, etag), bytes) read before

    # -- settings and clients -------------------------------------------------------------------
    @property
    def filesystem(self) -> str:
        return self.env["ADLS_FILESYSTEM"]

    @property
    def name(self) -> str:
        return self.env["PIPELINE_NAME"]

    def settings(self, **overrides):
        from shared.settings import Settings

        return Settings.from_env({**self.env, **overrides})

    def store(self, table=None):
        from shared.checkpoint import CheckpointStore

        return CheckpointStore(self.settings(), table=table)

    def checkpoint(self):
        return self.store().load().checkpoint

    def expire_lease(self) -> bool:
        """Make the lease of a killed run look expired, as the passing of ``lease_seconds`` would.

        Only ``lease_until`` changes, with If-Match on the row as read: a test that calls it after a
        SIGKILL gets what the next tick after the lease's end gets. Returns whether a lease was held.
        """
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        from azure.core.exceptions import ResourceNotFoundError

        table = self.store()._table
        try:
            row = table.get_entity(self.name, "checkpoint")
        except ResourceNotFoundError:
            return False
        if float(row.get("lease_until", 0.0)) <= time.time():
            return False
        row["lease_until"] = time.time() - 1.0
        table.update_entity(row, mode=UpdateMode.MERGE, etag=row.metadata["etag"],
                            match_condition=MatchConditions.IfNotModified)
        return True

    def first_position(self) -> Timestamp:
        """Where the pipeline started: its ``START_AT``, or (``now``) the origin its checkpoint stored."""
        if self.start is not None:
            return self.start
        checkpoint = self.checkpoint()
        assert checkpoint is not None and checkpoint.origin, "the pipeline has no first position yet"
        seconds, _, increment = checkpoint.origin.partition(".")
        return Timestamp(int(seconds), int(increment or 0))

    def begin(self) -> None:
        """With ``START_AT=now``: a first run, which takes the position the test's writes follow."""
        result = self.drain()
        assert result.outcome == "caught_up", result.describe()

    def enable_preimages(self, names=None) -> None:
        """Create the collections with pre- and post-images on (as an administrator would), so the
        default ``MONGO_FULL_DOC_BEFORE_CHANGE=whenAvailable`` delivers them."""
        database = self.mongo[self.db]
        for name in names or COLLECTIONS:
            if name not in database.list_collection_names():
                database.create_collection(name, changeStreamPreAndPostImages={"enabled": True})

    # -- writes ---------------------------------------------------------------------------------
    def collection(self, name: str | None = None):
        return self.mongo[self.db][name or self.coll]

    # -- drains ---------------------------------------------------------------------------------
    def drain(self, failpoint: str | None = None, kill_after: float | None = None, **overrides) -> DrainResult:
        """Run ``python -m shared drain`` in a subprocess; ``failpoint`` (``step[:N]``) kills it at
        a step, ``kill_after`` kills it (SIGKILL) that many seconds after it started."""
        proc = self.start_drain(failpoint, **overrides)
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        return self.finish(proc)

    def start_drain(self, failpoint: str | None = None, **overrides) -> subprocess.Popen:
        env = {**_base_env(), **self.env, **{k: str(v) for k, v in overrides.items()}}
        if failpoint:
            env["DRAIN_TEST_FAILPOINT"] = failpoint
        return subprocess.Popen([sys.executable, "-m", "shared", "drain"], cwd=REPO_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def finish(proc: subprocess.Popen) -> DrainResult:
        try:
            out, err = proc.communicate(timeout=DRAIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"drain process {proc.pid} hung; stderr: {err[-2000:]}") from None
        report = None
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                report = json.loads(line)
                break
        return DrainResult(proc.returncode, report, out, err)

    def take_over(self, stale: subprocess.Popen, between=None) -> DrainResult:
        """Another run takes the pipeline over from ``stale`` (a ``start_drain`` process) as after a
        stall: once ``stale`` recorded its commit intent (its writes are then on their way) and a
        second later, its lease is made to look expired and a drain runs to the end. ``between``
        (a callable) runs before that drain, as writes while the stale run stalls."""
        for _ in range(200):
            checkpoint = self.checkpoint()
            if checkpoint is not None and checkpoint.intent is not None:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("run A never recorded an intent")
        time.sleep(1.0)
        if between is not None:
            between()
        self.expire_lease()
        taken = self.drain()
        assert taken.outcome == "caught_up", taken.describe()
        return taken

    def drain_in_process(self, store=None, lake=None, source=None, env_overrides: dict | None = None):
        from shared.drain import run_drain

        env = {**self.env, **(env_overrides or {})}
        from shared.settings import Settings

        return run_drain(Settings.from_env(env), env=env, store=store, lake=lake, source=source)

    def drain_until_caught_up(self, max_runs: int = 20, **overrides) -> list[DrainResult]:
        """Resume until a run reports ``caught_up`` (expiring the lease a killed run left)."""
        results = []
        for _ in range(max_runs):
            self.expire_lease()
            result = self.drain(**overrides)
            results.append(result)
            assert result.returncode == 0, result.describe()
            if result.outcome == "caught_up":
                return results
        raise AssertionError(f"not caught up after {max_runs} runs: {results[-1].describe()}")

    # -- the lake -------------------------------------------------------------------------------
    def lake_files(self) -> dict[str, bytes]:
        fs = self.datalake.get_file_system_client(self.filesystem)
        if not fs.exists():
            return {}
        out = {}
        for path in fs.get_paths(recursive=True):
            if not path.is_directory:
                cached = self._files.get(path.name)
                if cached is None or cached[0] != (path.content_length, path.etag):
                    data = fs.get_file_client(path.name).download_file().readall()
                    cached = self._files[path.name] = ((path.content_length, path.etag), data)
                out[path.name] = cached[1]
        return out

    def lake_lines(self, files: dict[str, bytes] | None = None) -> list[dict]:
        """Every line of this pipeline's generation(s) in the lake, parsed, sorted by ``_seq``: the
        lines of its rolling files (``-<gen>.jsonl``) and of its per-event files (``-<gen>.json``,
        one line each, whose name says the line's ``_seq``, operationType and token hash)."""
        from shared.intent import event_key, key_hash
        from shared.layout import encode_name, parse_event_file_name
        from shared.snapshot import end_key, row_key

        lines = []
        checkpoint = self.checkpoint()
        gen = checkpoint.generation if checkpoint else None
        for path, data in (files if files is not None else self.lake_files()).items():
            per_event = path.endswith(f"-{gen}.json")
            if not (per_event or path.endswith(f"-{gen}.jsonl")):
                continue
            assert not data or data.endswith(b"\n"), f"{path} ends in a partial line"
            if per_event:
                assert data.count(b"\n") == 1, f"{path} does not hold exactly one line"
                seq, op, token_hash, _ = parse_event_file_name(path.rsplit("/", 1)[1])
                doc = read_line(data.rstrip(b"\n"))
                to = doc["gap"]["to"] if doc.get("operationType") == "gap" else None
                if doc.get("operationType") == "snapshot":  # a snapshot row: its copy and _id
                    key = row_key(int(doc["snapshot"]["copy"]), doc["documentKey"]["_id"])
                elif doc.get("operationType") == "snapshotEnd":
                    key = end_key(int(doc["snapshot"]["copy"]))
                else:
                    key = f"gap:{to.time}.{to.inc}" if to is not None else event_key(doc)
                assert (seq, op) == (doc["_seq"], encode_name(doc["operationType"])), f"{path}: another line"
                assert token_hash == key_hash(key), f"{path}: the name's token hash is not its event's"
            for raw in data.splitlines():
                doc = read_line(raw)
                doc["__path"] = path
                lines.append(doc)
        lines.sort(key=lambda d: d["_seq"])
        return lines

    # -- the independent read -------------------------------------------------------------------
    def independent_events(self, until: int | None = None) -> list[dict]:
        """Every event of the scope from the first position, by a separate ``watch()`` (continuing
        after an invalidate with ``start_after``, as the pipeline does). Stops when caught up."""
        target = {"collection": lambda: self.mongo[self.db][self.coll], "database": lambda: self.mongo[self.db],
                  "deployment": lambda: self.mongo}[self.scope]()
        events: list[dict] = []
        options = {"start_at_operation_time": self.first_position()}
        while True:
            invalidated = None
            with target.watch([], max_await_time_ms=300, **options) as stream:
                empty = 0
                while empty < 2:
                    event = stream.try_next()
                    if event is None:
                        empty += 1
                        continue
                    empty = 0
                    events.append(bson.decode(bson.encode(event)))
                    if event["operationType"] == "invalidate":
                        invalidated = event["_id"]
                        break
            if invalidated is None:
                return events
            options = {"start_after": invalidated}

    def assert_lake_verifies(self) -> None:
        """``python -m shared verify``'s checks pass: manifests match the data byte for byte."""
        from shared.verify import verify

        result = verify(self.settings())
        assert result.ok, result.summary()
        assert not result.uncommitted, result.summary()

    def assert_position_safe(self, previous_seq: int = 0) -> int:
        """The stored position never moved backwards, and every event it counts as written
        (``_seq`` up to the checkpoint's ``seq``) is durably in the lake. Returns the stored seq."""
        checkpoint = self.checkpoint()
        seq = checkpoint.seq if checkpoint else 0
        assert seq >= previous_seq, f"the stored position moved backwards: seq {previous_seq} -> {seq}"
        have = {d["_seq"] for d in self.lake_lines()}
        missing = sorted(set(range(1, seq + 1)) - have)
        assert not missing, f"the checkpoint (seq {seq}) is past events not in the lake: {missing[:10]}"
        return seq

    def assert_exactly_once(self, allow_extra_types: tuple[str, ...] = ()) -> list[dict]:
        """The lake holds ``_seq`` 1..N once each, and those lines are the independent read's events
        in order (operationType, documentKey, clusterTime, resume token ``_id``)."""
        lines = [d for d in self.lake_lines() if d.get("operationType") not in allow_extra_types]
        seqs = [d["_seq"] for d in self.lake_lines()]
        assert seqs == list(range(1, len(seqs) + 1)), f"_seq not 1..N once each: {_seq_problem(seqs)}"
        events = self.independent_events()
        got = [_key(d) for d in lines]
        want = [_key(e) for e in events]
        if got != want:
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise AssertionError(f"lake ({len(got)} events) differs from the change stream ({len(want)}) at "
                                 f"index {first}: lake {got[first:first + 2]} stream {want[first:first + 2]}")
        return lines


def _key(doc: dict) -> tuple:
    return (doc.get("operationType"), bson.encode(doc.get("documentKey") or {}), doc.get("clusterTime"),
            doc.get("_id", {}).get("_data"))


def _seq_problem(seqs: list[int]) -> str:
    seen, dupes = set(), []
    for s in seqs:
        if s in seen:
            dupes.append(s)
        seen.add(s)
    missing = sorted(set(range(1, max(seqs, default=0) + 1)) - seen)
    return f"{len(seqs)} lines, duplicates {dupes[:10]}, missing {missing[:10]}"


def lake_credential(env: dict):
    """The lake credential of ``env`` (shared key or SAS), for clients a test builds itself."""
    from azure.core.credentials import AzureSasCredential

    from shared.lake import account_name

    if env.get("ADLS_SAS"):
        return AzureSasCredential(env["ADLS_SAS"].lstrip("?"))
    return {"account_name": account_name(env["ADLS_ACCOUNT_URL"]), "account_key": env["ADLS_SHARED_KEY"]}


def _base_env() -> dict:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")
    return {k: os.environ[k] for k in keep if k in os.environ}


# The product's defaults for what a stream delivers and where it starts (a new user's settings).
DEFAULTS = "defaults"
PINNED = "pinned"


def new_pipeline(stack_env: dict, mongo, datalake, filesystem: str, table: str, *, scope: str = "database",
                 coll: str | None = "items", mode: str = PINNED, **settings) -> Pipeline:
    """A pipeline on a new database. ``mode=PINNED``: starting one second before now with plain
    events (``MONGO_FULL_DOC=default``, no pre-images), so a replay reads identical events.
    ``mode=DEFAULTS``: the product's defaults (``updateLookup``, pre-images ``whenAvailable``,
    ``START_AT=now``): call ``begin()`` before writing, and replays may differ from the runs they
    replay."""
    db = f"rel_{uuid.uuid4().hex[:10]}"
    now = int(time.time()) - 1
    env = {
        **{k: v for k, v in stack_env.items() if k != "AzureWebJobsStorage"},
        "ADLS_FILESYSTEM": filesystem,
        "CHECKPOINT_TABLE": table,
        "PIPELINE_NAME": f"p-{db}",
        "MONGO_DB": db if scope in ("database", "collection") else "",
        "MONGO_COLL": coll if scope == "collection" else "",
        "START_AT": datetime.fromtimestamp(now, tz=timezone.utc).isoformat().replace("+00:00", "Z"),
        "DRAIN_BUDGET_SECONDS": "30",
        "MONGO_FULL_DOC": "default",
        "MONGO_FULL_DOC_BEFORE_CHANGE": "off",
    }
    if mode == DEFAULTS:
        for key in ("START_AT", "MONGO_FULL_DOC", "MONGO_FULL_DOC_BEFORE_CHANGE"):
            env.pop(key)
    env.update({k: str(v) for k, v in settings.items()})
    return Pipeline(env, mongo, datalake, db, coll, scope, Timestamp(now, 0) if mode == PINNED else None)


MODES = (PINNED, DEFAULTS)
ONE_MINUTE_WINDOWS = {"ROLL_WINDOW": "1m"}  # so that a test (as the soak) can cross a window's end
COLLECTIONS = ("a", "b", "c")


def pipeline_in_mode(make, mode: str, collections=COLLECTIONS, begin: bool = True, **settings) -> Pipeline:
    """``make(mode=mode, **settings)``; under the defaults also pre-images on for ``collections`` and,
    unless ``begin`` is false (a test of the first run itself), the first run that takes the position."""
    pipeline = make(mode=mode, **settings)
    if mode == DEFAULTS:
        pipeline.enable_preimages(collections)
        if begin:
            pipeline.begin()
    return pipeline


def change_documents(pipeline: Pipeline, names=COLLECTIONS, pad: int = 900) -> None:
    """Every document changes and grows: between a failure and its replay, so that a replay under
    ``updateLookup`` reads other documents (longer lines, other roll and commit points) than the
    failed run did."""
    for name in names:
        pipeline.collection(name).update_many({}, {"$set": {"changed": "g" * pad}})


def wait_for_the_next_window() -> None:
    """Sleep into the next one-minute window (``ONE_MINUTE_WINDOWS``; cluster times are this machine's)."""
    time.sleep(60.5 - time.time() % 60)


def windows_of(lines: list[dict]) -> set[str]:
    """The windows (``YYYYMMDDTHHMMZ``) of the rolling files that hold ``lines`` (from ``lake_lines``)."""
    return {line["__path"].rsplit("/part-", 1)[1][:14] for line in lines if "/part-" in line["__path"]}


def assert_in_their_windows(lines: list[dict]) -> None:
    """Each line of a rolling file is in the file of its own one-minute window (``ONE_MINUTE_WINDOWS``),
    where a run that never failed puts it (cluster times do not step back here)."""
    for line in lines:
        if "/part-" in line["__path"]:
            window = datetime.fromtimestamp(line["clusterTime"].time // 60 * 60, tz=timezone.utc)
            assert windows_of([line]) == {f"{window:%Y%m%dT%H%M}Z"}, (
                f"_seq {line['_seq']} (cluster time {window:%H:%M}) is in {line['__path']}")


def kill_runs(pipeline: Pipeline, rng, failpoints, inserts: int = 30, seq: int = 0, change: bool = False) -> int:
    """For each failpoint a round of writes, then a run killed there (the lease a killed run left
    made to look expired first); the position is checked after each, and with ``change`` every
    document changes after each kill (``change_documents``). Returns the stored seq."""
    for failpoint in failpoints:
        write_round(pipeline, rng, inserts=inserts)
        pipeline.expire_lease()
        result = pipeline.drain(failpoint=failpoint)
        assert result.killed, f"failpoint {failpoint} was not reached: {result.describe()}"
        seq = pipeline.assert_position_safe(seq)
        if change:
            change_documents(pipeline)
    return seq


def lose_history(pipeline: Pipeline) -> None:
    """1100 writes: on a server whose oplog keeps 100 entries (``small_oplog_mongo``), positions before
    them are no longer in the oplog."""
    pipeline.collection("filler").insert_many([{"i": i} for i in range(1100)])


def write_round(pipeline: Pipeline, rng, inserts: int = 60) -> None:
    """Inserts (sizes vary, so files roll), then updates and deletes, over three collections."""
    for name in COLLECTIONS:
        coll = pipeline.collection(name)
        count = rng.randint(inserts // 2, inserts)
        coll.insert_many([{"n": rng.random(), "pad": "x" * rng.randint(50, 600)} for _ in range(count)])
        ids = [d["_id"] for d in coll.find({}, {"_id": 1}).limit(20)]
        for _id in rng.sample(ids, min(len(ids), rng.randint(0, 8))):
            coll.update_one({"_id": _id}, {"$set": {"u": rng.random()}})
        for _id in rng.sample(ids, min(len(ids), rng.randint(0, 3))):
            coll.delete_one({"_id": _id})
