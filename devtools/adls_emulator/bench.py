"""Benchmark of the emulator on its own: ``python -m devtools.adls_emulator.bench``.

Starts the emulator in a child process (in memory, HTTP) and measures, from this process:

* append/flush throughput: one file written in ``--chunk-mib`` appends up to ``--mib`` MiB, flushed
  once; then ``--small`` appends of 4 KiB, each flushed (request rate);
* creating ``--paths`` files (default 100,000) in 100 directories, then listing them all
  recursively (``maxResults=5000`` pages) and one directory non-recursively;
* the emulator's memory: resident set size after each phase and its peak (``VmHWM``, Linux).

Requests are plain ``http.client`` calls authorized by one account SAS (no per-request signing),
so the figures are the emulator's, not the SDK's. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

from azure.storage.filedatalake import AccountSasPermissions, ResourceTypes, generate_account_sas

from .auth import DEV_ACCOUNT, DEV_KEY


def _memory(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return {}
    fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status.read_text(), re.MULTILINE))
    return {k: round(int(v) / 1024, 1) for k, v in fields.items()}


class Client:
    def __init__(self, port: int, sas: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.sas = sas

    def send(self, method: str, path: str, query: str = "", body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        url = f"/{DEV_ACCOUNT}/{path}?{query + '&' if query else ''}{self.sas}"
        self.conn.request(method, url, body=body, headers={"x-ms-version": "2026-02-06", **(headers or {})})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}?{query}: {resp.status} {data[:200]!r}")
        return resp.status, dict(resp.getheaders()), data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.adls_emulator.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="size of the large file (MiB)")
    parser.add_argument("--chunk-mib", type=int, default=4, help="append size for the large file (MiB)")
    parser.add_argument("--small", type=int, default=2000, help="number of 4 KiB append+flush pairs")
    parser.add_argument("--paths", type=int, default=100_000, help="files to create and list")
    args = parser.parse_args(argv)

    proc = subprocess.Popen([sys.executable, "-u", "-m", "devtools.adls_emulator", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r":(\d+)/", proc.stdout.readline()).group(1))
        sas = generate_account_sas(DEV_ACCOUNT, DEV_KEY, ResourceTypes(service=True, file_system=True, object=True),
                                   AccountSasPermissions(read=True, write=True, delete=True, list=True,
                                                         create=True),
                                   expiry=datetime.now(timezone.utc) + timedelta(hours=4))
        c = Client(port, sas)
        out: dict[str, object] = {"memory_start_mib": _memory(proc.pid)}
        c.send("PUT", "bench", "resource=filesystem")

        # Large file: big appends, one flush.
        chunk = b"x" * (args.chunk_mib << 20)
        c.send("PUT", "bench/large", "resource=file")
        started = time.perf_counter()
        position = 0
        while position < args.mib << 20:
            c.send("PATCH", "bench/large", f"action=append&position={position}", chunk)
            position += len(chunk)
        c.send("PATCH", "bench/large", f"action=flush&position={position}")
        elapsed = time.perf_counter() - started
        out["append_flush_large"] = {"mib": position >> 20, "seconds": round(elapsed, 2),
                                     "mib_per_s": round((position >> 20) / elapsed, 1)}
        out["memory_after_large_mib"] = _memory(proc.pid)

        # Small appends, each flushed.
        small = b"y" * 4096
        c.send("PUT", "bench/small", "resource=file")
        started = time.perf_counter()
        position = 0
        for _ in range(args.small):
            c.send("PATCH", "bench/small", f"action=append&position={position}", small)
            position += len(small)
            c.send("PATCH", "bench/small", f"action=flush&position={position}")
        elapsed = time.perf_counter() - started
        out["append_flush_4kib"] = {"pairs": args.small, "seconds": round(elapsed, 2),
                                    "pairs_per_s": round(args.small / elapsed, 1)}
        c.send("DELETE", "bench/large")
        c.send("DELETE", "bench/small")

        # Many paths.
        started = time.perf_counter()
        for i in range(args.paths):
            c.send("PUT", f"bench/d{i % 100:02d}/f{i:06d}", "resource=file")
        elapsed = time.perf_counter() - started
        out["create_paths"] = {"paths": args.paths, "seconds": round(elapsed, 1),
                               "per_s": round(args.paths / elapsed, 1)}
        out["memory_after_create_mib"] = _memory(proc.pid)

        started = time.perf_counter()
        listed, pages, token = 0, 0, None
        while True:
            query = "resource=filesystem&recursive=true&maxResults=5000"
            if token:
                query += "&continuation=" + token
            _, headers, body = c.send("GET", "bench", query)
            listed += len(json.loads(body)["paths"])
            pages += 1
            token = {k.lower(): v for k, v in headers.items()}.get("x-ms-continuation")
            if not token:
                break
            token = quote(token, safe="")
        elapsed = time.perf_counter() - started
        out["list_recursive"] = {"paths": listed, "pages": pages, "seconds": round(elapsed, 2),
                                 "paths_per_s": round(listed / elapsed)}
        started = time.perf_counter()
        _, _, body = c.send("GET", "bench", "resource=filesystem&directory=d42&recursive=false")
        out["list_one_directory"] = {"paths": len(json.loads(body)["paths"]),
                                     "seconds": round(time.perf_counter() - started, 3)}
        out["memory_end_mib"] = _memory(proc.pid)
        print(json.dumps(out, indent=2))
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
