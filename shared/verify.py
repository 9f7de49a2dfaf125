"""``python -m shared verify``: audit a pipeline's part of the lake against its manifests.

Checks, per pipeline (its generation and debts come from the checkpoint row):

* manifests: names parse, contents match their names, and their ``_seq`` ranges follow each other
  from 1 (or from ``--since``) without gap or overlap up to the checkpoint's ``seq`` (``seq_gap``,
  ``manifest_missing``, ``bad_manifest``); a manifest the checkpoint still owes is reported, not
  counted as a problem (the next run writes it);
* every listed byte range: the file exists (``missing_file``) and is long enough
  (``truncated_file``), its SHA-256 matches (``checksum``), every line parses with a ``_seq`` in the
  entry's range and none is torn (``bad_line``, ``torn_line``), counts and ``_seq`` bounds match the
  entry (``entry_mismatch``); each manifest's lines hold every number of its range exactly once
  except its retired ones (``seq_gap``, ``seq_duplicate``);
* every data file of the generation: no byte outside a manifest (``outside_manifest``), except
  after the last manifest of a file the checkpoint's open intent names (an uncommitted tail: a run
  wrote and did not commit; reported as such) or a manifest still owed;
* partitions with many small files (a warning with counts and sizes).

Reads are parallel (``--workers``) and streamed in chunks: memory holds one chunk per worker and the
coverage of each file, not the data. Exit status: 0 clean, 1 a problem found, 2 bad settings or
the lake or table could not be read.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from . import layout
from . import manifests as mf

CHUNK = 4 * 1024 * 1024
MANIFEST_BATCH = 64


@dataclass
class Finding:
    kind: str
    where: str
    detail: str


@dataclass
class VerifyReport:
    pipeline: str
    generation: str | None = None
    manifests: int = 0
    manifests_owed: int = 0
    entries: int = 0
    events: int = 0
    bytes: int = 0
    retired: int = 0
    files: int = 0
    last_seq: int | None = None
    problems: list[Finding] = field(default_factory=list)
    uncommitted: list[Finding] = field(default_factory=list)
    small_files: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, kind: str, where: str, detail: str) -> None:
        if len(self.problems) < 1000:
            self.problems.append(Finding(kind, where, detail))

    def as_dict(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        return out

    def summary(self) -> str:
        lines = [f"pipeline {self.pipeline} (generation {self.generation}): {self.manifests} manifests "
                 f"({self.manifests_owed} owed), {self.entries} byte ranges, {self.events} events, {self.bytes} bytes, "
                 f"{self.retired} retired numbers, {self.files} data files, last _seq {self.last_seq}: "
                 + ("OK" if self.ok else f"{len(self.problems)} PROBLEMS")]
        lines += [f"  PROBLEM {p.kind}: {p.where}: {p.detail}" for p in self.problems]
        lines += [f"  uncommitted {p.kind}: {p.where}: {p.detail}" for p in self.uncommitted]
        lines += [f"  small files: {s['folder']}: {s['files']} files, median {s['median_bytes']} bytes, "
                  f"total {s['total_bytes']} bytes" for s in self.small_files]
        return "\n".join(lines)


def verify(settings, *, fs=None, checkpoint=None, day: str | None = None, since: str | None = None,
           workers: int = 8, small_file_count: int = 48, small_file_bytes: int = 1024 * 1024) -> VerifyReport:
    """Audit ``settings``' pipeline; ``checkpoint`` and ``fs`` are read from the settings when not given."""
    from .checkpoint import CheckpointStore
    from .lake import make_service_client

    report = VerifyReport(settings.pipeline_name)
    if checkpoint is None:
        checkpoint = CheckpointStore(settings).load().checkpoint
    if checkpoint is None:
        report.problem("no_checkpoint", settings.pipeline_name, "the pipeline has no checkpoint row: nothing to verify")
        return report
    fs = fs or make_service_client(settings).get_file_system_client(settings.adls_filesystem)
    report.generation = gen = checkpoint.generation
    state = mf.unpack(checkpoint.readers)
    owed = {item["name"]: item for item in state.get("owed", [])}
    open_files = dict(checkpoint.intent.files) if checkpoint.intent else {}
    folder = mf.manifest_dir(settings.pipeline_name, gen)

    # the data files of this generation (and their sizes), one recursive listing
    sizes: dict[str, int] = {}
    for path in _list(fs, None, recursive=True):
        name = path.name
        if path.is_directory or name.startswith(mf.MANIFESTS + "/"):
            continue
        rolling = name.endswith(f"-{gen}.jsonl")
        event = layout.parse_event_file_name(name.rpartition("/")[2])  # FILE_LAYOUT=per_event
        if not rolling and (event is None or event[3] != gen):
            continue
        if day is not None and layout.folder_day(name.rpartition("/")[0]) != day:
            continue
        sizes[name] = int(path.content_length or 0)
    report.files = len(sizes)

    # the manifests, in commit order, and their chain of _seq ranges
    names: dict[str, tuple[int, int]] = {}
    for path in _list(fs, folder, recursive=False):
        base = path.name.rpartition("/")[2]
        parsed = mf.parse_manifest_name(base)
        if parsed is None:
            if not path.is_directory:
                report.problem("bad_manifest", path.name, "not a manifest name")
            continue
        names[base] = parsed
    for name in owed:
        if name not in names:
            names[name] = mf.parse_manifest_name(name)
            report.manifests_owed += 1
    ordered = sorted(names.items(), key=lambda item: item[1])
    since_seq = _since(since, ordered)
    ordered = [(n, r) for n, r in ordered if r[1] > since_seq]
    expected = since_seq + 1
    for name, (first, last) in ordered:
        if first > expected:
            report.problem("seq_gap", f"{folder}/{name}", f"_seq {expected}..{first - 1} are in no manifest")
        elif first < expected:
            report.problem("seq_overlap", f"{folder}/{name}", f"starts at {first}, before {expected}")
        expected = max(expected, last + 1)
    report.last_seq = expected - 1 if ordered else None
    if checkpoint.seq > expected - 1 and (ordered or since_seq < checkpoint.seq):
        report.problem("manifest_missing", folder,
                       f"the checkpoint is at _seq {checkpoint.seq}; manifests end at {expected - 1}")

    # read the manifests (batches, in parallel) and check every byte range they list
    coverage: dict[str, list[list[int]]] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        for i in range(0, len(ordered), MANIFEST_BATCH):
            batch = ordered[i:i + MANIFEST_BATCH]
            docs = list(pool.map(lambda item: _manifest(fs, folder, item[0], owed), batch))
            work: list[tuple[str, mf.Span]] = []  # (manifest name, one of its file entries)
            held: dict[str, list[int]] = {}
            for (name, (first, last)), doc in zip(batch, docs):
                if doc is None:
                    report.problem("bad_manifest", f"{folder}/{name}", "unreadable or not a manifest")
                    continue
                report.manifests += 1
                if (doc.get("first_seq"), doc.get("last_seq"), doc.get("generation")) != (first, last, gen):
                    report.problem("bad_manifest", f"{folder}/{name}", "its content does not match its name")
                    continue
                report.retired += mf.retired_count(doc.get("retired") or [])
                for e in doc["files"]:
                    entry = mf.Span.from_entry(e)
                    _cover(coverage, entry.path, entry.start, entry.end)
                    if day is None or layout.folder_day(entry.folder) == day:
                        work.append((name, entry))
                held[name] = []
            results = list(pool.map(lambda item: _check_entry(fs, *item, sizes, day is not None), work))
            for (manifest, entry), (findings, seqs) in zip(work, results):
                report.entries += 1
                report.events += entry.events
                report.bytes += entry.end - entry.start
                for finding in findings:
                    report.problem(*finding)
                if manifest in held:
                    held[manifest].extend(seqs)
            if day is None:
                for (name, (first, last)), doc in zip(batch, docs):
                    if doc is not None and name in held:
                        _check_numbers(report, f"{folder}/{name}", first, last, doc.get("retired") or [], held[name])

    # no data byte outside a manifest
    for path, size in sorted(sizes.items()):
        spans = coverage.get(path, [])
        if since_seq and not spans:
            continue  # not touched since --since
        position = spans[0][0] if since_seq else 0
        for a, b in spans:
            if a > position:
                report.problem("outside_manifest", path, f"bytes {position}..{a} are in no manifest")
            position = max(position, b)
        if size > position:
            if path in open_files:
                report.uncommitted.append(Finding("uncommitted_tail", path, f"bytes {position}..{size} hold lines of a "
                                                  "failed run's range, still open (the commit that closes it lists "
                                                  "them in its manifest)"))
            else:
                report.problem("outside_manifest", path, f"bytes {position}..{size} are in no manifest")
    _small_files(report, sizes, small_file_count, small_file_bytes)
    return report


