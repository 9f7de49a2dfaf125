"""Fixtures of the reliability tests: pipelines on the session's stack (see ``harness``)."""

from __future__ import annotations

import pytest

from .harness import new_pipeline


@pytest.fixture
def make_pipeline(stack_env, mongo_client, datalake_service, fresh_filesystem, fresh_table_name):
    """``make_pipeline(scope="database", coll="items", **settings)``: a new pipeline (own database,
    name, file system and table); its databases are dropped after the test."""
    made = []

    def make(scope: str = "database", coll: str | None = "items", **settings):
        pipeline = new_pipeline(stack_env, mongo_client, datalake_service, fresh_filesystem, fresh_table_name,
                                scope=scope, coll=coll, **settings)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        mongo_client.drop_database(pipeline.db)
