"""Contract tests: replay recordings of the live ADLS Gen2 service against the emulator.

The recordings are in ``tests/emulator/recordings/`` in this repository (copied from
``Azure/azure-sdk-assets``, MIT; see the README there for their source and licence), so the tests need
nothing outside the repository. If the folder is missing or empty these tests FAIL (they never skip).

Each recording is replayed in order on a fresh emulator. Every request is sent as recorded (method,
path and query under the emulator's account, the recorded headers, the recorded body), re-signed
with SharedKey because the recorded Authorization is sanitized. Values that only the live service
could know are mapped to what the emulator answered earlier in the same replay: ETags (in
``If-Match``, ``If-None-Match``, ``x-ms-source-if-*``), Last-Modified dates (in ``If-Modified-Since`` /
``If-Unmodified-Since``) and listing continuation tokens. Lease IDs are sent as recorded.

For every response we compare: the status code; ``x-ms-error-code``; whether an ETag and a
Last-Modified are present; that the ETag is consistent (a recorded ETag seen before must map to
the same emulator ETag, a new one to a new ETag: this checks "changed" and "kept"); Content-Length
on successful responses; ``x-ms-resource-type``, the lease headers, ``x-ms-lease-id`` and
``Content-Range``; ``x-ms-meta-*`` and Content-Language/-Disposition on reads; continuation presence;
listing bodies (name, isDirectory, contentLength); read bodies byte for byte; and the error body's
format (JSON with the code, XML with the code, or none on HEAD).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from devtools.adls_emulator.auth import DEV_ACCOUNT

from .rawclient import RawClient

RECORDINGS_DIR = Path(__file__).resolve().parent / "recordings"

# Recordings not replayed, with the reason. (Every recording currently passes.)
SKIPPED: dict[str, str] = {}

# Response headers deliberately not compared, with the reason.
NOT_COMPARED = {
    "x-ms-delete-type-permanent / x-ms-deletion-id": "the recorded accounts had soft delete on for some runs; "
    "the emulator has no soft delete and always answers x-ms-delete-type-permanent: true",
    "x-ms-lease-renewed": "the recordings show 'false' after auto-renew of a fresh lease; the emulator always "
    "renews and answers 'true' (the rule behind the service's value is not documented)",
    "x-ms-acl / x-ms-owner / x-ms-group / x-ms-permissions": "no ACL model beyond a permission string",
    "Content-Length of error responses": "message texts (RequestId, Time) differ",
}

# The recorder sanitized x-ms-rename-source; the sources below are taken from the requests around
# each rename (the paths created before it, and those that are gone after it) and the SDK tests.
RENAME_SOURCES = {
    ("test_directory.pyTestDirectorytest_rename_from.json", 2): "/filesystem1f3f27a0/directory1f3f27a0",
    ("test_directory.pyTestDirectorytest_rename_from_an_unencoded_directory_in_another_file_system.json", 6):
        "/oldfilesystem1f583a9f/old%20dir",
    ("test_directory.pyTestDirectorytest_rename_to_an_existing_directory_in_another_file_system.json", 5):
        "/filesystem740f3984/source",
    ("test_directory.pyTestDirectorytest_rename_with_none_existing_destination_condition_and_source_"
     "unmodified_condition.json", 5): "/filesystemaf9843d3/source/subdir",
    ("test_file.pyTestFiletest_rename_file_special_chars.json", 3): "/filesystemafc128d2/oldfile",
    ("test_file.pyTestFiletest_rename_file_to_existing_file.json", 7): "/filesystem31d52a2d/file31d52a2d",
    ("test_file.pyTestFiletest_rename_file_will_not_change_existing_directory.json", 15):
        "/filesystem7dc631ac/dir2/file3",
    ("test_file.pyTestFiletest_rename_file_with_non_used_name.json", 4): "/filesystem88bb2af7/file88bb2af7",
}

_DROP_REQUEST_HEADERS = {"authorization", "content-length", "user-agent", "accept-encoding", "connection",
                         "x-ms-date", "transfer-encoding"}
_ETAG_REQUEST_HEADERS = ("if-match", "if-none-match", "x-ms-source-if-match", "x-ms-source-if-none-match")
_DATE_REQUEST_HEADERS = ("if-modified-since", "if-unmodified-since", "x-ms-source-if-modified-since",
                         "x-ms-source-if-unmodified-since")
_EXACT_HEADERS = ("x-ms-resource-type", "x-ms-lease-state", "x-ms-lease-status", "x-ms-lease-duration",
                  "x-ms-lease-id", "content-range")
_READ_HEADERS = ("content-language", "content-disposition")

_MISSING = "<recordings folder missing>"


def _recording_params() -> list:
    if not RECORDINGS_DIR.is_dir():
        return [pytest.param(_MISSING, id="recordings-missing")]
    files = sorted(p.name for p in RECORDINGS_DIR.glob("*.json"))
    return [pytest.param(name, id=name.removesuffix(".json"),
                         marks=[pytest.mark.skip(reason=SKIPPED[name])] if name in SKIPPED else [])
            for name in files]


def test_recordings_folder_is_present():
    assert RECORDINGS_DIR.is_dir(), (
        f"ADLS recordings not found at {RECORDINGS_DIR} (tests/emulator/recordings/ in the repository)")
    assert list(RECORDINGS_DIR.glob("*.json")), f"no recordings (*.json) in {RECORDINGS_DIR}"


def test_recordings_are_in_the_repository_with_source_and_licence():
    repo_root = Path(__file__).resolve().parents[2]
    assert RECORDINGS_DIR.is_relative_to(repo_root), "the recordings must be read from the repository"
    readme = (RECORDINGS_DIR / "README.md").read_text(encoding="utf-8")
    assert "Azure/azure-sdk-assets" in readme and "MIT License" in readme
    listed = {line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| test_")}
    assert listed == {p.name for p in RECORDINGS_DIR.glob("*.json")}, "README table and files differ"


def test_rename_sources_cover_every_sanitized_rename():
    if not RECORDINGS_DIR.is_dir():
        pytest.fail(f"ADLS recordings not found at {RECORDINGS_DIR}")
    found = set()
    for path in RECORDINGS_DIR.glob("*.json"):
        for i, entry in enumerate(json.loads(path.read_text(encoding="utf-8"))["Entries"]):
            if any(k.lower() == "x-ms-rename-source" for k in entry["RequestHeaders"]):
                found.add((path.name, i))
    assert found == set(RENAME_SOURCES)


def _lower(headers: dict) -> dict[str, str]:
    return {k.lower(): (", ".join(v) if isinstance(v, list) else str(v)) for k, v in headers.items()}


def _request_body(entry: dict) -> bytes | None:
    body = entry.get("RequestBody")
    if body is None:
        return None
    if isinstance(body, str):
        return base64.b64decode(body) if body else b""
    return json.dumps(body).encode()


class Replay:
    """State carried through one recording: recorded-to-emulator maps for ETags, dates, tokens."""

    def __init__(self, name: str, client: RawClient):
        self.name = name
        self.client = client
        self.etags: dict[str, str] = {}  # recorded ETag -> emulator ETag
        self.etags_back: dict[str, str] = {}  # emulator ETag -> recorded ETag
        self.dates: dict[str, str] = {}  # recorded Last-Modified -> emulator Last-Modified
        self.tokens: dict[str, str] = {}  # recorded continuation -> emulator continuation

    def where(self, index: int, entry: dict) -> str:
        return f"{self.name} entry {index}: {entry['RequestMethod']} {entry['RequestUri']}"

    def build(self, index: int, entry: dict) -> tuple[str, str, dict[str, str], bytes | None]:
        url = urlsplit(entry["RequestUri"])
        query = url.query
        if "continuation=" in query:
            parts = []
            for part in query.split("&"):
                name, _, value = part.partition("=")
                if name == "continuation":
                    value = quote(self.tokens.get(unquote(value), unquote(value)), safe="")
                parts.append(f"{name}={value}")
            query = "&".join(parts)
        target = f"/{DEV_ACCOUNT}{url.path}" + (f"?{query}" if query else "")
        headers = {}
        for name, value in entry["RequestHeaders"].items():
            lname = name.lower()
            if lname in _DROP_REQUEST_HEADERS:
                continue
            if lname in _ETAG_REQUEST_HEADERS and value.strip() != "*":
                value = self.etags.get(value, value)
            if lname in _DATE_REQUEST_HEADERS:
                value = self.dates.get(value, value)
            if lname == "x-ms-rename-source":
                value = RENAME_SOURCES[(self.name, index)]
            headers[name] = value
        return entry["RequestMethod"], target, headers, _request_body(entry)

    def check(self, index: int, entry: dict, status: int, got: dict[str, str], body: bytes) -> None:
        where = self.where(index, entry)
        rec = _lower(entry["ResponseHeaders"])
        got = _lower(got)
        expected_status, expected_code = entry["StatusCode"], rec.get("x-ms-error-code")
        setup_409 = (index == 0 and expected_code == "ContainerAlreadyExists")
        if setup_409:
            # The recorder reused a file system left by an earlier run; on a fresh emulator the
            # same setup request creates it.
            expected_status, expected_code = 201, None
        assert status == expected_status, f"{where}: status {status} != recorded {expected_status}; body {body[:300]!r}"
        assert got.get("x-ms-error-code") == expected_code, f"{where}: error code"
        if setup_409:
            self._learn_etag(where, None, got.get("etag"))
            return

        # ETag and Last-Modified: present or absent as recorded; consistent mapping.
        assert ("etag" in got) == ("etag" in rec), f"{where}: ETag presence (emulator {got.get('etag')})"
        assert ("last-modified" in got) == ("last-modified" in rec), f"{where}: Last-Modified presence"
        if "etag" in rec:
            self._learn_etag(where, rec["etag"], got["etag"])
        if "last-modified" in rec:
            self.dates[rec["last-modified"]] = got["last-modified"]

        if status < 400 and "content-length" in rec:
            assert got.get("content-length") == rec["content-length"], f"{where}: Content-Length"
        for name in _EXACT_HEADERS:
            assert got.get(name) == rec.get(name), f"{where}: {name} {got.get(name)!r} != recorded {rec.get(name)!r}"
        if entry["RequestMethod"] in ("GET", "HEAD") and status < 300 and "x-ms-resource-type" in rec:
            rec_meta = {k: v for k, v in rec.items() if k.startswith("x-ms-meta-")}
            got_meta = {k: v for k, v in got.items() if k.startswith("x-ms-meta-")}
            assert got_meta == rec_meta, f"{where}: metadata"
            for name in _READ_HEADERS:
                assert got.get(name) == rec.get(name), f"{where}: {name}"
        assert ("x-ms-continuation" in got) == ("x-ms-continuation" in rec), f"{where}: continuation presence"
        if "x-ms-continuation" in rec:
            self.tokens[rec["x-ms-continuation"]] = got["x-ms-continuation"]

        self._check_body(where, entry, status, body)

    def _learn_etag(self, where: str, recorded: str | None, actual: str | None) -> None:
        if actual is None:
            return
        if recorded is None:
            self.etags_back.setdefault(actual, f"<setup {actual}>")
            return
        if recorded in self.etags:
            assert self.etags[recorded] == actual, (
                f"{where}: recorded ETag {recorded} was seen before as {self.etags[recorded]}, emulator gave {actual}")
        else:
            assert actual not in self.etags_back, (
                f"{where}: recorded a new ETag {recorded} but the emulator repeated {actual} "
                f"(recorded earlier as {self.etags_back[actual]})")
            self.etags[recorded] = actual
            self.etags_back[actual] = recorded

    @staticmethod
    def _check_body(where: str, entry: dict, status: int, body: bytes) -> None:
        recorded = entry.get("ResponseBody")
        method = entry["RequestMethod"]
        if method == "HEAD":
            assert body == b"", f"{where}: HEAD must have no body"
            return
        if isinstance(recorded, dict) and "paths" in recorded:
            got_paths = json.loads(body)["paths"]

            def summary(paths):
                return [(p["name"], p.get("isDirectory", "false"), p["contentLength"]) for p in paths]

            assert summary(got_paths) == summary(recorded["paths"]), f"{where}: listing"
            return
        if isinstance(recorded, dict) and "error" in recorded:
            got = json.loads(body)
            assert got["error"]["code"] == recorded["error"]["code"], f"{where}: JSON error body"
            return
        if isinstance(recorded, list):  # XML error body, one string per line
            text = body.decode("utf-8-sig")
            code = "".join(recorded).split("<Code>")[1].split("</Code>")[0]
            assert text.startswith("<?xml") and f"<Code>{code}</Code>" in text, f"{where}: XML error body"
            return
        if isinstance(recorded, str) and status < 300:
            assert body == base64.b64decode(recorded), f"{where}: body bytes"
            return
        if recorded is None and status < 300 and method == "GET" and "resource=" not in entry["RequestUri"]:
            assert body == b"", f"{where}: expected an empty body"


@pytest.mark.parametrize("name", _recording_params())
def test_replay_recording(name: str, emu):
    if name == _MISSING:
        pytest.fail(f"ADLS recordings not found at {RECORDINGS_DIR} (tests/emulator/recordings/ in the repository)")
    recording = json.loads((RECORDINGS_DIR / name).read_text(encoding="utf-8"))
    replay = Replay(name, RawClient(emu.base_url))
    for index, entry in enumerate(recording["Entries"]):
        method, target, headers, body = replay.build(index, entry)
        status, got_headers, got_body = replay.client.send(method, target, headers, body)
        replay.check(index, entry, status, got_headers, got_body)
