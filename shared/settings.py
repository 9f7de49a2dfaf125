"""Settings: read once from the environment (app settings), validated in one place.

``SETTINGS`` is the single list of every setting the app reads: the README table, the Bicep app
settings and ``local.settings.json.example`` are checked against it by tests.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from .errors import SettingsError


@dataclass(frozen=True)
class SettingSpec:
    name: str
    default: str | None
    help: str
    secret: bool = False


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("MONGO_URI", None, "MongoDB connection string (required). Keep it in Key Vault.", True),
    SettingSpec("MONGO_DB", "", "Database to watch; empty with MONGO_COLL empty: the whole deployment."),
    SettingSpec("MONGO_COLL", "", "Collection to watch (needs MONGO_DB)."),
    SettingSpec("MONGO_PIPELINE", "[]", "JSON array of extra change-stream stages, e.g. a $match."),
    SettingSpec("MONGO_FULL_DOC", "updateLookup", "fullDocument: default, updateLookup, whenAvailable, required."),
    SettingSpec("MONGO_FULL_DOC_BEFORE_CHANGE", "whenAvailable", "fullDocumentBeforeChange: off, whenAvailable, required."),
    SettingSpec("ADLS_ACCOUNT_URL", None, "Lake endpoint, e.g. https://ACCOUNT.dfs.core.windows.net (required)."),
    SettingSpec("ADLS_FILESYSTEM", "bronze", "Lake file system (container); created if missing."),
    SettingSpec("ADLS_SAS", "", "SAS token for the lake (one of the three lake credentials, or none for Entra ID).", True),
    SettingSpec("ADLS_SHARED_KEY", "", "Account key for the lake.", True),
    SettingSpec("ADLS_CONNECTION_STRING", "", "Connection string for the lake account.", True),
    SettingSpec("CHECKPOINT_TABLE", "changestreamcheckpoints", "Table holding positions, file states and leases."),
    SettingSpec("CHECKPOINT_CONNECTION_STRING", "", "Connection string of the checkpoint table's account.", True),
    SettingSpec("CHECKPOINT_ACCOUNT_URL", "", "Table endpoint, used with Entra ID (DefaultAzureCredential)."),
    SettingSpec("PIPELINE_NAME", "", "Name of this stream's checkpoint; default derived from the scope."),
    SettingSpec("DRAIN_SCHEDULE", "0 */1 * * * *", "NCRONTAB schedule of the timer (six fields)."),
    SettingSpec("DRAIN_BUDGET_SECONDS", "45", "Time one run drains for, writing and committing included."),
    SettingSpec("START_AT", "now", "Where a pipeline without checkpoint starts: now, or an ISO-8601 time."),
    SettingSpec("JSON_MODE", "relaxed", "Extended JSON mode of the lines: relaxed or canonical."),
    SettingSpec("ROLL_WINDOW", "1h", "Time window of one file, dividing a day: 5m, 15m, 1h, 1d ..."),
    SettingSpec("ROLL_MAX_BYTES", "128MiB", "A new part starts when a file would grow past this size."),
    SettingSpec("MAX_BUFFER_BYTES", "64MiB", "Buffered bytes that force an early commit within a run."),
    SettingSpec("ON_HISTORY_LOST", "fail", "When the stored position left the oplog: fail, or restart (with a gap record)."),
    SettingSpec("STATUS_MAX_POSITION_AGE_SECONDS", "600", "status answers 503 when the stored position is older."),
    SettingSpec("PIPELINES", "", "JSON array of several pipelines, each an object with its own PIPELINE_NAME "
                "(required, unique) and scope (MONGO_DB, MONGO_COLL, MONGO_PIPELINE) plus optional per-stream "
                "overrides (ROLL_WINDOW ...); empty: one pipeline from the settings above."),
)

SETTING_NAMES = tuple(s.name for s in SETTINGS)
_DEFAULTS = {s.name: s.default for s in SETTINGS}

_FULL_DOC = ("default", "updateLookup", "whenAvailable", "required")
_FULL_DOC_BEFORE = ("off", "whenAvailable", "required")
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Secret(str):
    """A string that never shows itself in a repr (settings objects are logged and printed)."""

    def __repr__(self) -> str:
        return "'***'" if self else "''"


@dataclass(frozen=True)
class Scope:
    db: str | None = None
    coll: str | None = None

    @property
    def kind(self) -> str:
        if self.coll:
            return "collection"
        return "database" if self.db else "deployment"

    def describe(self) -> str:
        return {"collection": f"collection {self.db}.{self.coll}", "database": f"database {self.db}"}.get(
            self.kind, "the whole deployment"
        )


@dataclass(frozen=True)
class Settings:
    mongo_uri: Secret
    scope: Scope
    mongo_pipeline: tuple[dict, ...]
    full_document: str
    full_document_before_change: str | None
    adls_account_url: str
    adls_filesystem: str
    adls_sas: Secret
    adls_shared_key: Secret
    adls_connection_string: Secret
    checkpoint_table: str
    checkpoint_connection_string: Secret
    checkpoint_account_url: str
    pipeline_name: str
    drain_schedule: str
    drain_budget_seconds: float
    start_at: datetime | None
    json_mode: str
    roll_window_seconds: int
    roll_max_bytes: int
    max_buffer_bytes: int
    on_history_lost: str
    status_max_position_age_seconds: int
    extra: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text that came from a driver or an SDK."""
        values = [self.mongo_uri, self.adls_sas, self.adls_shared_key, self.adls_connection_string,
                  self.checkpoint_connection_string]
        password = urllib.parse.urlsplit(str(self.mongo_uri)).password if self.mongo_uri else None
        if password:
            values += [password, urllib.parse.quote(password, safe="")]
        for conn in (self.adls_connection_string, self.checkpoint_connection_string):
            values += re.findall(r"(?:AccountKey|SharedAccessSignature)=([^;]+)", str(conn))
        return tuple(str(v) for v in values if v)

    @property
    def pipeline_identity(self) -> str:
        """Hash of what decides which events the stream delivers: scope and filter stages.

        Stored with the checkpoint; a checkpoint written under another identity is refused, because
        its sequence numbers and resume token describe another stream.
        """
        body = json.dumps({"db": self.scope.db, "coll": self.scope.coll, "pipeline": self.mongo_pipeline},
                          sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:32]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        return _parse(env)


