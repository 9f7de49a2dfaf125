"""``devtools_testutils.storage.aio``: the async storage test base class."""

from __future__ import annotations

from typing import Any

from .. import AsyncFakeTokenCredential
from . import GenericTestProxyParametrize1, LogCaptured, StorageRecordedTestCase


class AsyncStorageRecordedTestCase(StorageRecordedTestCase):
    def generate_oauth_token(self) -> Any:
        return AsyncFakeTokenCredential()

    def generate_fake_token(self) -> Any:
        return AsyncFakeTokenCredential()


__all__ = ["AsyncStorageRecordedTestCase", "GenericTestProxyParametrize1", "LogCaptured"]
