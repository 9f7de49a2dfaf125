"""``python -m devtools.sdk_tests [--cache-dir DIR] [pytest arguments...]``

Fetches the pinned ``azure-storage-file-datalake`` source package (once), starts the ADLS emulator
over HTTPS and runs the package's tests against it. Extra arguments go to pytest (``-k``, ``-x``,
a test file name relative to the package's ``tests/`` folder, ...). Exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from devtools.adls_emulator.auth import DEV_ACCOUNT
from devtools.adls_emulator.tls import self_signed_cert

from .fetch import fetch_tests, pinned_version

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# The object ID in the shim's tokens (the shim reads the same variable).
TOKEN_OID = os.environ.setdefault("SDK_TESTS_TOKEN_OID", "3a5f8a6e-2c1b-4d6e-9f0a-1b2c3d4e5f60")
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def start_emulator(cert: str, key: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    """The emulator in its own process (the tests and it then use both cores); returns its account URL."""
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    # Like the SDK's test accounts: file system soft delete on (an account setting), blob soft
    # delete (DeleteRetentionPolicy) set through the service properties below, and the identity of
    # the tests' token credential holding Storage Blob Data Owner (a superuser for ACLs), and the
    # encryption scope their tests use.
    proc = subprocess.Popen([sys.executable, "-u", "-m", "devtools.adls_emulator", "--port", "0",
                             "--tls-cert", cert, "--tls-key", key, "--filesystem-soft-delete-days", "7",
                             "--superuser", TOKEN_OID, "--encryption-scope", "hnstestscope1"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    match = re.search(r"listening on (https://\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line!r} (log: {log_path})")
    return proc, match.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.sdk_tests", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", default=os.environ.get("SDK_TESTS_CACHE", str(REPO / ".local" / "sdk-tests")),
                        help="where the source package is downloaded and unpacked (default .local/sdk-tests)")
    parser.add_argument("--serial", dest="parallel", action="store_false",
                        help="run the sync and async tests one after the other (default: side by side)")
    args, pytest_args = parser.parse_known_args(argv)

    version = pinned_version(REPO / "requirements.txt")
    tests_dir = fetch_tests(version, Path(args.cache_dir))
    with tempfile.TemporaryDirectory(prefix="sdk-tests-") as tmp:
        cert, key = self_signed_cert(Path(tmp) / "tls")
        proc, account_url = start_emulator(cert, key, Path(tmp) / "emulator.log")
        try:
            from azure.storage.filedatalake import DataLakeServiceClient, RetentionPolicy

            DataLakeServiceClient(account_url, credential={"account_name": DEV_ACCOUNT, "account_key": DEV_KEY},
                                  connection_verify=cert).set_service_properties(
                delete_retention_policy=RetentionPolicy(enabled=True, days=7))
            env = dict(os.environ)
            env.update({
                "SDK_TESTS_ACCOUNT_URL": account_url,
                "DATALAKE_STORAGE_ACCOUNT_NAME": DEV_ACCOUNT,
                "DATALAKE_STORAGE_ACCOUNT_KEY": DEV_KEY,
                "STORAGE_DATA_LAKE_SOFT_DELETE_ACCOUNT_NAME": DEV_ACCOUNT,
                "STORAGE_DATA_LAKE_SOFT_DELETE_ACCOUNT_KEY": DEV_KEY,
                "AZURE_TEST_RUN_LIVE": "true",
                "AZURE_SKIP_LIVE_RECORDING": "true",
                # Trust the emulator's certificate: requests (sync) and the ssl module (aiohttp, async).
                "REQUESTS_CA_BUNDLE": cert,
                "SSL_CERT_FILE": cert,
                "PYTHONPATH": os.pathsep.join(p for p in (str(HERE / "shim"), str(REPO), env.get("PYTHONPATH")) if p),
            })
            base = [sys.executable, "-m", "pytest", "-c", str(HERE / "pytest.ini"), "--rootdir", str(tests_dir)]
            explicit = any(a.endswith(".py") or "::" in a for a in pytest_args)  # test files or ids given
            if explicit or not args.parallel:
                return subprocess.call([*base, *pytest_args, *([] if explicit else ["."])], cwd=tests_dir, env=env)
            # The tests spend most of their time sleeping (live-mode waits of 10-30 s), so the sync
            # and async halves run side by side against the same emulator; their names never collide.
            sync_files = sorted(p.name for p in tests_dir.glob("test_*.py") if not p.stem.endswith("_async"))
            async_files = sorted(p.name for p in tests_dir.glob("test_*_async.py"))
            log_path = Path(tmp) / "async.log"
            with open(log_path, "w") as log:
                other = subprocess.Popen([*base, *pytest_args, *async_files], cwd=tests_dir, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
                status = subprocess.call([*base, *pytest_args, *sync_files], cwd=tests_dir, env=env)
                other_status = other.wait()
            print("\n---------------- async tests ----------------", flush=True)
            print(log_path.read_text(), flush=True)
            return status or other_status
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
