"""azure-functions-doctor (the v2 Python app checker) on this app, as Azure will run it: Premium
plan, Python 3.11, remote build. No check may fail, and a warning is accepted only where it does
not apply, for the reason given here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCTOR = Path(sys.executable).parent / "azure-functions-doctor"

NOT_APPLICABLE = {
    "check_native_dependency_risk": "native wheels (orjson, cryptography ...) are installed by the remote "
                                    "build on the platform's own Linux image, which is what the rule asks for",
    "check_app_insights": "APPLICATIONINSIGHTS_CONNECTION_STRING is an app setting of the deployed app "
                          "(infra/modules/functionapp.bicep, tests/infra); locally the app runs without it",
    "check_local_settings": "local.settings.json is git-ignored: `func start` users copy "
                            "local.settings.json.example (README); the tests set their own settings",
    "check_func_cli": "Core Tools run the host on a laptop (`func start`); tests and `azd deploy` do not need them",
    "check_func_core_tools_version": "the same: Core Tools are not installed where the tests run",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("doctor") / "doctor.json"
    env = {**os.environ}
    if sys.prefix != sys.base_prefix:  # the tests run from .venv, as `func start` must
        env["VIRTUAL_ENV"] = sys.prefix
    proc = subprocess.run(
        [str(DOCTOR), "doctor", "--path", str(ROOT), "--profile", "full", "--hosting-plan", "premium",
         "--target-python", "3.11", "--deployment-mode", "remote-build", "--format", "json", "--output", str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert out.exists(), f"doctor wrote no report (exit {proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["metadata"]["programming_model"] == "v2"
    return [item for section in report["results"] for item in section["items"]]


def test_no_check_fails(results):
    failed = [(i["rule_id"], i["value"]) for i in results if i["status"] == "fail"]
    assert not failed


def test_every_warning_is_one_that_does_not_apply(results):
    warned = {i["rule_id"]: i["value"] for i in results if i["status"] == "warn"}
    applicable = {rule: value for rule, value in warned.items() if rule not in NOT_APPLICABLE}
    assert not applicable


def test_the_package_and_the_app_checks_pass(results):
    status = {i["rule_id"]: i["status"] for i in results}
    for rule in ("check_programming_model_v2", "check_funcignore", "check_unused_files", "check_venv"):
        assert status.get(rule) == "pass", (rule, status.get(rule))
