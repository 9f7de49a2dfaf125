"""The deployment package: built the way `func azure functionapp publish` builds it (docs/deploy.md),
it holds exactly what the app imports at run time, and stays small.

Core Tools zips every file under the app folder except the `.git` and `.vscode` folders, a few
named files (`.funcignore`, `.gitignore`, `local.settings.json` ...) and what `.funcignore` denies.
Its `.funcignore` parser is a port of codemix/gitignore-parser: each pattern, escaped, with `**` as
`(.+)` and `*` as `([^/]+)`, is matched against the *start* of the file's path relative to the app
folder; a `!pattern` re-admits. `funcignore_denies` reproduces that rule.

Built in a working copy as it is after `make test` (.venv/, node_modules/, .local/ with keys):
nothing of those may reach the package.
"""

from __future__ import annotations

import ast
import io
import os
import re
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IGNORED_DIRECTORIES = {".git", ".vscode"}
IGNORED_FILES = {".funcignore", ".gitignore", "appsettings.json", "local.settings.json", "project.lock.json"}
MAX_PACKAGE_BYTES = 512 * 1024  # compressed; today about a tenth of that


def _pattern_regex(pattern: str) -> str:
    escaped = re.sub(r"[\-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(0), pattern)
    return escaped.replace("**", "(.+)").replace("*", "([^\\/]+)")


def funcignore_matcher(text: str):
    positive, negative = [], []
    for line in (raw.strip() for raw in text.split("\n")):
        if not line or line.startswith("#"):
            continue
        target = negative if line.startswith("!") else positive
        line = line[1:] if line.startswith("!") else line
        target.append(line[1:] if line.startswith("/") else line)

    def compile_(patterns):
        if not patterns:
            return re.compile(r"$^")
        return re.compile("^((" + ")|(".join(_pattern_regex(p) for p in sorted(patterns)) + "))")

    pos, neg = compile_(positive), compile_(negative)

    def denies(relative: str) -> bool:
        return not (neg.match(relative) or not pos.match(relative))

    return denies, bool(negative)


def package_files(root: Path) -> list[str]:
    """Relative paths Core Tools would zip."""
    denies, has_negations = funcignore_matcher((root / ".funcignore").read_text(encoding="utf-8"))
    found = []
    for folder, dirs, files in os.walk(root):
        rel_folder = Path(folder).relative_to(root).as_posix()
        keep = []
        for name in sorted(dirs):
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            # A denied folder denies everything below it (the match is on the path's start), unless
            # a `!pattern` could re-admit part of it.
            if name in IGNORED_DIRECTORIES or (denies(rel) and not has_negations):
                continue
            keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            if name not in IGNORED_FILES and not denies(rel):
                found.append(rel)
    return found


def build_package(root: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel in package_files(root):
            archive.write(root / rel, rel)
    return buffer.getvalue()


def runtime_modules(root: Path) -> set[str]:
    """Files of every `shared` module reachable by imports from function_app.py."""
    seen: set[str] = set()
    todo = ["function_app.py"]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        package = "shared" if rel.startswith("shared/") else ""
        for node in ast.walk(ast.parse((root / rel).read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = f"{package}.{base}" if base else package
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] != "shared":
                    continue
                if len(parts) > 1:
                    todo.append("shared/__init__.py")
                candidate = "/".join(parts) + ".py"
                if (root / candidate).is_file():
                    todo.append(candidate)
                elif (root / "/".join(parts) / "__init__.py").is_file():
                    todo.append("/".join(parts) + "/__init__.py")
    return seen


@pytest.mark.parametrize("path, denied", [
    (".venv/lib/python3.11/site-packages/x.py", True),
    ("node_modules/azurite/package.json", True),
    (".local/stack.env", True),
    ("tests/conftest.py", True),
    ("devtools/stack.py", True),
    ("shared/__pycache__/drain.cpython-311.pyc", True),
    ("README.md", True),
    (".git", True),  # a file in a git worktree; Core Tools skips only a .git folder
    (".gitattributes", True),
    ("shared/__main__.py", True),
    ("function_app.py", False),
    ("shared/drain.py", False),
    ("requirements.txt", False),
    ("host.json", False),
])
def test_funcignore_denies(path, denied):
    denies, _ = funcignore_matcher((ROOT / ".funcignore").read_text(encoding="utf-8"))
    assert denies(path) is denied


def test_the_package_holds_what_the_app_imports_and_nothing_else():
    files = set(package_files(ROOT))
    native = {f"native/extjson/{name}" for name in ("setup.py", "pyproject.toml", "_bronze_extjson.c")}
    expected = {"host.json", "requirements.txt"} | runtime_modules(ROOT) | native
    assert files == expected, f"missing {sorted(expected - files)}; unexpected {sorted(files - expected)}"


def test_the_package_is_small():
    size = len(build_package(ROOT))
    assert size < MAX_PACKAGE_BYTES, f"package of {size} bytes"
