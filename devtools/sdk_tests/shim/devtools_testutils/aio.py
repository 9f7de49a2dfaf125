"""``devtools_testutils.aio``: the async pass-through decorator."""

from __future__ import annotations

import functools
from typing import Callable


def recorded_by_proxy_async(fn: Callable) -> Callable:
    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        kwargs.setdefault("variables", {})
        return await fn(*args, **kwargs)
    return wrapper