def _parse(env: Mapping[str, str]) -> Settings:
    problems: list[str] = []

    def raw(name: str) -> str:
        value = env.get(name)
        if value is None or value.strip() == "":
            return _DEFAULTS[name] or ""
        return value.strip()

    def check(name: str, fn, *args):
        try:
            return fn(raw(name), *args)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            return None

    mongo_uri = raw("MONGO_URI")
    if not mongo_uri:
        problems.append("MONGO_URI: required (a mongodb:// or mongodb+srv:// connection string)")
    elif not mongo_uri.startswith(("mongodb://", "mongodb+srv://")):
        problems.append("MONGO_URI: must start with mongodb:// or mongodb+srv:// (value not shown)")

    db, coll = raw("MONGO_DB") or None, raw("MONGO_COLL") or None
    if coll and not db:
        problems.append("MONGO_COLL: needs MONGO_DB (a collection is watched within a database)")
        coll = None
    for name, value in (("MONGO_DB", db), ("MONGO_COLL", coll)):
        if value and ("\x00" in value or (name == "MONGO_DB" and any(c in value for c in '/\\. "$'))):
            problems.append(f"{name}: {value!r} is not a valid MongoDB name")

    pipeline = check("MONGO_PIPELINE", _parse_pipeline)
    full_doc = check("MONGO_FULL_DOC", _one_of, _FULL_DOC)
    before = check("MONGO_FULL_DOC_BEFORE_CHANGE", _one_of, _FULL_DOC_BEFORE)

    account_url = raw("ADLS_ACCOUNT_URL")
    adls_conn = raw("ADLS_CONNECTION_STRING")
    if not account_url and not adls_conn:
        problems.append("ADLS_ACCOUNT_URL: required (e.g. https://ACCOUNT.dfs.core.windows.net)")
    elif account_url and not account_url.startswith(("https://", "http://")):
        problems.append("ADLS_ACCOUNT_URL: must be an http(s) URL (e.g. https://ACCOUNT.dfs.core.windows.net)")
    elif account_url and "?" in account_url:
        problems.append("ADLS_ACCOUNT_URL: put the SAS token in ADLS_SAS, not in the URL")
    lake_creds = [n for n in ("ADLS_SAS", "ADLS_SHARED_KEY", "ADLS_CONNECTION_STRING") if raw(n)]
    if len(lake_creds) > 1:
        problems.append(f"{', '.join(lake_creds)}: set at most one lake credential")
    filesystem = check("ADLS_FILESYSTEM", _filesystem_name)

    table = check("CHECKPOINT_TABLE", _table_name)
    cp_conn = raw("CHECKPOINT_CONNECTION_STRING") or (env.get("AzureWebJobsStorage") or "").strip()
    if cp_conn.replace(" ", "").rstrip(";") == "UseDevelopmentStorage=true":
        cp_conn = _DEV_STORAGE
    cp_url = raw("CHECKPOINT_ACCOUNT_URL")
    if not cp_conn and not cp_url:
        problems.append("CHECKPOINT_CONNECTION_STRING: set it, or CHECKPOINT_ACCOUNT_URL (Entra ID), "
                        "or AzureWebJobsStorage as a connection string")
    if cp_url and not cp_url.startswith(("https://", "http://")):
        problems.append("CHECKPOINT_ACCOUNT_URL: must be an http(s) URL (e.g. https://ACCOUNT.table.core.windows.net)")

    scope = Scope(db, coll)
    pipeline_name = raw("PIPELINE_NAME") or default_pipeline_name(scope)
    if len(pipeline_name) > 200 or re.search(r"[/\\#?\x00-\x1f\x7f]", pipeline_name):
        problems.append("PIPELINE_NAME: at most 200 characters, none of / \\ # ? or control characters")

    schedule = check("DRAIN_SCHEDULE", _ncrontab)
    budget = check("DRAIN_BUDGET_SECONDS", _positive_number, 5, 3600)
    start_at = check("START_AT", _start_at)
    json_mode = check("JSON_MODE", _one_of, ("relaxed", "canonical"))
    window = check("ROLL_WINDOW", _roll_window)
    roll_max = check("ROLL_MAX_BYTES", _size, 1024)
    buffer_max = check("MAX_BUFFER_BYTES", _size, 1024)
    on_lost = check("ON_HISTORY_LOST", _one_of, ("fail", "restart"))
    max_age = check("STATUS_MAX_POSITION_AGE_SECONDS", _positive_number, 1, 10**8)

    if problems:
        error = SettingsError("invalid settings:\n  " + "\n  ".join(problems))
        error.problems = tuple(problems)  # one "NAME: message" each (shared.pipelines names the entry)
        raise error

    return Settings(
        mongo_uri=Secret(mongo_uri),
        scope=scope,
        mongo_pipeline=tuple(pipeline),
        full_document=full_doc,
        full_document_before_change=None if before == "off" else before,
        adls_account_url=account_url.rstrip("/"),
        adls_filesystem=filesystem,
        adls_sas=Secret(raw("ADLS_SAS").lstrip("?")),
        adls_shared_key=Secret(raw("ADLS_SHARED_KEY")),
        adls_connection_string=Secret(adls_conn),
        checkpoint_table=table,
        checkpoint_connection_string=Secret(cp_conn),
        checkpoint_account_url=cp_url.rstrip("/"),
        pipeline_name=pipeline_name,
        drain_schedule=schedule,
        drain_budget_seconds=float(budget),
        start_at=start_at,
        json_mode=json_mode,
        roll_window_seconds=window,
        roll_max_bytes=roll_max,
        max_buffer_bytes=buffer_max,
        on_history_lost=on_lost,
        status_max_position_age_seconds=int(max_age),
        extra={k: v for k, v in env.items() if k.startswith("DRAIN_TEST_")},
    )