def _since(since: str | None, ordered) -> int:
    """The ``_seq`` after which to verify: from a manifest name or a number."""
    if not since:
        return 0
    parsed = mf.parse_manifest_name(since)
    if parsed is not None:
        return parsed[1]
    return int(since)


def _list(fs, path, recursive):
    try:
        yield from fs.get_paths(path=path, recursive=recursive)
    except ResourceNotFoundError:
        return


def _manifest(fs, folder: str, name: str, owed: dict) -> dict | None:
    try:
        data = fs.get_file_client(f"{folder}/{name}").download_file().readall()
    except ResourceNotFoundError:
        if name in owed:
            data = owed[name]["body"].encode()
        else:
            return None
    try:
        return mf.parse_manifest(data)
    except ValueError:
        return None


def _cover(coverage: dict, path: str, start: int, end: int) -> None:
    """Add ``[start, end)`` to ``path``'s sorted, merged list of covered ranges."""
    spans = coverage.setdefault(path, [])
    spans.append([start, end])
    spans.sort()
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    coverage[path] = merged


def _check_entry(fs, manifest: str, entry: mf.Span, sizes: dict,
                 by_day: bool) -> tuple[list[tuple[str, str, str]], list[int]]:
    where = f"{entry.path} [{entry.start}, {entry.end}) of manifest {manifest}"
    size = sizes.get(entry.path)
    if size is None:
        return [("missing_file", where, "the file does not exist")], []
    if size < entry.end:
        return [("truncated_file", where, f"the file holds {size} bytes")], []
    findings: list[tuple[str, str, str]] = []
    digest = hashlib.sha256()
    seqs: list[int] = []
    rest = b""
    client = fs.get_file_client(entry.path)
    offset = entry.start
    while offset < entry.end:
        length = min(CHUNK, entry.end - offset)
        try:
            chunk = client.download_file(offset=offset, length=length).readall()
        except (ResourceNotFoundError, HttpResponseError) as exc:
            return [("missing_file", where, f"could not be read ({exc.__class__.__name__})")], seqs
        if len(chunk) != length:
            return [("truncated_file", where, f"{len(chunk)} bytes where {length} were expected at {offset}")], seqs
        digest.update(chunk)
        offset += length
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for raw in lines:
            try:
                seq, _ = mf.line_seq_cluster(raw)
            except mf.BadLine as exc:
                if len(findings) < 5:
                    findings.append(("bad_line", where, f"a line does not parse ({exc})"))
                continue
            seqs.append(seq)
    if rest:
        findings.append(("torn_line", where, f"ends in {len(rest)} bytes without a newline"))
    if digest.hexdigest() != entry.sha256:
        findings.append(("checksum", where, "the SHA-256 of the bytes does not match the manifest"))
    if len(seqs) != entry.events or (seqs and (seqs[0] != entry.first_seq or seqs[-1] != entry.last_seq)):
        findings.append(("entry_mismatch", where, f"{len(seqs)} lines, _seq {seqs[0] if seqs else None}.."
                         f"{seqs[-1] if seqs else None}; the manifest says {entry.events} lines, _seq "
                         f"{entry.first_seq}..{entry.last_seq}"))
    return findings, seqs


