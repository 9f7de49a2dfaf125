"""The smallest stand-in for ``devtools_testutils`` (the Azure SDK repository's test helpers) that
the ``azure-storage-file-datalake`` source package's tests import.

Live mode only: there is no test proxy and nothing is recorded or played back. The account the
preparers hand out is the one in the environment (``DATALAKE_STORAGE_ACCOUNT_NAME`` / ``_KEY``, set
by ``python -m devtools.sdk_tests`` to the emulator's account), ``account_url`` points at
``SDK_TESTS_ACCOUNT_URL`` (the emulator), and token credentials are unsigned JWTs the emulator
accepts (it does not check signatures).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import json
import os
import time
from typing import Any, Callable

from azure.core.credentials import AccessToken

__all__ = ["AzureRecordedTestCase", "EnvironmentVariableLoader", "EnvironmentVariableOptions", "FakeTokenCredential",
           "is_live", "recorded_by_proxy"]

# The identity the fake tokens carry (tests read ``oid``/``tid`` from the token for user delegation SAS).
FAKE_OID = os.environ.get("SDK_TESTS_TOKEN_OID", "3a5f8a6e-2c1b-4d6e-9f0a-1b2c3d4e5f60")
FAKE_TID = os.environ.get("SDK_TESTS_TOKEN_TID", "72f988bf-86f1-41af-91ab-2d7cd011db47")


def is_live() -> bool:
    return True


class Secret(str):
    """A hidden preparer value: the tests use it both as the string and as ``.secret``."""

    @property
    def secret(self) -> str:
        return str(self)


class EnvironmentVariableOptions:
    def __init__(self, hide_secrets: list[str] | None = None) -> None:
        self.hide_secrets = list(hide_secrets or [])


class EnvironmentVariableLoader:
    """Preparer: passes each named setting as a keyword argument, read from the environment
    variable of the same name in upper case (as the real loader does in live mode)."""

    def __init__(self, directory: str, options: EnvironmentVariableOptions | None = None, **defaults: str) -> None:
        self.directory = directory
        self.options = options or EnvironmentVariableOptions()
        self.defaults = defaults

    def _values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, default in self.defaults.items():
            value = os.environ.get(name.upper(), default)
            values[name] = Secret(value) if name in self.options.hide_secrets else value
        return values

    def __call__(self, fn: Callable) -> Callable:
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args, **kwargs):
                return await fn(*args, **_accepted(fn, {**self._values(), **kwargs}))
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **_accepted(fn, {**self._values(), **kwargs}))
        return wrapper


def _accepted(fn: Callable, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Only the keyword arguments ``fn`` takes (as the real preparers trim them)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def recorded_by_proxy(fn: Callable) -> Callable:
    """Live mode: call the test with an empty ``variables`` dict (what the tests record in playback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        kwargs.setdefault("variables", {})
        return fn(*args, **kwargs)
    return wrapper


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def fake_token(scope: str, lifetime: int = 3600) -> AccessToken:
    """An unsigned JWT for ``scope``'s resource (``.../.default`` stripped), like a real one's claims."""
    now = int(time.time())
    audience = scope[: -len("/.default")] if scope.endswith("/.default") else scope
    claims = {"aud": audience, "iss": f"https://sts.windows.net/{FAKE_TID}/", "iat": now, "nbf": now,
              "exp": now + lifetime, "oid": FAKE_OID, "tid": FAKE_TID, "sub": FAKE_OID}
    return AccessToken(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.", now + lifetime)


class FakeTokenCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return fake_token(scopes[0])

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class AsyncFakeTokenCredential:
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return fake_token(scopes[0])

    async def close(self) -> None:
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: Any) -> None:
        pass


class AzureRecordedTestCase:
    """What the tests use of the SDK repository's base test class, in live mode."""

    @property
    def is_live(self) -> bool:
        return True

    def is_playback(self) -> bool:
        return False

    def setup_method(self, method: Callable) -> None:
        # The pytest node id (with parameters), so that names differ between parametrized runs.
        current = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
        self.qualified_test_name = current or f"{type(self).__name__}.{method.__name__}"

    def get_credential(self, client_class: type, **kwargs: Any) -> Any:
        return AsyncFakeTokenCredential() if kwargs.get("is_async") else FakeTokenCredential()

    def create_random_name(self, name: str) -> str:
        qualified = getattr(self, "qualified_test_name", type(self).__name__)
        return name + hashlib.sha256((qualified + name).encode()).hexdigest()[:10]

    def get_resource_name(self, name: str) -> str:
        return self.create_random_name(name)