_DEV_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def default_pipeline_name(scope: Scope) -> str:
    """``deployment``, ``db-<db>`` or ``coll-<db>.<coll>``, made safe for a Table partition key."""
    from .layout import encode_name  # the same reversible encoding as the lake paths

    if scope.kind == "collection":
        return f"coll-{encode_name(scope.db)}.{encode_name(scope.coll)}"[:200]
    if scope.kind == "database":
        return f"db-{encode_name(scope.db)}"[:200]
    return "deployment"


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _parse_pipeline(value: str) -> list[dict]:
    try:
        from bson import json_util

        stages = json_util.loads(value)
    except Exception as exc:  # json.JSONDecodeError, bson errors
        raise ValueError(f"not valid JSON ({exc.__class__.__name__}): expected a JSON array of stages") from None
    if not isinstance(stages, list) or not all(isinstance(s, dict) and len(s) == 1 for s in stages):
        raise ValueError("expected a JSON array of stages, each an object with one key such as $match")
    for stage in stages:
        (name,) = stage
        if not name.startswith("$"):
            raise ValueError(f"stage {name!r} does not start with $")
    return stages


def _filesystem_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", value):
        raise ValueError(f"{value!r} is not a valid file system name (3-63 lowercase letters, digits, hyphens)")
    return value