def _check_numbers(report: VerifyReport, where: str, first: int, last: int, retired: list, seqs: list[int]) -> None:
    expected = last - first + 1 - mf.retired_count(retired)
    unique = set(seqs)
    if len(unique) != len(seqs):
        report.problem("seq_duplicate", where, f"{len(seqs) - len(unique)} numbers appear on more than one line")
    outside = [s for s in unique if not first <= s <= last]
    if outside:
        report.problem("entry_mismatch", where, f"lines with _seq outside {first}..{last}, e.g. {sorted(outside)[:3]}")
    retired_set = {n for a, b in retired for n in range(a, b + 1)}
    missing = [n for n in range(first, last + 1) if n not in unique and n not in retired_set]
    if missing:
        report.problem("seq_gap", where, f"{len(missing)} numbers of {first}..{last} are on no line, e.g. {missing[:3]}")
    elif len(unique) != expected and not outside:
        report.problem("entry_mismatch", where, f"{len(unique)} numbers where {expected} were expected")


def _small_files(report: VerifyReport, sizes: dict, count: int, small: int) -> None:
    folders: dict[str, list[int]] = {}
    for path, size in sizes.items():
        folders.setdefault(path.rpartition("/")[0], []).append(size)
    for folder, values in sorted(folders.items()):
        median = int(statistics.median(values))
        if len(values) >= count and median < small:
            report.small_files.append({"folder": folder, "files": len(values), "median_bytes": median,
                                       "total_bytes": sum(values)})


def main(env, pipeline: str | None, day: str | None, since: str | None, as_json: bool, workers: int,
         small_file_count: int, small_file_bytes: int) -> int:
    from .pipelines import load_pipelines

    pipelines = [p for p in load_pipelines(env) if pipeline is None or p.pipeline_name == pipeline]
    if not pipelines:
        print(f"no pipeline named {pipeline!r}")
        return 2
    reports = [verify(p, day=day, since=since, workers=workers, small_file_count=small_file_count,
                      small_file_bytes=small_file_bytes) for p in pipelines]
    if as_json:
        print(json.dumps({"ok": all(r.ok for r in reports), "pipelines": [r.as_dict() for r in reports]}, indent=2))
    else:
        print("\n".join(r.summary() for r in reports))
    return 0 if all(r.ok for r in reports) else 1
