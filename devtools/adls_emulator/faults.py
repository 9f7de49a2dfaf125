"""Fault injection rules and request counters behind the ``/_emulator/`` control API.

A rule matches a request by operation name (``op``, or ``"*"`` for any), an optional file system
name and a glob over the path inside the file system (``fnmatch`` syntax, ``*`` also crosses
``/``). Each match consumes one of the rule's ``count`` uses; rules are tried in the order they
were added. Actions:

* ``error``: answer ``status`` / ``code`` without applying the operation;
* ``drop_response``: apply the operation, then close the connection without answering;
* ``delay``: sleep ``delay_seconds``, then handle the request normally.
"""

from __future__ import annotations

import fnmatch
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

ACTIONS = ("error", "drop_response", "delay")


@dataclass
class FaultRule:
    op: str = "*"
    path: str = "*"
    filesystem: str | None = None
    count: int = 1
    status: int = 503
    code: str = "ServerBusy"
    action: str = "error"
    delay_seconds: float = 0.0
    message: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FaultRule":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        rule = cls(**data)
        if rule.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        if rule.count < 1:
            raise ValueError("count must be >= 1")
        rule.status = int(rule.status)
        rule.delay_seconds = float(rule.delay_seconds)
        return rule

    def matches(self, op: str, filesystem: str | None, path: str) -> bool:
        if self.op not in ("*", op):
            return False
        if self.filesystem is not None and self.filesystem != filesystem:
            return False
        return fnmatch.fnmatchcase(path or "", self.path or "*")


class FaultRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules]

    def take(self, op: str, filesystem: str | None, path: str) -> FaultRule | None:
        """Return (and consume one use of) the first rule matching the request, if any."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(op, filesystem, path):
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                    return rule
        return None


class Stats:
    """Requests counted by operation name, plus ``total``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, op: str) -> None:
        with self._lock:
            self._counts[op] += 1
            self._counts["total"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._counts)
        out.setdefault("total", 0)
        return out

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
