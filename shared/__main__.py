"""Command line: ``python -m shared drain`` runs one drain of every configured pipeline (``PIPELINES``,
or the single one of the top-level settings); ``python -m shared status`` shows them, as the
``status`` function does. Both read the same settings as the Functions app, from the environment
(and, for local use, from ``--env-file``, e.g. ``.local/stack.env``).

Exit status: 0 ok; 1 a run failed (transient); 2 invalid settings or a terminal failure;
3 ``status`` found a pipeline unhealthy."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .envfile import read_env
from .errors import SettingsError
from .pipelines import drain_all
from .status import status_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    parser.add_argument("command", choices=("drain", "status"))
    parser.add_argument("--env-file", help="KEY=value file read before the environment (which wins)")
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
    code, body = status_report(env)
    print(json.dumps(body, indent=2, default=str))
    if code == 500:
        return 2
    return 0 if body["healthy"] else 3


if __name__ == "__main__":
    sys.exit(main())
