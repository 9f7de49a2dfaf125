"""Settings: read once from the environment (app settings), validated in one place.

Each setting is declared once, as a field of ``Settings`` made with :func:`setting`: its name, its
default, the parser that checks it (raising ``ValueError`` with a message that ``from_env`` prefixes
with the setting's name), whether a ``PIPELINES`` entry may set it, whether it is part of the
pipeline's identity, whether it is a secret, and its one-line doc. ``SETTINGS`` (every setting the
app reads) is derived from those fields; the README table, the Bicep app settings and
``local.settings.json.example`` are checked against it by tests, and ``shared.pipelines`` takes the
per-pipeline settings from it. The rules that span several settings are in :func:`_check_across`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from croniter import croniter

from .errors import SettingsError
from .layout import encode_name  # the lake paths' reversible encoding, for the default PIPELINE_NAME

# host.json ``functionTimeout``: the host stops a run after this long (a unit test keeps them equal).
FUNCTION_TIMEOUT_SECONDS = 600
# Left of the function timeout after the budget, for the final write and commit of a run.
FINAL_COMMIT_MARGIN_SECONDS = 60
MAX_DRAIN_BUDGET_SECONDS = FUNCTION_TIMEOUT_SECONDS - FINAL_COMMIT_MARGIN_SECONDS

# How a PIPELINES entry treats a setting (``Setting.entry``).
APP_WIDE = ""  # the app's, shared by every pipeline
OVERRIDE = "override"  # an entry may set its own value
SCOPE = "scope"  # an entry states it; left empty at the top level when PIPELINES is set


@dataclass(frozen=True)
class Setting:
    """One setting as the app reads it; see :func:`setting`."""

    name: str
    default: str | None
    doc: str
    parse: Callable[[str], Any]
    entry: str = APP_WIDE
    identity: bool = False
    secret: bool = False


def setting(name: str, default: str | None, doc: str, parse: Callable[[str], Any] | None = None, *,
            entry: str = APP_WIDE, identity: bool = False, secret: bool = False) -> Any:
    """A field of ``Settings`` read from the setting ``name`` (``default`` when unset or blank)."""
    spec = Setting(name, default, doc, parse or _text, entry, identity, secret)
    return dataclasses.field(metadata={"setting": spec})


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


# -- parsers: each takes the stripped text (the default when unset) and raises ValueError ----------

def _text(value: str) -> str:
    return value


def _mongo_uri(value: str) -> str:
    if not value:
        raise ValueError("required (a mongodb:// or mongodb+srv:// connection string)")
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("must start with mongodb:// or mongodb+srv:// (value not shown)")
    return value


def _mongo_name(forbidden: str) -> Callable[[str], str | None]:
    def parse(value: str) -> str | None:
        if value and ("\x00" in value or any(c in value for c in forbidden)):
            raise ValueError(f"{value!r} is not a valid MongoDB name")
        return value or None

    return parse


def _stages(value: str) -> tuple[dict, ...]:
    try:
        stages = json_util.loads(value)
    except Exception as exc:  # json.JSONDecodeError, bson errors
        raise ValueError(f"not valid JSON ({exc.__class__.__name__}): expected a JSON array of stages") from None
    if not isinstance(stages, list) or not all(isinstance(s, dict) and len(s) == 1 for s in stages):
        raise ValueError("expected a JSON array of stages, each an object with one key such as $match")
    for stage in stages:
        (name,) = stage
        if not name.startswith("$"):
            raise ValueError(f"stage {name!r} does not start with $")
    return tuple(stages)


def _one_of(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return parse


def _before_change(value: str) -> str | None:
    value = _one_of("off", "whenAvailable", "required")(value)
    return None if value == "off" else value


def _http_url(example: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL (e.g. {example})")
        return value.rstrip("/")

    return parse


def _lake_url(value: str) -> str:
    if "?" in value:
        raise ValueError("put the SAS token in ADLS_SAS, not in the URL")
    return _http_url("https://ACCOUNT.dfs.core.windows.net")(value)


def _filesystem_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", value):
        raise ValueError(f"{value!r} is not a valid file system name (3-63 lowercase letters, digits, hyphens)")
    return value


def _table_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", value):
        raise ValueError(f"{value!r} is not a valid table name (3-63 letters and digits, starting with a letter)")
    return value


def _pipeline_name(value: str) -> str:
    if len(value) > 200 or re.search(r"[/\\#?\x00-\x1f\x7f]", value):
        raise ValueError("at most 200 characters, none of / \\ # ? or control characters")
    return value


def _schedule(value: str) -> str:
    """Six-field NCRONTAB, or a TimeSpan ``[d.]hh:mm:ss`` (the host accepts one on Premium and
    Dedicated plans) of more than zero and at most one day."""
    timespan = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})", value)
    if timespan:
        days, hours, minutes, seconds = (int(g or 0) for g in timespan.groups())
        total = days * 86400 + hours * 3600 + minutes * 60 + seconds
        if hours > 23 or minutes > 59 or seconds > 59 or not 0 < total <= 86400:
            raise ValueError(f"{value!r}: a TimeSpan schedule must be hh:mm:ss, more than zero and at most "
                             "1.00:00:00 (one day)")
        return value
    if len(value.split()) != 6:
        raise ValueError(f"{value!r} needs six fields: second minute hour day month day-of-week "
                         "(or a TimeSpan such as 00:01:00)")
    try:
        croniter(value, second_at_beginning=True)
    except Exception as exc:
        raise ValueError(f"{value!r} is not a valid NCRONTAB expression ({exc})") from None
    return value


def _number(low: float, high: float, why: str = "") -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if not low <= number <= high:
            raise ValueError(f"{value!r} must be between {low:g} and {high:g}{why}")
        return number

    return parse


def _start_at(value: str) -> datetime | None:
    if value.lower() == "now":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is neither 'now' nor an ISO-8601 time such as 2026-01-31T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


def _roll_window(value: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([smhd])", value.lower())
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 5m, 15m, 1h or 1d")
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 60 or 86400 % seconds:
        raise ValueError(f"{value!r} must be at least a minute and divide a day (5m, 15m, 1h, 1d ...)")
    return seconds


def _grace(value: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([smhd])", value.lower())
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 0s, 30m, 1h or 1d")
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds > 7 * 86400:
        raise ValueError(f"{value!r} is longer than 7d")
    return seconds


def _size(value: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", value)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size such as 134217728, 128MiB or 64MB")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size < 1024:
        raise ValueError(f"{value!r} is smaller than 1024 bytes")
    return size


@dataclass(frozen=True)
class Settings:
    """One pipeline's settings, each field declared once with :func:`setting`."""

    mongo_uri: Secret = setting(
        "MONGO_URI", None, "MongoDB connection string (required). Keep it in Key Vault. Identity: its hosts "
        "and replicaSet, never the user or password.", _mongo_uri, identity=True, secret=True)
    mongo_db: str | None = setting(
        "MONGO_DB", "", "Database to watch; empty with MONGO_COLL empty: the whole deployment.",
        _mongo_name('/\\. "$'), entry=SCOPE, identity=True)
    mongo_coll: str | None = setting(
        "MONGO_COLL", "", "Collection to watch (needs MONGO_DB).", _mongo_name(""), entry=SCOPE, identity=True)
    stages: tuple[dict, ...] = setting(
        "MONGO_PIPELINE", "[]", "JSON array of extra change-stream stages, e.g. a $match.", _stages,
        entry=SCOPE, identity=True)
    full_document: str = setting(
        "MONGO_FULL_DOC", "updateLookup", "fullDocument: default, updateLookup, whenAvailable, required.",
        _one_of("default", "updateLookup", "whenAvailable", "required"), entry=OVERRIDE, identity=True)
    full_document_before_change: str | None = setting(
        "MONGO_FULL_DOC_BEFORE_CHANGE", "whenAvailable", "fullDocumentBeforeChange: off, whenAvailable, required.",
        _before_change, entry=OVERRIDE, identity=True)
    adls_account_url: str = setting(
        "ADLS_ACCOUNT_URL", None, "Lake endpoint, e.g. https://ACCOUNT.dfs.core.windows.net (required unless "
        "ADLS_CONNECTION_STRING is set).", _lake_url, identity=True)
    adls_filesystem: str = setting(
        "ADLS_FILESYSTEM", "bronze", "Lake file system (container); created if missing.", _filesystem_name,
        entry=OVERRIDE, identity=True)
    adls_sas: Secret = setting(
        "ADLS_SAS", "", "SAS token for the lake (one of the three lake credentials, or none for Entra ID).",
        lambda value: value.lstrip("?"), secret=True)
    adls_shared_key: Secret = setting("ADLS_SHARED_KEY", "", "Account key for the lake.", secret=True)
    adls_connection_string: Secret = setting(
        "ADLS_CONNECTION_STRING", "", "Connection string for the lake account.", secret=True)
    checkpoint_table: str = setting(
        "CHECKPOINT_TABLE", "changestreamcheckpoints", "Table holding positions, file states and leases.",
        _table_name)
    checkpoint_connection_string: Secret = setting(
        "CHECKPOINT_CONNECTION_STRING", "", "Connection string of the checkpoint table's account "
        "(default: AzureWebJobsStorage when that is a connection string).", secret=True)
    checkpoint_account_url: str = setting(
        "CHECKPOINT_ACCOUNT_URL", "", "Table endpoint, used with Entra ID (DefaultAzureCredential).",
        _http_url("https://ACCOUNT.table.core.windows.net"))
    pipeline_name: str = setting(
        "PIPELINE_NAME", "", "Name of this stream's checkpoint; default derived from the scope.", _pipeline_name,
        entry=SCOPE)
    drain_schedule: str = setting(
        "DRAIN_SCHEDULE", "0 */1 * * * *", "Timer schedule: six-field NCRONTAB, or a TimeSpan hh:mm:ss "
        "(Premium and Dedicated plans) of at most one day.", _schedule)
    drain_budget_seconds: float = setting(
        "DRAIN_BUDGET_SECONDS", "45", f"Time one run drains for, writing and committing included; at most "
        f"{MAX_DRAIN_BUDGET_SECONDS} (host.json functionTimeout minus {FINAL_COMMIT_MARGIN_SECONDS} s).",
        _number(5, MAX_DRAIN_BUDGET_SECONDS, f" (host.json functionTimeout of {FUNCTION_TIMEOUT_SECONDS} s "
                f"minus {FINAL_COMMIT_MARGIN_SECONDS} s for the final commit)"), entry=OVERRIDE)
    start_at: datetime | None = setting(
        "START_AT", "now", "Where a pipeline without checkpoint starts: now, or an ISO-8601 time.", _start_at,
        entry=OVERRIDE)
    json_mode: str = setting(
        "JSON_MODE", "relaxed", "Extended JSON mode of the lines: relaxed or canonical (not identity: "
        "may change between runs).", _one_of("relaxed", "canonical"), entry=OVERRIDE)
    roll_window_seconds: int = setting(
        "ROLL_WINDOW", "1h", "Time window of one file, dividing a day: 5m, 15m, 1h, 1d ... (not identity).",
        _roll_window, entry=OVERRIDE)
    roll_max_bytes: int = setting(
        "ROLL_MAX_BYTES", "128MiB", "A new part starts when a file would grow past this size (not identity).",
        _size, entry=OVERRIDE)
    max_buffer_bytes: int = setting(
        "MAX_BUFFER_BYTES", "64MiB", "Bounds the events a run holds: read ahead (an eighth), the batch being filled "
        "and the one being written (not identity).",
        _size, entry=OVERRIDE)
    file_layout: str = setting(
        "FILE_LAYOUT", "rolling", "rolling: JSON Lines files per folder and roll window; per_event: one file per "
        "change event (not identity: a switch applies from the next _seq on).", _one_of("rolling", "per_event"),
        entry=OVERRIDE)
    per_event_concurrency: int = setting(
        "PER_EVENT_CONCURRENCY", "32", "Files uploaded in parallel with FILE_LAYOUT=per_event (1 to 256).",
        lambda value: int(_number(1, 256)(value)), entry=OVERRIDE)
    on_history_lost: str = setting(
        "ON_HISTORY_LOST", "fail", "When the stored position left the oplog: fail, or restart (with a gap "
        "record).", _one_of("fail", "restart"), entry=OVERRIDE)
    snapshot: str = setting(
        "SNAPSHOT", "off", "Copy the documents that already exist: off; initial (a pipeline without a checkpoint "
        "copies its scope's collections first); when_needed (also after lost history: restart with a gap record "
        "and copy every collection again). Needs MONGO_FULL_DOC other than default.",
        _one_of("off", "initial", "when_needed"), entry=OVERRIDE)
    snapshot_chunk_docs: int = setting(
        "SNAPSHOT_CHUNK_DOCS", "5000", "Documents per snapshot chunk (a chunk also stops at 1/16 of "
        "MAX_BUFFER_BYTES, and at 500 with FILE_LAYOUT=per_event).", lambda value: int(_number(1, 1_000_000)(value)), entry=OVERRIDE)
    late_event_grace_seconds: int = setting(
        "LATE_EVENT_GRACE", "1h", "A day's _SUCCESS markers are written once the committed position is this "
        "far past the end of the UTC day (0s to 7d).", _grace, entry=OVERRIDE)
    status_max_position_age_seconds: int = setting(
        "STATUS_MAX_POSITION_AGE_SECONDS", "600", "status answers 503 when the stored position is older.",
        lambda value: int(_number(1, 10**8)(value)), entry=OVERRIDE)

    @property
    def scope(self) -> Scope:
        return Scope(self.mongo_db, self.mongo_coll)

    @property
    def mongo_pipeline(self) -> tuple[dict, ...]:
        """The aggregation stages of ``MONGO_PIPELINE``; prefer ``stages``."""
        return self.stages

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text that came from a driver or an SDK."""
        values = [getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["setting"].secret]
        password = urllib.parse.urlsplit(str(self.mongo_uri)).password if self.mongo_uri else None
        if password:  # as written in the URI (percent-encoded), decoded, and re-encoded
            decoded = urllib.parse.unquote(password)
            values += [password, decoded, urllib.parse.quote(decoded, safe="")]
        for conn in (self.adls_connection_string, self.checkpoint_connection_string):
            values += re.findall(r"(?:AccountKey|SharedAccessSignature)=([^;]+)", str(conn))
        return tuple(dict.fromkeys(str(v) for v in values if v))

    @property
    def identity(self) -> dict[str, Any]:
        """What decides which events arrive and which lake they go to, keyed by setting name; no secret.

        Stored with the checkpoint: a checkpoint written under another identity describes another
        stream (its sequence numbers and resume token do not apply). The settings marked
        ``identity=True`` make it up; how a setting reads as identity is in ``_IDENTITY_VALUES``.
        """
        out = {}
        for f in dataclasses.fields(self):
            spec: Setting = f.metadata["setting"]
            if spec.identity:
                value = getattr(self, f.name)
                out[spec.name] = _IDENTITY_VALUES[spec.name](self) if spec.name in _IDENTITY_VALUES else value
        return out

    @property
    def pipeline_identity(self) -> str:
        """32 hex characters: sha256 of the canonical JSON of :attr:`identity`."""
        return hashlib.sha256(_canonical_json(self.identity).encode()).hexdigest()[:32]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Every setting from ``env``; ``SettingsError`` lists every problem, each naming its setting."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            spec: Setting = f.metadata["setting"]
            try:
                value = spec.parse(raw_value(env, spec))
            except ValueError as exc:
                problems.append(f"{spec.name}: {exc}")
                value = None
            values[f.name] = Secret(value or "") if spec.secret else value
        _check_across(values, env, problems)
        if problems:
            error = SettingsError("invalid settings:\n  " + "\n  ".join(problems))
            error.problems = tuple(problems)  # one "NAME: message" each (shared.pipelines names the entry)
            raise error
        return cls(**values)


PIPELINES = Setting(
    "PIPELINES", "", "JSON array of several pipelines, each an object with its own PIPELINE_NAME (required, "
    "unique) and scope (MONGO_DB, MONGO_COLL, MONGO_PIPELINE) plus optional per-stream overrides "
    "(ROLL_WINDOW ...); empty: one pipeline from the settings above.", _text)
# Every setting the app reads: the fields of one pipeline's Settings, then PIPELINES (read by
# shared.pipelines, which makes one Settings per entry).
SETTINGS: tuple[Setting, ...] = tuple(f.metadata["setting"] for f in dataclasses.fields(Settings)) + (PIPELINES,)


def raw_value(env: Mapping[str, str], spec: Setting) -> str:
    """The setting's text in ``env``, stripped; its default when unset or blank."""
    value = (env.get(spec.name) or "").strip()
    return value or spec.default or ""


