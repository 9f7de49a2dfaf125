"""``KEY=value`` files, as ``.local/stack.env`` holds the local stack's settings: read by
``python -m shared --env-file`` and the demo, written by ``devtools.stack``."""

from __future__ import annotations

import os
from pathlib import Path


def parse_env(text: str) -> dict[str, str]:
    """Parse ``KEY=value`` lines: blank lines and ``#`` comments skipped, an ``export`` prefix
    allowed, split at the first ``=``, one pair of matching surrounding quotes removed."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"line {number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def read_env(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a ``KEY=value`` file (see :func:`parse_env`)."""
    return parse_env(Path(path).read_text(encoding="utf-8"))
