"""A property of record history on every backend (hypothesis): any sequence of writes (PATCH, upsert, delete and
restore) and reverts leaves `GET` equal to the content of the version last reverted to, and the history lists
every version written, newest first, each readable again through `as_of` at the time it was written.

The service in-process with the fake embedder (contracts/conftest.py). Profiles: CI runs
`MEMORY_SPINE_HISTORY_EXAMPLES` sequences per backend (default 25); a long run:
`MEMORY_SPINE_HISTORY_EXAMPLES=2000 pytest tests/contracts/test_history_properties.py`.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_spine.models import MemoryIn, MemoryPatch, RestoreIn, RevertIn

pytestmark = pytest.mark.timeout(300)

EXAMPLES = int(os.environ.get("MEMORY_SPINE_HISTORY_EXAMPLES", "25"))
FIELDS = ("content", "tags", "metadata", "importance", "key")

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20).filter(
    lambda s: s.strip() != ""
)
tags = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=3, unique=True)
metadata = st.dictionaries(st.sampled_from(["x", "y", "z"]), st.integers(-5, 5) | st.none(), max_size=3)
importance = st.sampled_from(["low", "medium", "high", "critical"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("patch"), st.fixed_dictionaries({"content": text}, optional={"tags": tags})),
        st.tuples(st.just("patch"), st.fixed_dictionaries({"metadata": metadata}, optional={"importance": importance})),
        st.tuples(st.just("patch"), st.fixed_dictionaries({"tags": tags})),
        st.tuples(st.just("upsert"), st.fixed_dictionaries({"content": text, "tags": tags})),
        st.tuples(st.just("revert"), st.integers(0, 50)),
        st.tuples(st.just("delete_restore"), st.none()),
    ),
    min_size=1,
    max_size=12,
)


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    return {f: record[f] for f in FIELDS}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=ops)
def _check(service: Any, sequence: list[tuple[str, Any]]) -> None:
    id_ = f"p-{uuid.uuid4().hex}"
    service.ingest(MemoryIn(id=id_, content="start", tags=["a"]))
    seen: dict[int, dict[str, Any]] = {}  # version -> what GET showed of it
    written: dict[int, str] = {}  # version -> its updated_at

    def read() -> dict[str, Any]:
        got = service.get(id_)
        seen[got["version"]] = _fields(got)
        written[got["version"]] = got["updated_at"]
        return got

    read()
    for op, arg in sequence:
        if op == "patch":
            service.update(id_, MemoryPatch(**arg))
        elif op == "upsert":
            service.ingest(MemoryIn(id=id_, **arg))
        elif op == "delete_restore":
            service.delete(id_)
            assert service.restore_deleted(id_, RestoreIn())["version"] > max(seen)
        else:
            target = sorted(seen)[arg % len(seen)]
            out = service.revert(id_, RevertIn(version=target))
            assert _fields(out) == seen[target]
            assert _fields(read()) == seen[target]  # GET agrees with the answer and with the version reverted to
            continue
        read()
    history = service.history(id_, limit=1000)
    assert [v["version"] for v in history["versions"]] == sorted(seen, reverse=True)
    for v in history["versions"]:
        assert _fields(v) == seen[v["version"]]
        assert _fields(service.get(id_, as_of=written[v["version"]])) == seen[v["version"]]
    for target in sorted(seen):  # and back to each version in turn, whatever the sequence was
        assert _fields(service.revert(id_, RevertIn(version=target))) == seen[target]
        assert _fields(service.get(id_)) == seen[target]


def test_any_writes_and_reverts_leave_get_equal_to_the_version_reverted_to(service):
    service.storage.history_versions = 1000  # every version of a sequence kept
    _check(service)
