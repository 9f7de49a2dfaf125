"""Azure Functions entry points (Python v2 model). Thin: each calls one function of ``shared``.

Both take ``context``: the worker keeps a log record only if the thread that logs it carries the
invocation id, so the invocation is bound here and carried into every thread the app starts
(``shared.invocation``)."""

from __future__ import annotations

import json
import logging
import os

import azure.functions as func

from shared import invocation
from shared.pipelines import drain_all, failure_message
from shared.status import status_report

app = func.FunctionApp()


@app.timer_trigger(arg_name="timer", schedule="%DRAIN_SCHEDULE%", run_on_startup=False, use_monitor=True)
def drain(timer: func.TimerRequest, context: func.Context) -> None:
    """One run of every configured pipeline per tick; raises after all finished if any failed, so
    the host records the failure."""
    with invocation.bind(context):
        reports = drain_all(os.environ)
    if timer.past_due:
        logging.info("drain ran past due")
    failed = failure_message(reports)
    if failed:
        raise RuntimeError(failed)


@app.route(route="status", auth_level=func.AuthLevel.FUNCTION, methods=["GET"])
def status(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Every pipeline's position age, last event time, lag, last run and error: 200 healthy, 503 not."""
    with invocation.bind(context):
        code, body = status_report(os.environ)
    return func.HttpResponse(json.dumps(body, default=str), status_code=code, mimetype="application/json")
