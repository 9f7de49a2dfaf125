"""The straightforward script people write first, as the comparison point.

It follows the origin guide's rolling-JSONL sketch: for every event, find the hourly file of the
event's partition, read its length (``exists`` then ``getProperties``; create it when missing),
append the line at that offset, flush, then save the event's resume token to a Table row.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pymongo
from azure.data.tables import TableClient, UpdateMode
from azure.storage.filedatalake import DataLakeServiceClient
from bson import json_util

from shared.source import Position, token_text


class SeedWriter:
    def __init__(self, account_url: str, account_key: str, filesystem: str, table: TableClient) -> None:
        service = DataLakeServiceClient(account_url, credential={
            "account_name": account_url.rstrip("/").rsplit("/", 1)[-1], "account_key": account_key})
        self.fs = service.get_file_system_client(filesystem)
        self.fs.create_file_system()
        self.table = table
        self.table.create_table()

    def append_jsonl(self, path: str, line: str) -> None:
        file = self.fs.get_file_client(path)
        length = 0
        if not file.exists():
            file.create_file()
        else:
            length = file.get_file_properties().size
        body = (line + "\n").encode("utf-8")
        file.append_data(body, offset=length, length=len(body))
        file.flush_data(length + len(body))

    def save_token(self, token) -> None:
        self.table.upsert_entity({"PartitionKey": "seed", "RowKey": "resume", "token": token_text(token)},
                                 mode=UpdateMode.REPLACE)

    def run(self, mongo_uri: str, start_token: str, limit: int) -> dict:
        client = pymongo.MongoClient(mongo_uri)
        events = written = 0
        options = Position("resume_after", start_token).watch_options()
        # the guide's options: post-images by lookup, pre-images when available, batches of 100
        with client.watch(full_document="updateLookup", full_document_before_change="whenAvailable",
                          max_await_time_ms=500, batch_size=100, **options) as stream:
            while events < limit:
                event = stream.try_next()
                if event is None:
                    break
                when = datetime.fromtimestamp(event["clusterTime"].time, tz=timezone.utc)
                ns = event.get("ns", {})
                path = (f"{ns.get('db', 'unknown_db')}/{ns.get('coll', 'unknown_coll')}/year={when:%Y}/"
                        f"month={when:%m}/day={when:%d}/events-{when:%Y%m%d-%H}.jsonl")
                line = json_util.dumps(event)
                self.append_jsonl(path, line)
                self.save_token(event["_id"])
                events += 1
                written += len(line) + 1
        client.close()
        return {"events": events, "bytes": written}
