"""``devtools_testutils.storage.aio``: the async storage test base class."""

from __future__ import annotations

from . import GenericTestProxyParametrize1, LogCaptured, StorageRecordedTestCase


class AsyncStorageRecordedTestCase(StorageRecordedTestCase):
    """The same as the sync one: ``get_credential(..., is_async=True)`` gives an async credential."""


__all__ = ["AsyncStorageRecordedTestCase", "GenericTestProxyParametrize1", "LogCaptured"]
