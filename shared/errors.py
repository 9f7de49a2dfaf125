"""Errors with a kind.

* ``TransientError``: the run stops without moving the stored position; the next tick retries from
  the unchanged checkpoint (network faults, throttling, a server restart, a lease held by another run
  that will expire).
* ``TerminalError``: the user must act (bad settings, bad credentials, lost history under
  ``ON_HISTORY_LOST=fail``, a checkpoint that belongs to another pipeline).

Every message says what was being done; none carries a secret (callers pass messages through
``redact`` when they include text from a driver or an SDK).
"""

from __future__ import annotations


class DrainError(Exception):
    """Base class: ``kind`` is ``"transient"`` or ``"terminal"``."""

    kind = "transient"


class TransientError(DrainError):
    kind = "transient"


class TerminalError(DrainError):
    kind = "terminal"


class SettingsError(TerminalError):
    """One or more settings are missing or invalid; the message names each setting."""


class HistoryLostError(TerminalError):
    """The stored position is no longer in the oplog (MongoDB codes 286, 280, 136 ...); ``code``."""

    code: int | None = None


class EventTooLargeError(TransientError):
    """The next event is over the 16 MB BSON limit (code 10334): the server cannot deliver it."""

    code: int | None = None


class PipelineMismatchError(TerminalError):
    """The stored checkpoint was written by a pipeline with another scope or filter."""


class LeaseHeldError(TransientError):
    """Another run holds this pipeline's lease; this run leaves without writing."""


class LeaseLostError(TransientError):
    """This run's lease was taken over (its commit was rejected); it stops without further writes."""


def kind_of(exc: BaseException) -> str:
    return getattr(exc, "kind", "transient") if isinstance(exc, DrainError) else "transient"


def redact(text: str, secrets: "list[str] | tuple[str, ...]") -> str:
    """Replace every secret (and its password part, for URIs) in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def sdk_message(exc: BaseException, secrets: "list[str] | tuple[str, ...]") -> str:
    """The first line of an Azure SDK error, with the secrets scrubbed (SDK messages can be long)."""
    text = redact(f"{exc.__class__.__name__}: {getattr(exc, 'message', None) or exc}", secrets)
    return text.splitlines()[0][:300]


class ErrorContext:
    """Base of the ``with`` blocks that turn a client library's exceptions into errors with a kind
    (``__exit__``, per service) and a message that says what was being done, secrets scrubbed."""

    def __init__(self, doing: str, secrets: "list[str] | tuple[str, ...]") -> None:
        self.doing, self.secrets = doing, secrets

    def __enter__(self):
        return self
