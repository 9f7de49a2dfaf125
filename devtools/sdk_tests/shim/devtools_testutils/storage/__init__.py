"""``devtools_testutils.storage``: the storage test base class, in live mode against the emulator."""

from __future__ import annotations

import logging
import os
import random
import zlib
from datetime import datetime
from io import StringIO
from typing import Any, Callable

import pytest

from .. import AzureRecordedTestCase

LOGGING_FORMAT = "%(asctime)s %(name)-20s %(levelname)-5s %(message)s"


class StorageRecordedTestCase(AzureRecordedTestCase):
    logger = logging.getLogger("azure.storage")

    def setup_method(self, method: Callable) -> None:
        super().setup_method(method)
        self.configure_logging()

    def account_url(self, storage_account: str, storage_type: str) -> str:
        """The emulator's account URL (``SDK_TESTS_ACCOUNT_URL``); it serves blob and dfs requests alike."""
        return os.environ["SDK_TESTS_ACCOUNT_URL"]

    def generate_sas(self, fn: Callable, *args: Any, **kwargs: Any) -> str:
        return fn(*args, **kwargs)

    def configure_logging(self) -> None:
        # Quiet by default (the SDK logs every header at DEBUG); LogCaptured turns it on.
        self.disable_logging()

    def enable_logging(self) -> None:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOGGING_FORMAT))
        self.logger.handlers = [handler]
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = True
        self.logger.disabled = False

    def disable_logging(self) -> None:
        self.logger.propagate = False
        self.logger.disabled = True
        self.logger.handlers = []

    def get_random_bytes(self, size: int) -> bytes:
        return b"a" * size

    def get_random_text_data(self, size: int) -> str:
        rand = random.Random(zlib.adler32(self.qualified_test_name.encode()) & 0xFFFFFFFF)
        text = ""
        words = ["hello", "world", "python", "啊齄丂狛狜"]
        while len(text) < size:
            text = text + " " + words[int(rand.random() * (len(words) - 1))]
        return text

    def get_datetime_variable(self, variables: dict, name: str, dt: datetime) -> datetime:
        dt_string = variables.setdefault(name, dt.isoformat())
        return datetime.strptime(dt_string, "%Y-%m-%dT%H:%M:%S.%f")

    def assertNamedItemInContainer(self, container, item_name, msg=None):  # noqa: N802 - their name
        for item in container:
            if isinstance(item, str):
                if item == item_name:
                    return
            elif isinstance(item, dict):
                if item_name == item["name"]:
                    return
            elif item.name == item_name:
                return
        pytest.fail(f"{item_name!r} not found in {[str(c) for c in container]}")


class GenericTestProxyParametrize1:
    """Pass-through (the real one renames the parameter for the recordings)."""

    def __call__(self, fn: Callable) -> Callable:
        return fn


class LogCaptured:
    def __init__(self, test_case: StorageRecordedTestCase | None = None) -> None:
        self.test_case = test_case

    def __enter__(self) -> StringIO:
        self.test_case.enable_logging()
        self.log_stream = StringIO()
        self.handler = logging.StreamHandler(self.log_stream)
        self.handler.setFormatter(logging.Formatter(LOGGING_FORMAT))
        self.logger = logging.getLogger("azure.storage")
        self.logger.level = logging.DEBUG
        self.logger.addHandler(self.handler)
        return self.log_stream

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        self.logger.removeHandler(self.handler)
        self.log_stream.close()
        self.test_case.configure_logging()


__all__ = ["GenericTestProxyParametrize1", "LogCaptured", "StorageRecordedTestCase"]
