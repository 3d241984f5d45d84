"""The `where` language, differentially: random filters over random metadata match the same records in SQLite
(json_extract) and PostgreSQL (jsonb), including the corners: bools against numbers, ints against floats,
strings against numbers, nulls and missing fields, arrays and objects where scalars are asked for."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from memory_spine.models import Filter
from memory_spine.storage.base import NewRecord
from memory_spine.storage.sqlite import SQLiteStorage

from .conftest import postgres_or_skip

pytestmark = pytest.mark.timeout(120)

VALUES = [0, 1, 2, -1, 1.0, 1.5, 2.5, True, False, None, "", "a", "b", "ab", "1", "é", "Z", [1], {"x": 1}]
FIELDS = ["a", "b", "c.d"]
OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"]


def _doc(rng: random.Random) -> dict:
    doc: dict = {}
    for field in ("a", "b"):
        if rng.random() < 0.8:
            doc[field] = rng.choice(VALUES)
    if rng.random() < 0.5:
        doc["c"] = {"d": rng.choice(VALUES)} if rng.random() < 0.8 else rng.choice(VALUES)
    return doc


def _scalar(rng: random.Random):
    return rng.choice([v for v in VALUES if not isinstance(v, list | dict)])


def _where(rng: random.Random, depth: int = 0) -> dict:
    if depth < 2 and rng.random() < 0.25:
        return {rng.choice(["$and", "$or"]): [_where(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    field, op = rng.choice(FIELDS), rng.choice(OPS)
    if op in ("$in", "$nin"):
        return {field: {op: [_scalar(rng) for _ in range(rng.randint(1, 3))]}}
    if op == "$eq" and rng.random() < 0.5:
        return {field: _scalar(rng)}
    return {field: {op: _scalar(rng)}}


def test_where_means_the_same_on_both_backends(pg_cluster, tmp_path):
    from memory_spine.storage.postgres import PostgresStorage

    cluster = postgres_or_skip(pg_cluster)
    url = cluster.create_database("where")
    rng = random.Random(20261124)
    now = time.time()
    records = [
        NewRecord(
            id=f"r{i}",
            content=f"record {i}",
            tags=[],
            metadata=_doc(rng),
            importance="medium",
            key=None,
            key_parent=None,
            expires_at=None,
            vector=np.ones(4, dtype=np.float32) / 2,
            now=now,
        )
        for i in range(80)
    ]
    lite = SQLiteStorage(tmp_path / "m.db", 4)
    pg = PostgresStorage(url, 4)
    try:
        lite_seq = {r.seq: r.id for r in lite.put(records)}
        pg_seq = {r.seq: r.id for r in pg.put(records)}
        informative = 0
        for _ in range(400):
            flt = Filter(where=_where(rng))
            got_lite, _ = lite.list(flt, now + 1, 1000, None, True)
            got_pg, _ = pg.list(flt, now + 1, 1000, None, True)
            assert {lite_seq[r["seq"]] for r in got_lite} == {pg_seq[r["seq"]] for r in got_pg}, flt.where
            informative += 0 < len(got_lite) < len(records)
        assert informative > 150  # most filters split the records: the comparison means something
    finally:
        lite.close()
        pg.close()
        cluster.drop_database(url)
