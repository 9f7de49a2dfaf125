"""Command line: ``python -m shared drain`` runs one drain of every configured pipeline (``PIPELINES``,
or the single one of the top-level settings); ``python -m shared status`` shows them, as the
``status`` function does; ``python -m shared verify`` audits the lake against the manifests (see
``shared.verify``); ``python -m shared snapshot --pipeline P --collection db.coll`` asks the next run of
pipeline P to copy that collection again (a request stored in its checkpoint row, so a deployment in
Azure needs no shell: the same call works from any machine with the settings). All read the same
settings and credentials as the Functions app, from the environment (and, for local use, from
``--env-file``, e.g. ``.local/stack.env``).

Exit status: 0 ok; 1 a run failed (transient), or ``verify`` found a problem; 2 invalid settings or a
terminal failure; 3 ``status`` found a pipeline unhealthy (for ``snapshot``: the request could not be
stored yet)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from .envfile import read_env
from .errors import DrainError, SettingsError, kind_of, redact
from .pipelines import drain_all
from .status import status_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    parser.add_argument("command", choices=("drain", "status", "verify", "snapshot"))
    parser.add_argument("--env-file", help="KEY=value file read before the environment (which wins)")
    parser.add_argument("--pipeline", help="verify: only this PIPELINE_NAME (default: every configured pipeline); "
                        "snapshot: the pipeline's PIPELINE_NAME (default: the only one)")
    copy = parser.add_argument_group("snapshot")
    copy.add_argument("--collection", help="the collection to copy again, as db.coll")
    copy.add_argument("--wait", type=float, default=300.0,
                      help="seconds to wait for a running drain to release the pipeline")
    audit = parser.add_argument_group("verify")
    scope = audit.add_mutually_exclusive_group()
    scope.add_argument("--day", help="only the data of this UTC day, YYYY-MM-DD (every manifest is still read)")
    scope.add_argument("--since", help="only what follows this manifest (its file name) or this _seq")
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument("--workers", type=int, default=8, help="parallel reads (default 8)")
    audit.add_argument("--small-file-count", type=int, default=48,
                       help="flag partitions with at least this many files ... (default 48)")
    audit.add_argument("--small-file-bytes", type=int, default=1024 * 1024,
                       help="... whose median size is under this many bytes (default 1 MiB)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    env = {**(read_env(args.env_file) if args.env_file else {}), **os.environ}
    if args.command == "drain":
        try:
            reports = drain_all(env)
        except SettingsError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        for report in reports:
            print(json.dumps(report.as_dict(), default=str))
        failed = [r for r in reports if r.outcome == "failed"]
        if failed:
            return 2 if any((r.error or {}).get("kind") == "terminal" for r in failed) else 1
        return 0
    if args.command == "snapshot":
        return _request_snapshot(env, args)
    if args.command == "verify":
        from .verify import main as verify_main

        try:
            return verify_main(env, args.pipeline, args.day, args.since, args.json, args.workers,
                               args.small_file_count, args.small_file_bytes)
        except (SettingsError, DrainError) as exc:
            print(str(exc), file=sys.stderr)
            return 2
        except Exception as exc:  # the lake could not be read (credentials, network)
            print(f"verify: {exc.__class__.__name__}: {redact(str(exc), [])[:2000]}", file=sys.stderr)
            return 2
    code, body = status_report(env)
    print(json.dumps(body, indent=2, default=str))
    if code == 500:
        return 2
    return 0 if body["healthy"] else 3


def _request_snapshot(env, args) -> int:
    from .checkpoint import CheckpointStore
    from .pipelines import load_pipelines

    try:
        pipelines = load_pipelines(env)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    chosen = [p for p in pipelines if args.pipeline in (None, p.pipeline_name)]
    if len(chosen) != 1:
        print(f"--pipeline: one of {', '.join(p.pipeline_name for p in pipelines)}", file=sys.stderr)
        return 2
    settings = chosen[0]
    db, _, coll = (args.collection or "").partition(".")
    from .drain import _in_scope

    if not db or not coll or not _in_scope(settings.scope, db, coll):
        print(f"--collection: a collection db.coll within the pipeline's scope ({settings.scope.describe()})",
              file=sys.stderr)
        return 2
    if settings.full_document == "default":
        print("SNAPSHOT: needs MONGO_FULL_DOC updateLookup, whenAvailable or required", file=sys.stderr)
        return 2
    try:
        progress = CheckpointStore(settings).request_snapshot(f"{db}.{coll}", time.time, time.sleep, args.wait)
    except DrainError as exc:
        print(str(exc), file=sys.stderr)
        return 2 if kind_of(exc) == "terminal" else 3
    print(json.dumps({"pipeline": settings.pipeline_name, "requested": progress.requests}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
