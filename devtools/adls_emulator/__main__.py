"""CLI: ``python -m devtools.adls_emulator --host 127.0.0.1 --port 10100 [--data-dir DIR]``.

Serves until SIGTERM or SIGINT, then closes the socket (and the data directory) cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .auth import DEV_ACCOUNT
from .server import Emulator, EmulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.adls_emulator",
                                     description="Local ADLS Gen2 (dfs + blob) emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=10100)
    parser.add_argument("--data-dir", default=None, help="persist state in this folder (default: in memory)")
    parser.add_argument("--account", default=DEV_ACCOUNT)
    parser.add_argument("--tls-cert", default=None, help="PEM certificate: serve HTTPS (for token credentials)")
    parser.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    parser.add_argument("--filesystem-soft-delete-days", type=int, default=None, metavar="DAYS",
                        help="keep deleted file systems restorable for DAYS (the account's container soft delete)")
    parser.add_argument("--superuser", action="append", default=[], metavar="OBJECT_ID",
                        help="an Entra object ID whose bearer tokens act as Storage Blob Data Owner: ACLs do not "
                             "restrict it (repeatable; by default only the creator of a file system is one there)")
    parser.add_argument("--encryption-scope", action="append", default=None, metavar="NAME",
                        help="an encryption scope the account has (repeatable; default: scope1 and scope2; "
                             "$account-encryption-key always exists); requests naming another are refused")
    args = parser.parse_args(argv)

    emulator = Emulator(account=args.account, data_dir=args.data_dir,
                        filesystem_soft_delete_days=args.filesystem_soft_delete_days, superusers=args.superuser,
                        encryption_scopes=args.encryption_scope)
    server = EmulatorServer(args.host, args.port, emulator, args.tls_cert, args.tls_key)
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="adls-emulator",
                              daemon=True)
    thread.start()
    print(f"ADLS Gen2 emulator listening on {server.account_url} "
          f"(data: {args.data_dir or 'in memory'})", flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    server.emulator.close()
    thread.join(timeout=5)
    print("ADLS Gen2 emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
