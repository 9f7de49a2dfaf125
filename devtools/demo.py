"""``make demo``: a realistic mix of changes, drained into the local lake, then shown.

Runs against the stack that ``make services`` started (its settings in ``.local/stack.env``):
one drain to take the starting position, then inserts, updates, replaces, deletes and a
transaction in two databases and three collections, then a drain, then the lake's file tree and
a few of its lines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
from pathlib import Path

import pymongo
from bson import Decimal128, Int64, ObjectId

from shared.drain import run_drain
from shared.envfile import read_env
from shared.lake import make_service_client
from shared.settings import Settings

DATABASES = ("demo_shop", "demo_analytics")


def demo_env(stack_env: dict[str, str]) -> dict[str, str]:
    return {
        **stack_env,
        "PIPELINE_NAME": "demo",
        "MONGO_PIPELINE": json.dumps([{"$match": {"ns.db": {"$in": list(DATABASES)}}}]),
        "DRAIN_BUDGET_SECONDS": "30",
    }


def write_changes(client, rng: random.Random) -> None:
    """Inserts, updates, a replace, deletes and a multi-document transaction."""
    shop, analytics = client[DATABASES[0]], client[DATABASES[1]]
    now = dt.datetime.now(dt.timezone.utc)
    stamp = now.strftime("%H%M%S")  # a demo can run again on the same stack
    customers = [{"_id": f"cust-{stamp}-{i}", "name": name, "since": now - dt.timedelta(days=400 * i),
                  "tier": rng.choice(["gold", "silver"])}
                 for i, name in enumerate(["Ada", "Grace", "Linus", "Barbara"])]
    shop.customers.insert_many(customers)
    order_ids = shop.orders.insert_many([{
        "customer": rng.choice(customers)["_id"], "total": Decimal128(f"{rng.randint(100, 99999) / 100:.2f}"),
        "items": [{"sku": f"SKU-{rng.randint(1, 50)}", "qty": rng.randint(1, 4)} for _ in range(rng.randint(1, 3))],
        "placedAt": now, "ref": ObjectId(), "audit": {"version": Int64(1)},
    } for _ in range(8)]).inserted_ids
    shop.orders.update_one({"_id": order_ids[0]}, {"$set": {"status": "shipped"}, "$inc": {"audit.version": 1}})
    shop.orders.replace_one({"_id": order_ids[1]}, {"customer": customers[0]["_id"], "total": Decimal128("0.00"),
                                                     "status": "cancelled"})
    shop.orders.delete_one({"_id": order_ids[2]})
    shop.customers.update_many({"tier": "gold"}, {"$set": {"discount": 0.1}})
    analytics.pageviews.insert_many([{"path": rng.choice(["/", "/cart", "/checkout"]), "ms": rng.randint(5, 900),
                                      "at": now} for _ in range(6)])
    with client.start_session() as session:
        def checkout(s):
            shop.orders.update_one({"_id": order_ids[3]}, {"$set": {"status": "paid"}}, session=s)
            analytics.pageviews.insert_one({"path": "/thanks", "ms": 42, "at": now}, session=s)
        session.with_transaction(checkout)
    analytics.pageviews.delete_many({"path": "/"})


def show_tree(settings: Settings, lines_per_file: int = 1) -> None:
    service = make_service_client(settings)
    fs = service.get_file_system_client(settings.adls_filesystem)
    paths = [p for p in fs.get_paths(recursive=True) if p.name.split("/")[0] in DATABASES]
    print(f"\n{settings.adls_filesystem}/")
    for path in paths:
        depth = path.name.count("/")
        name = path.name.rsplit("/", 1)[-1]
        size = "" if path.is_directory else f"  ({path.content_length} bytes)"
        print(f"{'    ' * depth}{name}{'/' if path.is_directory else ''}{size}")
    files = [p.name for p in paths if not p.is_directory]
    for name in files[:2]:
        data = fs.get_file_client(name).download_file().readall().splitlines()
        print(f"\n{name}: {len(data)} lines; the last {lines_per_file}:")
        for line in data[-lines_per_file:]:
            print(line.decode()[:1200])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--env-file", default=".local/stack.env")
    args = parser.parse_args(argv)
    if not Path(args.env_file).exists():
        print(f"{args.env_file} is missing: run `make services` first", file=sys.stderr)
        return 2
    env = demo_env({**read_env(args.env_file), **{k: v for k, v in os.environ.items() if k == "JSON_MODE"}})
    settings = Settings.from_env(env)
    client = pymongo.MongoClient(env["MONGO_URI"])
    first = run_drain(settings, env=env)
    print(f"position taken: {first.outcome} (pipeline {settings.pipeline_name}, seq {first.last_seq or 'as stored'})")
    write_changes(client, random.Random(7))
    print(f"wrote inserts, updates, a replace, deletes and a transaction into {', '.join(DATABASES)}")
    report = run_drain(settings, env=env)
    print("run report:", json.dumps(report.as_dict(), default=str))
    if report.outcome == "failed":
        return 1
    show_tree(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
