"""Lease behaviour of dfs writes that the product relies on, sent as raw requests.

Each rule is taken from Microsoft's REST reference (Path - Update, Path - Lease, the Blob lease state
table) or a live-service recording (``recordings/``); the test names say which rule they pin.
"""

from __future__ import annotations

import uuid

import pytest

from devtools.adls_emulator.auth import DEV_ACCOUNT

from .rawclient import RawClient


@pytest.fixture
def raw(emu) -> RawClient:
    return RawClient(emu.base_url)


class File:
    """One file in a fresh file system, with helpers for the dfs requests under test."""

    def __init__(self, raw: RawClient):
        self.raw = raw
        self.fs = f"fs{uuid.uuid4().hex[:12]}"
        status, _, _ = raw.send("PUT", f"/{DEV_ACCOUNT}/{self.fs}?resource=filesystem")
        assert status == 201
        self.url = f"/{DEV_ACCOUNT}/{self.fs}/file"
        status, headers, _ = raw.send("PUT", self.url + "?resource=file")
        assert status == 201
        self.etag = headers["ETag"]

    def append(self, data: bytes, position: int, **headers: str):
        return self.raw.send("PATCH", f"{self.url}?action=append&position={position}", _h(headers), data)

    def flush(self, position: int, **headers: str):
        return self.raw.send("PATCH", f"{self.url}?action=flush&position={position}", _h(headers))

    def lease(self, action: str, **headers: str):
        return self.raw.send("POST", self.url, {"x-ms-lease-action": action, **_h(headers)})

    def head(self) -> dict[str, str]:
        status, headers, _ = self.raw.send("HEAD", self.url)
        assert status == 200
        return {k.lower(): v for k, v in headers.items()}

    def read(self) -> bytes:
        status, _, body = self.raw.send("GET", self.url)
        assert status == 200
        return body


def _h(headers: dict[str, str]) -> dict[str, str]:
    """``x_ms_lease_id="..."`` -> ``{"x-ms-lease-id": "..."}``; ``if_match`` -> ``If-Match``."""
    return {k.replace("_", "-"): v for k, v in headers.items()}


def _code(response) -> tuple[int, str | None]:
    status, headers, _ = response
    return status, {k.lower(): v for k, v in headers.items()}.get("x-ms-error-code")


@pytest.fixture
def file(raw) -> File:
    return File(raw)


def _acquire_on_append(file: File, lease_id: str, duration: str = "15", position: int = 0, data: bytes = b"abc"):
    return file.append(data, position, x_ms_lease_action="acquire", x_ms_proposed_lease_id=lease_id,
                       x_ms_lease_duration=duration)


# --------------------------------------------------------------------------- acquire on append
def test_append_acquires_a_lease_with_the_proposed_id_and_duration(file):
    lease_id = str(uuid.uuid4())
    status, headers, _ = _acquire_on_append(file, lease_id, "15")
    assert status == 202
    assert "x-ms-lease-id" not in {k.lower() for k in headers}  # not echoed (recorded)
    props = file.head()
    assert (props["x-ms-lease-state"], props["x-ms-lease-status"], props["x-ms-lease-duration"]) == (
        "leased", "locked", "fixed")
    # The proposed id is the lease id: a write with it succeeds.
    assert file.flush(3, x_ms_lease_id=lease_id)[0] == 200


def test_append_acquire_with_an_infinite_duration(file):
    assert _acquire_on_append(file, str(uuid.uuid4()), "-1")[0] == 202
    assert file.head()["x-ms-lease-duration"] == "infinite"


def test_reacquiring_with_the_same_proposed_id_on_a_file_leased_with_it_succeeds(file):
    lease_id = str(uuid.uuid4())
    assert _acquire_on_append(file, lease_id)[0] == 202
    assert _acquire_on_append(file, lease_id, position=3, data=b"def")[0] == 202
    assert file.head()["x-ms-lease-state"] == "leased"
    assert file.flush(6, x_ms_lease_id=lease_id)[0] == 200
    assert file.read() == b"abcdef"


def test_acquiring_on_append_with_another_id_on_a_leased_file_fails(file):
    assert _acquire_on_append(file, str(uuid.uuid4()))[0] == 202
    assert _code(_acquire_on_append(file, str(uuid.uuid4()))) == (409, "LeaseAlreadyPresent")


# --------------------------------------------------------------------------- release on flush
def test_release_on_flush_commits_and_releases(file):
    lease_id = str(uuid.uuid4())
    assert _acquire_on_append(file, lease_id)[0] == 202
    status, headers, _ = file.flush(3, x_ms_lease_action="release", x_ms_lease_id=lease_id)
    assert status == 200 and headers["ETag"] != file.etag
    props = file.head()
    assert (props["x-ms-lease-state"], props["x-ms-lease-status"], props["content-length"]) == (
        "available", "unlocked", "3")
    assert file.append(b"d", 3)[0] == 202  # no lease needed any more
    assert file.flush(4)[0] == 200


def test_release_on_an_append_without_flush_keeps_the_lease(file):
    # Path - Update: "release" releases the lease only on flush.
    lease_id = str(uuid.uuid4())
    assert _acquire_on_append(file, lease_id)[0] == 202
    assert file.append(b"d", 3, x_ms_lease_action="release", x_ms_lease_id=lease_id)[0] == 202
    assert file.head()["x-ms-lease-state"] == "leased"
    assert _code(file.flush(4)) == (412, "LeaseIdMissing")


