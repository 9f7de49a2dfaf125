"""Command line: ``python -m shared drain`` runs one drain; ``python -m shared status`` shows the
pipeline. Both read the same settings as the Functions app, from the environment (and, for local
use, from ``--env-file``, e.g. ``.local/stack.env``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .errors import SettingsError, TerminalError
from .settings import Settings


def load_env_file(path: str) -> dict[str, str]:
    values = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    parser.add_argument("command", choices=("drain", "status"))
    parser.add_argument("--env-file", help="KEY=value file read before the environment (which wins)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    env = {**(load_env_file(args.env_file) if args.env_file else {}), **os.environ}
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.command == "drain":
        from .drain import run_drain

        report = run_drain(settings, env=env)
        print(json.dumps(report.as_dict(), default=str))
        if report.outcome == "failed":
            return 2 if report.error and report.error.get("kind") == "terminal" else 1
        return 0
    from .status import pipeline_status

    try:
        status = pipeline_status(settings)
    except TerminalError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(json.dumps(status, indent=2, default=str))
    return 0 if status["healthy"] else 3


if __name__ == "__main__":
    sys.exit(main())
