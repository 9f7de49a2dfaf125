"""Download the pinned SDK's source package from PyPI (``pip download``) and unpack its tests, once."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "azure-storage-file-datalake"


def pinned_version(requirements: Path) -> str:
    match = re.search(rf"^{re.escape(PACKAGE)}==(\S+)", requirements.read_text(), re.MULTILINE)
    if not match:
        raise SystemExit(f"{PACKAGE} is not pinned in {requirements}")
    return match.group(1)


def fetch_tests(version: str, cache_dir: Path) -> Path:
    """The unpacked ``tests/`` folder of ``azure-storage-file-datalake==version`` under ``cache_dir``."""
    target = cache_dir / f"{PACKAGE.replace('-', '_')}-{version}"
    tests = target / "tests"
    if (target / ".complete").exists():
        return tests
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-binary", ":all:", "--no-deps", "--dest", tmp, f"{PACKAGE}=={version}"], check=True)
        (sdist,) = Path(tmp).glob("*.tar.gz")
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(sdist) as tar:
            tar.extractall(unpacked, filter="data")
        (root,) = unpacked.iterdir()
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(root), target)
    (target / ".complete").write_text(f"{PACKAGE}=={version}\n")
    return tests