def _table_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", value):
        raise ValueError(f"{value!r} is not a valid table name (3-63 letters and digits, starting with a letter)")
    return value


def _ncrontab(value: str) -> str:
    fields = value.split()
    if len(fields) != 6:
        raise ValueError(f"{value!r} needs six fields: second minute hour day month day-of-week")
    try:
        from croniter import croniter

        croniter(value, second_at_beginning=True)
    except Exception as exc:
        raise ValueError(f"{value!r} is not a valid NCRONTAB expression ({exc})") from None
    return value


def _positive_number(value: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not low <= number <= high:
        raise ValueError(f"{value!r} must be between {low:g} and {high:g}")
    return number


def _start_at(value: str) -> datetime | None:
    if value.lower() == "now":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is neither 'now' nor an ISO-8601 time such as 2026-01-31T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _roll_window(value: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([smhd])", value.lower())
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 5m, 15m, 1h or 1d")
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 60 or 86400 % seconds:
        raise ValueError(f"{value!r} must be at least a minute and divide a day (5m, 15m, 1h, 1d ...)")
    return seconds


def _size(value: str, minimum: int) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", value)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size such as 134217728, 128MiB or 64MB")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size < minimum:
        raise ValueError(f"{value!r} is smaller than {minimum} bytes")
    return size


def describe(settings: Settings) -> dict[str, Any]:
    """The settings as shown to a person: secrets reduced to whether they are set."""
    return {
        "pipeline": settings.pipeline_name,
        "scope": settings.scope.describe(),
        "filesystem": settings.adls_filesystem,
        "lake_auth": lake_auth_kind(settings),
        "checkpoint_table": settings.checkpoint_table,
        "budget_seconds": settings.drain_budget_seconds,
        "json_mode": settings.json_mode,
        "roll_window_seconds": settings.roll_window_seconds,
    }


def lake_auth_kind(settings: Settings) -> str:
    if settings.adls_sas:
        return "sas"
    if settings.adls_shared_key:
        return "shared_key"
    if settings.adls_connection_string:
        return "connection_string"
    return "entra_id"
