"""Azurite's Table service does what the checkpoint store needs (through azure-data-tables).

Runs against a real storage account's Table endpoint instead when TEST_CHECKPOINT_CONNECTION_STRING
is set.
"""

from __future__ import annotations

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError
from azure.data.tables import UpdateMode


@pytest.fixture
def table(table_service, fresh_table_name):
    return table_service.create_table(fresh_table_name)


def test_upsert_and_get(table):
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "token": "a", "seq": 1})
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "token": "b", "seq": 2}, mode=UpdateMode.REPLACE)
    entity = table.get_entity("p", "r")
    assert entity["token"] == "b"
    assert entity["seq"] == 2
    assert entity.metadata["etag"]


def test_etag_conditional_update(table):
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "seq": 1})
    first = table.get_entity("p", "r")
    first_etag = first.metadata["etag"]

    first["seq"] = 2
    table.update_entity(
        first, mode=UpdateMode.REPLACE, etag=first_etag, match_condition=MatchConditions.IfNotModified
    )
    second = table.get_entity("p", "r")
    assert second["seq"] == 2
    assert second.metadata["etag"] != first_etag

    # A writer holding the old ETag loses: 412 Precondition Failed.
    stale = {"PartitionKey": "p", "RowKey": "r", "seq": 99}
    with pytest.raises(ResourceModifiedError) as info:
        table.update_entity(
            stale, mode=UpdateMode.REPLACE, etag=first_etag, match_condition=MatchConditions.IfNotModified
        )
    assert info.value.status_code == 412
    assert table.get_entity("p", "r")["seq"] == 2


def test_create_on_existing_row_conflicts(table):
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "owner": "a"})
    with pytest.raises(ResourceExistsError) as info:
        table.create_entity({"PartitionKey": "p", "RowKey": "r", "owner": "b"})
    assert info.value.status_code == 409
    assert table.get_entity("p", "r")["owner"] == "a"


def test_transaction_commits_all_operations(table):
    table.create_entity({"PartitionKey": "p", "RowKey": "old", "v": 0})
    old = table.get_entity("p", "old")
    operations = [
        ("create", {"PartitionKey": "p", "RowKey": "a", "v": 1}),
        ("upsert", {"PartitionKey": "p", "RowKey": "b", "v": 2}),
        (
            "update",
            {"PartitionKey": "p", "RowKey": "old", "v": 3},
            {
                "mode": UpdateMode.REPLACE,
                "etag": old.metadata["etag"],
                "match_condition": MatchConditions.IfNotModified,
            },
        ),
    ]
    results = table.submit_transaction(operations)
    assert len(results) == 3
    values = {e["RowKey"]: e["v"] for e in table.query_entities("PartitionKey eq 'p'")}
    assert values == {"a": 1, "b": 2, "old": 3}


def test_transaction_is_atomic(table):
    table.create_entity({"PartitionKey": "p", "RowKey": "exists", "v": 0})
    operations = [
        ("create", {"PartitionKey": "p", "RowKey": "new", "v": 1}),
        ("create", {"PartitionKey": "p", "RowKey": "exists", "v": 1}),  # 409: the whole batch fails
    ]
    with pytest.raises(HttpResponseError):
        table.submit_transaction(operations)
    rows = {e["RowKey"] for e in table.query_entities("PartitionKey eq 'p'")}
    assert rows == {"exists"}
