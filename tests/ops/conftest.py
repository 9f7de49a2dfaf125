"""Operations tests: the status function and command, Entra ID, several pipelines, telemetry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Settings a test sets for the function app; anything else of these in the outer environment is removed.
APP_PREFIXES = ("MONGO_", "ADLS_", "CHECKPOINT_", "PIPELINE", "DRAIN_", "STATUS_", "ROLL_", "START_AT",
                "APPLICATIONINSIGHTS_", "AzureWebJobsStorage")


@pytest.fixture
def ops_env(stack_env, fresh_filesystem, fresh_table_name, fresh_db_name) -> dict:
    """Settings of one collection-scope pipeline on the session stack: its own database, file
    system and checkpoint table."""
    return {**stack_env, "ADLS_FILESYSTEM": fresh_filesystem, "CHECKPOINT_TABLE": fresh_table_name,
            "MONGO_DB": fresh_db_name, "MONGO_COLL": "orders", "DRAIN_BUDGET_SECONDS": "20"}


@pytest.fixture
def app_env(monkeypatch):
    """``use(env)``: make ``env`` the process environment the function app reads (and nothing else
    of the app's settings)."""

    def use(env: dict) -> None:
        for key in list(os.environ):
            if key.startswith(APP_PREFIXES):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return use


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    """``python -m shared ARGS`` with exactly ``env`` as the app's settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(APP_PREFIXES)}
    return subprocess.run([sys.executable, "-m", "shared", *args], cwd=REPO, env={**clean, **env},
                          capture_output=True, text=True, timeout=300)


def call_status() -> tuple[int, dict, str]:
    """The status function called as the host would: (status code, parsed body, raw body)."""
    import azure.functions as func

    import function_app
    from devtools.functions_worker import invoke

    response = invoke(function_app.status, func.HttpRequest("GET", "/api/status", body=b""))
    assert response.mimetype == "application/json"
    text = response.get_body().decode()
    return response.status_code, json.loads(text), text
