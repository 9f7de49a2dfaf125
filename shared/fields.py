"""The fields a run routes a change event by (operation, cluster time, resume token key, namespace),
read from the event's raw BSON in one pass by the C extension, without decoding the rest of it.

``event_fields(event) -> (operationType, seconds, increment, key, db, coll)``, where ``key`` is
``intent.event_key(event)``; ``db`` and ``coll`` are None where ``ns`` (or its ``coll``) is absent.
Events of another shape (a token without ``_data``, a field of an unexpected type), and every event
where the extension could not be built, are read through the decoded document instead, with the
same result.
"""

from __future__ import annotations

from typing import Any

from .intent import event_key

try:  # built from native/extjson (requirements.txt); absent: the decoded path below
    from _bronze_extjson import fields as _native_fields
except ImportError:  # pragma: no cover - depends on the build
    _native_fields = None

Fields = tuple  # (str | None, int, int, str, str | None, str | None)


def event_fields(event: Any) -> Fields:
    if _native_fields is not None:
        found = _native_fields(event.raw)
        if found is not None:
            return found
    return decoded_fields(event)


def decoded_fields(event: Any) -> Fields:
    cluster = event["clusterTime"]
    ns = event.get("ns")
    db = ns.get("db") if ns is not None else None
    coll = ns.get("coll") if ns is not None else None
    return event.get("operationType"), cluster.time, cluster.inc, event_key(event), db, coll