def test_release_on_append_with_flush_releases(file):
    lease_id = str(uuid.uuid4())
    assert _acquire_on_append(file, lease_id)[0] == 202
    status, _, _ = file.raw.send("PATCH", f"{file.url}?action=append&position=3&flush=true",
                                 {"x-ms-lease-action": "release", "x-ms-lease-id": lease_id}, b"d")
    assert status == 202
    assert file.head()["x-ms-lease-state"] == "available"


# --------------------------------------------------------------------------- writes and lease ids
@pytest.mark.parametrize("write", ["append", "flush"])
def test_write_without_a_lease_id_on_a_leased_file_fails_lease_id_missing(file, write):
    assert _acquire_on_append(file, str(uuid.uuid4()))[0] == 202
    response = file.append(b"d", 3) if write == "append" else file.flush(3)
    assert _code(response) == (412, "LeaseIdMissing")


@pytest.mark.parametrize("write", ["append", "flush"])
def test_write_with_another_lease_id_fails_lease_id_mismatch(file, write):
    assert _acquire_on_append(file, str(uuid.uuid4()))[0] == 202
    other = str(uuid.uuid4())
    response = file.append(b"d", 3, x_ms_lease_id=other) if write == "append" else file.flush(3, x_ms_lease_id=other)
    assert _code(response) == (412, "LeaseIdMismatch")


@pytest.mark.parametrize("write", ["append", "flush"])
@pytest.mark.parametrize("how", ["broken", "released"])
def test_write_with_the_old_lease_id_after_break_or_release_fails_lease_not_present(file, write, how):
    lease_id = str(uuid.uuid4())
    assert _acquire_on_append(file, lease_id)[0] == 202
    if how == "broken":
        assert file.lease("break", x_ms_lease_break_period="0")[0] == 202
    else:
        assert file.lease("release", x_ms_lease_id=lease_id)[0] == 200
    response = (file.append(b"d", 3, x_ms_lease_id=lease_id) if write == "append"
                else file.flush(3, x_ms_lease_id=lease_id))
    assert _code(response) == (412, "LeaseNotPresent")
    # Without a lease id the write goes through.
    assert file.flush(3)[0] == 200


# --------------------------------------------------------------------------- Path - Lease break
def test_break_with_period_zero_breaks_at_once_and_a_new_id_can_acquire(file):
    old = str(uuid.uuid4())
    assert _acquire_on_append(file, old, "60")[0] == 202
    status, headers, _ = file.lease("break", x_ms_lease_break_period="0")
    assert status == 202 and headers["x-ms-lease-time"] == "0"
    props = file.head()
    assert (props["x-ms-lease-state"], props["x-ms-lease-status"]) == ("broken", "unlocked")

    new = str(uuid.uuid4())
    status, headers, _ = file.lease("acquire", x_ms_proposed_lease_id=new, x_ms_lease_duration="15")
    assert status == 201 and headers["x-ms-lease-id"] == new
    assert file.head()["x-ms-lease-state"] == "leased"
    assert _code(file.flush(3, x_ms_lease_id=old)) == (412, "LeaseIdMismatch")
    assert file.flush(3, x_ms_lease_id=new)[0] == 200


def test_after_a_break_acquire_on_append_with_a_new_id_succeeds(file):
    assert _acquire_on_append(file, str(uuid.uuid4()))[0] == 202
    assert file.lease("break", x_ms_lease_break_period="0")[0] == 202
    new = str(uuid.uuid4())
    assert _acquire_on_append(file, new, position=0, data=b"xyz")[0] == 202
    assert file.flush(3, x_ms_lease_id=new, x_ms_lease_action="release")[0] == 200
    assert file.read() == b"xyz"


# --------------------------------------------------------------------------- flush with no new data
def test_flush_at_the_current_length_with_no_new_data_succeeds_and_changes_the_etag(file):
    assert file.append(b"abc", 0)[0] == 202
    status, headers, _ = file.flush(3)
    assert status == 200
    first = headers["ETag"]
    status, headers, _ = file.flush(3)
    assert status == 200 and headers["ETag"] not in (first, file.etag)
    assert file.head()["etag"] == headers["ETag"]
    assert file.read() == b"abc"


def test_flush_at_zero_on_a_new_file_changes_the_etag(file):
    # Recorded: test_append_empty_data (flush position=0 on a new file answers 200 with a new ETag).
    status, headers, _ = file.flush(0)
    assert status == 200 and headers["ETag"] != file.etag


# --------------------------------------------------------------------------- If-Match before lease
def test_if_match_on_flush_is_checked_before_the_lease_action(file):
    holder = str(uuid.uuid4())
    assert _acquire_on_append(file, holder)[0] == 202
    stale = file.etag
    assert file.flush(3, x_ms_lease_id=holder)[0] == 200  # the ETag moves on

    # A stale If-Match fails with ConditionNotMet whatever the lease part of the request says ...
    assert _code(file.flush(3, if_match=stale)) == (412, "ConditionNotMet")  # no lease id
    assert _code(file.flush(3, if_match=stale, x_ms_lease_id=str(uuid.uuid4()))) == (412, "ConditionNotMet")
    assert _code(file.flush(3, if_match=stale, x_ms_lease_action="acquire",
                            x_ms_proposed_lease_id=str(uuid.uuid4()), x_ms_lease_duration="15")) == (
        412, "ConditionNotMet")
    assert _code(file.flush(3, if_match=stale, x_ms_lease_action="release", x_ms_lease_id=holder)) == (
        412, "ConditionNotMet")
    # ... and the lease action was not applied: the lease is still held by the holder.
    props = file.head()
    assert props["x-ms-lease-state"] == "leased"
    assert file.flush(3, x_ms_lease_id=holder, if_match=props["etag"])[0] == 200