def _check_across(values: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> None:
    """The rules that span several settings; fills in the defaults that depend on other settings."""
    if values["mongo_coll"] and not values["mongo_db"]:
        problems.append("MONGO_COLL: needs MONGO_DB (a collection is watched within a database)")
        values["mongo_coll"] = None
    if not values["adls_account_url"] and not values["adls_connection_string"]:
        if not any(p.startswith("ADLS_ACCOUNT_URL:") for p in problems):
            problems.append("ADLS_ACCOUNT_URL: required (e.g. https://ACCOUNT.dfs.core.windows.net)")
    lake_credentials = [n for n in ("ADLS_SAS", "ADLS_SHARED_KEY", "ADLS_CONNECTION_STRING") if env.get(n, "").strip()]
    if len(lake_credentials) > 1:
        problems.append(f"{', '.join(lake_credentials)}: set at most one lake credential")
    if not values["checkpoint_connection_string"]:
        webjobs = (env.get("AzureWebJobsStorage") or "").strip()
        if webjobs.replace(" ", "").rstrip(";") == "UseDevelopmentStorage=true":
            webjobs = _DEV_STORAGE
        values["checkpoint_connection_string"] = Secret(webjobs)
    if not values["checkpoint_connection_string"] and not values["checkpoint_account_url"]:
        if not any(p.startswith("CHECKPOINT_ACCOUNT_URL:") for p in problems):
            problems.append("CHECKPOINT_CONNECTION_STRING: set it, or CHECKPOINT_ACCOUNT_URL (Entra ID), "
                            "or AzureWebJobsStorage as a connection string")
    if values.get("snapshot") not in (None, "off") and values.get("full_document") == "default":
        problems.append("SNAPSHOT: needs MONGO_FULL_DOC updateLookup, whenAvailable or required (an update must "
                        "carry the whole document to take the place of a snapshot row it makes stale)")
    if not values["pipeline_name"]:
        values["pipeline_name"] = default_pipeline_name(Scope(values["mongo_db"], values["mongo_coll"]))


_DEV_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def default_pipeline_name(scope: Scope) -> str:
    """``deployment``, ``db-<db>`` or ``coll-<db>.<coll>``, made safe for a Table partition key."""
    if scope.kind == "collection":
        return f"coll-{encode_name(scope.db)}.{encode_name(scope.coll)}"[:200]
    if scope.kind == "database":
        return f"db-{encode_name(scope.db)}"[:200]
    return "deployment"


# -- identity ------------------------------------------------------------------------------------

def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _mongo_hosts(settings: Settings) -> dict[str, Any]:
    """The deployment a MONGO_URI names: its hosts (lowercased, sorted, default port made explicit)
    or its SRV host, and its replicaSet option; never the user or password."""
    parts = urllib.parse.urlsplit(str(settings.mongo_uri))
    hosts = parts.netloc.rpartition("@")[2]
    out: dict[str, Any] = {}
    if parts.scheme == "mongodb+srv":
        out["srv"] = urllib.parse.unquote(hosts).lower()
    else:
        names = []
        for host in filter(None, (urllib.parse.unquote(h).lower() for h in hosts.split(","))):
            has_port = re.search(r":\d+$", host) and not host.endswith("]")
            names.append(host if has_port or host.endswith(".sock") else f"{host}:27017")
        out["hosts"] = sorted(names)
    options = {k.lower(): v for k, v in urllib.parse.parse_qsl(parts.query)}
    if "replicaset" in options:
        out["replicaSet"] = options["replicaset"]
    return out


def _lake_host(settings: Settings) -> str:
    """The lake account: the endpoint's host lowercased (with a non-default port, and the account
    name of a path-style emulator URL), from ADLS_ACCOUNT_URL or else the connection string."""
    url = settings.adls_account_url
    if not url and settings.adls_connection_string:
        fields = dict(part.split("=", 1) for part in str(settings.adls_connection_string).split(";") if "=" in part)
        fields = {k.lower(): v for k, v in fields.items()}
        url = fields.get("dfsendpoint") or fields.get("blobendpoint") or ""
        if not url and fields.get("accountname"):
            suffix = fields.get("endpointsuffix", "core.windows.net")
            return f"{fields['accountname']}.dfs.{suffix}".lower()
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    host = host.replace(".blob.", ".dfs.")  # one account, whichever endpoint names it
    if parts.port:
        host += f":{parts.port}"
    path = parts.path.strip("/")
    return f"{host}/{path}" if path else host


_IDENTITY_VALUES: dict[str, Callable[[Settings], Any]] = {
    "MONGO_URI": _mongo_hosts,
    "MONGO_PIPELINE": lambda s: json_util.dumps(list(s.stages), json_options=CANONICAL_JSON_OPTIONS,
                                                separators=(",", ":")),
    "ADLS_ACCOUNT_URL": _lake_host,
}


def identity_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One readable line per identity setting that differs between a checkpoint's stored identity and
    the current one, e.g. ``MONGO_FULL_DOC: 'default' when the checkpoint was written, 'updateLookup'
    now``. The MongoDB hosts are never printed (a URI could carry a secret)."""
    lines = []
    for name in dict.fromkeys([*current, *stored]):
        if stored.get(name) == current.get(name):
            continue
        if name == "MONGO_URI":
            lines.append("MONGO_URI: the MongoDB hosts changed")
            continue
        before = repr(stored[name]) if name in stored else "not recorded"
        now = repr(current[name]) if name in current else "not set"
        lines.append(f"{name}: {before} when the checkpoint was written, {now} now")
    return lines
