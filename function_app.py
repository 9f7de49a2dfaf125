"""Azure Functions entry points (Python v2 model). Thin: build settings, call into ``shared``."""

from __future__ import annotations

import json
import logging
import os

import azure.functions as func

from shared.drain import run_drain
from shared.settings import Settings

app = func.FunctionApp()


@app.timer_trigger(arg_name="timer", schedule="%DRAIN_SCHEDULE%", run_on_startup=False, use_monitor=True)
def drain(timer: func.TimerRequest) -> None:
    """One drain per tick; a failed run raises so the host records the failure."""
    settings = Settings.from_env(os.environ)
    report = run_drain(settings)
    if timer.past_due:
        logging.info("drain ran past due")
    if report.outcome == "failed":
        raise RuntimeError(json.dumps(report.error))
