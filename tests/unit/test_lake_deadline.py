"""The lake's per-request deadline: client timeouts and the service's own ``timeout`` parameter."""

from types import SimpleNamespace

import pytest

from shared.errors import LeaseLostError
from shared.lake import Deadline, blob_url


def _request(url: str):
    return SimpleNamespace(http_request=SimpleNamespace(url=url), context=SimpleNamespace(options={}))


def test_every_attempt_carries_the_time_left_as_the_service_timeout():
    now = [100.0]
    deadline = Deadline(until=lambda: 130.5, clock=lambda: now[0])
    request = _request("http://h/acct/fs/a.json?sv=1&sig=x%2Fy&timeout=99")
    deadline(request)
    assert request.http_request.url == "http://h/acct/fs/a.json?sv=1&sig=x%2Fy&timeout=30"
    assert request.context.options["read_timeout"] == 30.5
    now[0] = 120.0  # a retry later: less time left
    deadline(request)
    assert request.http_request.url.endswith("sig=x%2Fy&timeout=10")
    now[0] = 129.0
    with pytest.raises(LeaseLostError):
        deadline(request)


def test_the_blob_endpoint_of_a_lake_account():
    assert blob_url("https://acct.dfs.core.windows.net") == "https://acct.blob.core.windows.net"
    assert blob_url("http://127.0.0.1:10100/devstoreaccount1") == "http://127.0.0.1:10100/devstoreaccount1"
