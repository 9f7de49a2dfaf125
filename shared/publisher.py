"""What a run publishes for the lake's readers: manifests, day markers, late-event records.

A ``Publisher`` hangs off the run's ``Committer`` (``attach``) with two callbacks:

* ``stamp`` (before the Table commit): when the commit moves ``_seq`` forward, builds the commit's
  manifest, and puts it, with the days that became complete and the late events found, into the new
  checkpoint's ``readers`` field. So what is owed is saved in the same Table transaction as the
  position: a manifest is owed exactly when its commit happened, and never names data that was not
  committed.
* ``publish`` (after the commit): writes what is owed, in order (manifests, their late-event
  records, then the complete days' ``_SUCCESS`` markers), each idempotent by name: the file is
  uploaded under a temporary name and renamed with ``If-None-Match: *``; a file already there with
  the same bytes is fine. The next commit's stamp then no longer carries it.

A run that dies between the two leaves the debt in the checkpoint row; the next run pays it in
``attach``, before its first commit, after removing the temporary files of its pipeline (under
``_manifests/_tmp/<pipeline>/``) older than the run lease: a publisher killed between an upload and
its rename leaves one. A debt can be paid twice (a run that died after writing the
manifest but before its next commit): the second write finds the same bytes.

Manifest contents: see ``manifests``. Which bytes a manifest lists: normally the commit's own (the
committer has them and their SHA-256 in memory). While a failed run's range is open (the checkpoint
keeps an intent), no manifest is written; the commit that closes it lists, per file of the range,
every byte from the intent's length to the file's committed end, read back from the lake: the lines
the failed run made durable and this run's. Numbers of the range no line holds are ``retired``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from . import layout, runlease
from . import manifests as mf
from .checkpoint import Checkpoint
from .commit import CommittedFile, Committer
from .errors import ErrorContext, TransientError, sdk_message
from .lake import make_service_client

log = logging.getLogger(__name__)

TMP = f"{mf.MANIFESTS}/_tmp"
# A temporary file older than this belongs to no live run of its pipeline (each holds the run lease)
STALE_TMP_SECONDS = runlease.RUN_LEASE_SECONDS


class Publisher:
    def __init__(self, settings, committed: Checkpoint, report=None, failpoint=lambda name: None, fs=None) -> None:
        # Its own client, without the run's request deadline: what it writes is the same whoever writes
        # it, so it needs no lease, and the debts of the final commit are paid after the lease is released.
        self._fs = fs or make_service_client(settings).get_file_system_client(settings.adls_filesystem)
        self._secrets = settings.secrets
        self._failpoint = failpoint
        self.report = report
        self.pipeline = settings.pipeline_name
        self.generation = committed.generation
        self.grace = settings.late_event_grace_seconds
        self.folder = mf.manifest_dir(self.pipeline, self.generation)
        self.tmp = f"{TMP}/{layout.encode_name(self.pipeline)}"  # this pipeline's temporary files
        state = mf.unpack(committed.readers)
        self.owed: list[dict] = state.get("owed", [])  # manifests (with their late records) not yet written
        self.through: str | None = state.get("through")  # the last complete UTC day
        self.days: dict[str, dict] = state.get("days", {})  # day -> {"at": complete at, "folders": {folder: tally}}
        self.seq = committed.seq  # the last _seq a manifest covers (or will: owed)
        self.open: dict[str, int] | None = dict(committed.intent.files) if committed.intent else None
        # FILE_LAYOUT=per_event: an intent names folders; their files of the range are found by listing
        self.open_folders: list[str] = list(committed.intent.folders) if committed.intent else []
        self.ends: dict[str, int] = {}  # path -> committed length, as this run's commits left it
        self.written = 0  # files this publisher wrote (manifests, markers, late records)

    def attach(self, committer: Committer) -> None:
        """Pay what an earlier run owed, then follow every commit of ``committer``."""
        self._remove_stale_temporaries()
        self._pay(settling=True)
        committer.stamps.append(self.stamp)
        committer.hooks.append(self.publish)

    # -- before the commit ---------------------------------------------------------------------
    def stamp(self, checkpoint: Checkpoint, files: list[CommittedFile]) -> None:
        for f in files:
            self.ends[f.path] = f.end
        if checkpoint.intent is not None:
            # a failed run's range is still open: its numbering is not final, no manifest yet
            self.open = dict(checkpoint.intent.files)
            self.open_folders = list(checkpoint.intent.folders)
        elif checkpoint.seq > self.seq or files:
            self._owe(checkpoint, files)
        position = checkpoint.last_cluster_time
        if self.report is not None and self.report.outcome == "caught_up" and checkpoint.committed_at is not None:
            # caught up: the position is at the server's present, past any event that was waiting
            now = checkpoint.committed_at.astimezone(timezone.utc).timestamp()
            position = now if position is None else max(position, now)
        through = mf.complete_through(position, self.grace)
        if through is not None and (self.through is None or through > self.through):
            for day, record in self.days.items():
                if day <= through and record["at"] is None:
                    record["at"] = mf.iso(position)
            self.through = through
        checkpoint.readers = mf.pack({"owed": self.owed, "through": self.through, "days": self.days})

    def _owe(self, checkpoint: Checkpoint, files: list[CommittedFile]) -> None:
        first, last = self.seq + 1, checkpoint.seq
        spans, retired = self._spans(first, last, files)
        name = mf.manifest_name(first, last)
        late: dict[tuple[str, str], list[dict]] = {}
        for span in spans:
            day = mf.span_day(span)
            if day is not None and self.through is not None and day <= self.through:
                late.setdefault((span.folder, day), []).append(span.entry())
            elif day is not None:
                folders = self.days.setdefault(day, {"at": None, "folders": {}})["folders"]
                folders[span.folder] = mf.tally_add(folders.get(span.folder), span, name)
        late_paths = {e["path"] for entries in late.values() for e in entries}
        committed_at = mf.iso(checkpoint.committed_at.timestamp()) if checkpoint.committed_at else None
        body = mf.manifest_body(self.pipeline, self.generation, first, last, spans, retired, committed_at, late_paths)
        self.owed.append({"name": name, "body": body.decode(),
                          "late": [[folder, day, entries] for (folder, day), entries in sorted(late.items())]})
        late_events = sum(e["events"] for entries in late.values() for e in entries)
        if late_events:
            log.warning("pipeline %s: %d events arrived for days already marked complete; listed in _LATE "
                        "records of their folders", self.pipeline, late_events)
            if self.report is not None:
                self.report.late_events += late_events
        self.seq = last
        self.open = None
        self.open_folders = []

    def _spans(self, first: int, last: int, files: list[CommittedFile]) -> tuple[list[mf.Span], list[list[int]]]:
        """The byte ranges of ``first..last``: the commit's own when it holds exactly those numbers,
        else read back from the lake (the commit closes a failed run's range)."""
        if self.open is None:
            spans = [mf.Span(f.path, f.start, f.end, f.first_seq, f.last_seq, f.events, f.first_cluster,
                             f.last_cluster, f.sha256) for f in files if f.end > f.start]
            if sum(s.events for s in spans) == last - first + 1 and all(
                    first <= s.first_seq and s.last_seq <= last for s in spans):
                return spans, []
        starts = dict(self.open or {})
        for folder in self.open_folders:  # one file per event: each whole file of the range
            for name in self._list(folder):
                parsed = layout.parse_event_file_name(name)
                if parsed is not None and parsed[3] == self.generation and first <= parsed[0] <= last:
                    starts.setdefault(f"{folder}/{name}", 0)
        for f in files:
            starts.setdefault(f.path, f.start)
        spans, held = [], set()
        for path, start in starts.items():
            end = self.ends.get(path)
            data = self._read(path, start, end)
            if not data:
                continue
            try:
                span, seqs = mf.span_of(path, start, data)
            except mf.BadLine as exc:
                raise TransientError(f"building the manifest of _seq {first}..{last}: {path}: {exc}") from None
            spans.append(span)
            held.update(seqs)
        spans.sort(key=lambda s: (s.first_seq if s.first_seq is not None else 0, s.path))
        return spans, mf.retired_ranges(first, last, held)

    def _list(self, folder: str) -> list[str]:
        with _Errors(f"listing {folder} for its manifest", self._secrets):
            try:
                return [p.name.rsplit("/", 1)[-1] for p in self._fs.get_paths(path=folder, recursive=False)
                        if not p.is_directory]
            except ResourceNotFoundError:
                return []

    def _read(self, path: str, start: int, end: int | None) -> bytes:
        client = self._fs.get_file_client(path)
        with _Errors(f"reading back {path} for its manifest", self._secrets):
            if end is None:
                try:
                    end = client.get_file_properties().size
                except ResourceNotFoundError:
                    return b""
            if end <= start:
                return b""
            return client.download_file(offset=start, length=end - start).readall()

    # -- after the commit ----------------------------------------------------------------------
    def publish(self, checkpoint: Checkpoint, files: list[CommittedFile]) -> None:
        """Write what is owed: manifests in order with their late records, then complete days' markers."""
        self._pay()

    def _pay(self, settling: bool = False) -> None:
        """``settling``: debts of an earlier run, most often already paid: look before writing."""
        while self.owed:
            item = self.owed[0]
            self._failpoint("before_manifest")
            self._put(f"{self.folder}/{item['name']}", item["body"].encode(), settling)
            first, last = mf.parse_manifest_name(item["name"])
            for folder, day, entries in item["late"]:
                body = mf.late_body(self.pipeline, self.generation, item["name"], day, entries)
                self._put(f"{folder}/{mf.late_name(first, last)}", body, settling)
            self.owed.pop(0)
            self._failpoint("after_manifest")
        for day in sorted(self.days):
            record = self.days[day]
            if record["at"] is None:
                continue
            for folder, tally in sorted(record["folders"].items()):
                body = mf.marker_body(self.pipeline, self.generation, day, folder, tally, record["at"], self.grace,
                                      self.folder)
                self._put(f"{folder}/{mf.SUCCESS}", body)
            del self.days[day]

    def _remove_stale_temporaries(self) -> None:
        """Delete this pipeline's temporary files older than ``STALE_TMP_SECONDS`` (best effort)."""
        now = datetime.now(timezone.utc).timestamp()
        try:
            for path in self._fs.get_paths(path=self.tmp, recursive=False):
                if not path.is_directory and path.last_modified.timestamp() < now - STALE_TMP_SECONDS:
                    self._fs.get_file_client(path.name).delete_file()
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            log.info("pipeline %s: old temporary files under %s not removed (%s)", self.pipeline, self.tmp,
                     exc.__class__.__name__)

    def _put(self, path: str, data: bytes, look_first: bool = False) -> None:
        """Create ``path`` holding ``data`` unless it exists; an existing file must hold the same bytes."""
        temp = self._fs.get_file_client(f"{self.tmp}/{uuid.uuid4().hex}")
        with _Errors(f"writing {path}", self._secrets):
            if look_first:
                try:
                    existing = self._fs.get_file_client(path).download_file().readall()
                except ResourceNotFoundError:
                    existing = None
                if existing is not None:
                    if existing != data:
                        log.error("pipeline %s: %s exists with other content than its commit's; left as it is "
                                  "(run `python -m shared verify`)", self.pipeline, path)
                    return
            temp.upload_data(data, overwrite=True)
            try:
                try:
                    self._rename(temp, path)
                except ResourceNotFoundError:
                    # a rename needs the destination's folder (a manifest folder's first file)
                    self._fs.create_directory(path.rpartition("/")[0])
                    self._rename(temp, path)
                self.written += 1
                return
            except (ResourceExistsError, ResourceModifiedError):
                pass
            existing = self._fs.get_file_client(path).download_file().readall()
            try:
                temp.delete_file()
            except AzureError:
                pass  # a leftover under _manifests/_tmp is harmless (a later run removes it)
        if existing != data:
            log.error("pipeline %s: %s exists with other content than its commit's; left as it is (run "
                      "`python -m shared verify`)", self.pipeline, path)


    def _rename(self, temp, path: str) -> None:
        temp.rename_file(f"{self._fs.file_system_name}/{path}", match_condition=MatchConditions.IfMissing)


class _Errors(ErrorContext):
    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, AzureError):
            return False
        raise TransientError(f"{self.doing}: {sdk_message(exc, self.secrets)}") from None
