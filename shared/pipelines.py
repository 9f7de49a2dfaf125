"""Several pipelines in one app: the ``PIPELINES`` setting, and one run of all of them.

``PIPELINES`` is a JSON array of objects. Each entry is one change stream with its own checkpoint
partition, lease and files; it names itself with ``PIPELINE_NAME`` (required, unique) and states its
scope (``MONGO_DB``, ``MONGO_COLL``, and its aggregation stages in ``MONGO_PIPELINE``). Any of
``ENTRY_OVERRIDES`` may be set per entry; every other setting (connection, credentials, table,
schedule) is the app's, shared by all::

    [{"PIPELINE_NAME": "orders", "MONGO_DB": "shop", "MONGO_COLL": "orders"},
     {"PIPELINE_NAME": "audit", "MONGO_DB": "audit", "ROLL_WINDOW": "1d"}]

Empty (the default): one pipeline from the top-level settings, as without this module.

A run drains every pipeline at once, one thread each, each with its own budget. Pipelines are
isolated: one failing (bad checkpoint row, lost history, an unreachable collection) does not stop
the others; the caller learns which failed from the reports.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Callable, Mapping, Sequence

from . import invocation, telemetry
from .drain import RunReport, run_drain
from .errors import SettingsError, redact
from .settings import OVERRIDE, SCOPE, SETTINGS, Settings

log = logging.getLogger(__name__)

# What an entry states (its scope and name) and what else it may set, from the declarations in
# shared.settings; every other setting (connection, credentials, table, schedule) is the app's.
SCOPE_KEYS = tuple(s.name for s in SETTINGS if s.entry == SCOPE)
ENTRY_OVERRIDES = SCOPE_KEYS + tuple(s.name for s in SETTINGS if s.entry == OVERRIDE)

RunFn = Callable[..., RunReport]


def load_pipelines(env: Mapping[str, str]) -> tuple[Settings, ...]:
    """Every configured pipeline's settings, validated; ``SettingsError`` names each problem
    (``PIPELINES[1].MONGO_COLL: ...`` for an entry's own settings)."""
    raw = (env.get("PIPELINES") or "").strip()
    if not raw:
        return (Settings.from_env(env),)
    problems: list[str] = []
    entries = _entries(raw, problems)
    base = {k: v for k, v in env.items() if k not in SCOPE_KEYS and k != "PIPELINES"}
    for key in SCOPE_KEYS:
        value = (env.get(key) or "").strip()
        if value and not (key == "MONGO_PIPELINE" and value == "[]"):
            problems.append(f"{key}: leave it empty when PIPELINES is set (each entry states its own scope)")
    try:
        Settings.from_env(base)  # the shared settings, reported once rather than per entry
    except SettingsError as exc:
        problems.extend(_problems(exc))
    pipelines: list[Settings] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"PIPELINES[{index}]"
        name = entry.get("PIPELINE_NAME", "")
        if not name:
            problems.append(f"{where}.PIPELINE_NAME: required (each pipeline has its own checkpoint)")
        elif name in names:
            problems.append(f"{where}.PIPELINE_NAME: {name!r} is also the name of PIPELINES[{names[name]}]")
        else:
            names[name] = index
        try:
            pipelines.append(Settings.from_env({**base, **entry}))
        except SettingsError as exc:
            own = [p for p in _problems(exc) if p.split(":", 1)[0] in entry or p.split(":", 1)[0] in SCOPE_KEYS]
            problems.extend(f"{where}.{p}" for p in own)
    if problems:
        error = SettingsError("invalid settings:\n  " + "\n  ".join(dict.fromkeys(problems)))
        error.problems = tuple(dict.fromkeys(problems))
        raise error
    return tuple(pipelines)


def _entries(raw: str, problems: list[str]) -> list[dict[str, str]]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(f"PIPELINES: not valid JSON ({exc.msg} at position {exc.pos}); expected a JSON array of objects")
        return []
    if not isinstance(value, list) or not value:
        problems.append("PIPELINES: expected a non-empty JSON array of objects (or nothing, for one pipeline)")
        return []
    entries = []
    for index, item in enumerate(value):
        where = f"PIPELINES[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object such as {{\"PIPELINE_NAME\": \"orders\", \"MONGO_DB\": \"shop\"}}")
            continue
        entry: dict[str, str] = {}
        for key, setting in item.items():
            if key not in ENTRY_OVERRIDES:
                problems.append(f"{where}.{key}: not a per-pipeline setting (allowed: {', '.join(ENTRY_OVERRIDES)})")
            elif key == "MONGO_PIPELINE" and isinstance(setting, list):
                entry[key] = json.dumps(setting)
            elif isinstance(setting, bool) or not isinstance(setting, (str, int, float)):
                problems.append(f"{where}.{key}: expected a string")
            else:
                entry[key] = str(setting).strip()
        entries.append(entry)
    return entries


def _problems(exc: SettingsError) -> list[str]:
    return list(exc.problems)  # set by Settings.from_env: one "NAME: message" each


def run_pipelines(
    pipelines: Sequence[Settings],
    *,
    env: Mapping[str, str] | None = None,
    run: RunFn = run_drain,
    on_report: Callable[[Settings, RunReport], None] | None = None,
) -> list[RunReport]:
    """Drain every pipeline concurrently (one thread each) and return their reports in order.

    ``run`` never raising is the contract of ``run_drain``; anything that escapes anyway becomes a
    failed report of that pipeline, so the others are unaffected. ``on_report`` is called in each
    pipeline's thread as its run ends (telemetry). Each thread logs as part of the invocation bound
    by the caller (``invocation.bind``), so the host keeps what the runs log."""

    def one(settings: Settings) -> RunReport:
        try:
            report = run(settings, env=env) if env is not None else run(settings)
        except Exception as exc:  # not expected: run_drain reports its failures
            report = RunReport(settings.pipeline_name, uuid.uuid4().hex[:12],
                               time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            report.error = {"kind": "transient",
                            "message": redact(f"{exc.__class__.__name__}: {exc}", settings.secrets)[:2000]}
            log.exception("pipeline %s: the run raised", settings.pipeline_name)
        if on_report is not None:
            try:
                on_report(settings, report)
            except Exception:  # telemetry must never fail a run
                log.exception("pipeline %s: recording the run failed", settings.pipeline_name)
        return report

    if len(pipelines) == 1:
        return [one(pipelines[0])]
    with invocation.Executor(max_workers=len(pipelines), thread_name_prefix="pipeline") as pool:
        return list(pool.map(one, pipelines))


def failure_message(reports: Sequence[RunReport]) -> str | None:
    """None when no run failed; else one line naming each failed pipeline with its error."""
    failed = [r for r in reports if r.outcome == "failed"]
    if not failed:
        return None
    details = [{"pipeline": r.pipeline, **(r.error or {})} for r in failed]
    names = ", ".join(r.pipeline for r in failed)
    return f"drain failed for {len(failed)} of {len(reports)} pipelines ({names}): {json.dumps(details)}"


def drain_all(env: Mapping[str, str]) -> list[RunReport]:
    """One run of every configured pipeline, with telemetry when it is configured."""
    pipelines = load_pipelines(env)
    recorder = telemetry.configure(env)
    return run_pipelines(pipelines, env=env, on_report=recorder.record_run if recorder else None)
