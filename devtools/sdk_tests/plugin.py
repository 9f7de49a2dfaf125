"""pytest plugin for the Azure SDK's DataLake tests against the emulator (loaded by pytest.ini).

* async test functions run in a fresh event loop (the SDK repository uses pytest-asyncio's auto mode);
* ``playback_test_only`` tests are skipped (there are no recordings here);
* the tests in ``known_failures.KNOWN_FAILURES`` are marked xfail with their reason;
* a summary of pass rates, sync and async, at the end.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
from collections import Counter

import pytest

from .known_failures import KNOWN_FAILURES


def _reason(nodeid: str) -> str | None:
    for pattern, reason in KNOWN_FAILURES.items():
        if fnmatch.fnmatchcase(nodeid, pattern):
            return reason
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("playback_test_only"):
            item.add_marker(pytest.mark.skip(reason="playback_test_only: needs the SDK repository's recordings"))
            continue
        reason = _reason(item.nodeid)
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**args))
    return True


_outcomes: dict[str, Counter] = {"sync": Counter(), "async": Counter()}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    kind = "async" if report.nodeid.split("::")[0].endswith("_async.py") else "sync"
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            outcome = "xpassed" if report.passed else "xfailed"
        else:
            outcome = report.outcome
        if report.when == "setup" and outcome == "failed":
            outcome = "error"
        _outcomes[kind][outcome] += 1


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    terminalreporter.section("azure-storage-file-datalake tests against the emulator")
    for kind, counts in _outcomes.items():
        if not counts:
            continue
        ran = sum(counts.values()) - counts["skipped"]
        passed = counts["passed"] + counts["xpassed"]
        rate = f"{100 * passed / ran:.1f}%" if ran else "n/a"
        terminalreporter.write_line(
            f"{kind:5}: {passed}/{ran} passed ({rate}); known failures {counts['xfailed']}, "
            f"unexpected failures {counts['failed'] + counts['error']}, XPASS {counts['xpassed']}, "
            f"skipped {counts['skipped']}")
