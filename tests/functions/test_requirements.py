"""Locked dependencies: requirements.txt (what the remote build installs) is the exact resolution of
requirements.in (what the app declares), the tests run those very versions, and every distribution
the app imports is declared."""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .test_package import ROOT, package_files

SOURCE = ROOT / "requirements.in"
LOCK = ROOT / "requirements.txt"


# Distributions built from this repository (``./path`` lines, kept as they are in the lock).
LOCAL = {"./native/extjson": "bronze-extjson"}


def declared() -> dict[str, Requirement]:
    reqs = {}
    for line in SOURCE.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("./"):
            assert line in LOCAL, f"{line}: a local distribution this test does not know"
            continue
        if line:
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs


def test_local_distributions_are_kept_in_the_lock():
    lines = [line.strip() for line in LOCK.read_text(encoding="utf-8").splitlines()]
    assert all(path in lines for path in LOCAL)


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or line.strip() in LOCAL:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==" and "*" not in spec.version and not req.marker, f"not an exact pin: {line}"
        name = canonicalize_name(req.name)
        assert name not in found, f"{name} pinned twice"
        found[name] = spec.version
    return found


def test_the_lock_was_made_from_this_requirements_in():
    digest = hashlib.sha256(SOURCE.read_text(encoding="utf-8").encode("utf-8")).hexdigest()
    assert f"# requirements.in sha256: {digest}" in LOCK.read_text(encoding="utf-8"), (
        "requirements.in changed since requirements.txt was generated: run `make lock`")


def test_every_declared_range_is_met_by_its_pin():
    locked = pins()
    for name, req in declared().items():
        assert name in locked, f"{name} declared but not locked: run `make lock`"
        assert req.specifier.contains(locked[name], prereleases=True), f"{name}=={locked[name]} outside {req}"


def test_no_pre_release_except_of_distributions_that_have_none_final():
    allowed = [line.split(":", 1)[1].strip() for line in SOURCE.read_text(encoding="utf-8").splitlines()
               if line.startswith("# prerelease-only:")]
    refused = [f"{n}=={v}" for n, v in pins().items()
               if Version(v).is_prerelease and not any(fnmatch.fnmatch(n, p) for p in allowed)]
    assert not refused


def test_the_tests_run_the_locked_versions():
    wrong = {}
    for name, version in pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or Version(installed) != Version(version):
            wrong[name] = (version, installed)
    assert not wrong, f"locked vs installed: {wrong}; run `make venv`"


def test_no_worker_or_test_tool_is_deployed():
    assert not set(pins()) & {"azure-functions-worker", "secantusdb", "pytest", "azure-functions-doctor"}


def _distribution_of(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return None
    origin = Path(spec.origin).resolve()
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            if Path(dist.locate_file(file)).resolve() == origin:
                return canonicalize_name(dist.metadata["Name"])
    return None


def _imports() -> set[str]:
    """Third-party modules the packaged code imports (``a.b`` for ``from a import b``, which
    resolves a name inside a namespace package such as ``opentelemetry``)."""
    found = set()
    for rel in package_files(ROOT):
        if not rel.endswith(".py") or rel.startswith("native/"):  # native/: build scripts, not the app
            continue
        for node in ast.walk(ast.parse((ROOT / rel).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                spec = importlib.util.find_spec(node.module)
                namespace = spec is not None and spec.origin in (None, "namespace")
                found.update(f"{node.module}.{a.name}" for a in node.names) if namespace else found.add(node.module)
    top_stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return {m for m in found if m.split(".")[0] not in top_stdlib and m.split(".")[0] != "shared"}


@pytest.mark.parametrize("module", sorted(_imports()))
def test_every_imported_distribution_is_declared(module):
    dist = _distribution_of(module)
    assert dist is not None, f"{module}: no installed distribution provides it"
    assert dist in declared() or dist in LOCAL.values(), (
        f"{module} comes from {dist}, which requirements.in does not declare")
