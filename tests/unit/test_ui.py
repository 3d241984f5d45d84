"""The console's service side: key groups (workflows from checkpoints)."""

from __future__ import annotations

import time

import pytest

from memory_spine.errors import InvalidInput
from memory_spine.models import MemoryIn


def test_key_groups_lists_each_parent_once_by_its_newest_record(service):
    for wf in ("a", "b", "c"):
        for step in ("fetch", "post"):
            service.ingest(MemoryIn(content=f"checkpoint:{wf}:{step}"))
    service.ingest(MemoryIn(content="checkpoint:a:retry"))  # a is now the newest workflow
    service.ingest(MemoryIn(content="checkpoint:abc"))  # parent "checkpoint": not under "checkpoint:"
    service.ingest(MemoryIn(content="a note", key="checkpoint-like"))

    page = service.key_groups("checkpoint:", limit=2)
    assert page["total"] == 3
    assert [r["key"] for r in page["results"]] == ["checkpoint:a:retry", "checkpoint:c:post"]
    assert [r["key"] for r in service.key_groups("checkpoint:", limit=10, offset=2)["results"]] == ["checkpoint:b:post"]
    assert [r["key"] for r in service.key_groups("checkpoint:b")["results"]] == ["checkpoint:b:post"]
    assert "seq" not in page["results"][0]


def test_key_groups_skips_expired_records(service):
    service.ingest(MemoryIn(content="checkpoint:x:one"))
    service.ingest(MemoryIn(content="checkpoint:x:two", ttl_seconds=0.001))
    time.sleep(0.01)
    assert [r["key"] for r in service.key_groups("checkpoint:")["results"]] == ["checkpoint:x:one"]


@pytest.mark.parametrize(
    ("kw", "field"), [({"prefix": ""}, "prefix"), ({"limit": 0}, "limit"), ({"offset": -1}, "offset")]
)
def test_key_groups_refuses_bad_arguments(service, kw, field):
    args = {"prefix": "checkpoint:", **kw}
    with pytest.raises(InvalidInput) as err:
        service.key_groups(**args)
    assert err.value.field == field
