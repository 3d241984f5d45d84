"""MemorySpineStore's two mappings, as properties: LangGraph namespaces onto service namespaces (one-to-one,
valid service names, a prefix reaching exactly the namespaces below it, whatever the labels hold; decoded back by
list_namespaces), and LangGraph filters onto the service's `where` (a query search, whose filter the service
applies, returns exactly the items the store's own check passes: the two never disagree). In-process app, fake
embedder."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.store.base import InvalidNamespaceError, PutOp

from memory_spine.namespaces import validate
from workflow_kit.langgraph_store import MemorySpineStore, _Layout, _matches

# short labels full of separators, escapes and metacharacters, and long ones (hashed past 64 characters)
LABEL = st.one_of(
    st.text(alphabet="ab:/%*_.\n Zé-", min_size=1, max_size=3),
    st.sampled_from(["x" * 64, "x" * 65, "é" * 10, "é" * 11, ".." + "a" * 40]),
)
# At most three labels: four of the longest (65 characters each once escaped or hashed) pass the service's 255,
# which the mapping refuses by design (test_what_the_mapping_looks_like_and_its_limit).
NAMESPACE = st.lists(LABEL, min_size=0, max_size=3).map(tuple)


def under(b: str, a: str) -> bool:
    return b == a or b.startswith(a + "/")


@given(a=NAMESPACE, b=NAMESPACE.filter(bool))
def test_a_namespace_prefix_reaches_exactly_the_namespaces_below_it(a, b) -> None:
    layout = _Layout("p")
    assert under(layout.namespace(b), layout.namespace(a)) == (b[: len(a)] == a)
    assert layout.namespace(b).startswith(layout.subtree(a)) == (b[: len(a)] == a and len(b) > len(a))


@given(a=NAMESPACE.filter(bool), b=NAMESPACE.filter(bool))
def test_namespaces_map_one_to_one_onto_valid_service_names(a, b) -> None:
    layout = _Layout("p")
    assert validate(layout.namespace(a)) == layout.namespace(a)  # the service would take it as it is
    assert (layout.namespace(a) == layout.namespace(b)) == (a == b)
    labels = layout.labels(layout.namespace(a))  # decoded back, except the hashed labels
    assert labels == tuple(
        None if len(layout.segment(x)) == 42 and layout.segment(x).startswith("..") else x for x in a
    )


def test_what_the_mapping_looks_like_and_its_limit() -> None:
    layout = _Layout("lgs")
    assert layout.namespace(("users", "42")) == "lgs/users/42"
    assert layout.namespace(("a/b", "x.y", "é")) == "lgs/a.2Fb/x.2Ey/.C3.A9"
    assert layout.labels("lgs/a.2Fb/x.2Ey/.C3.A9") == ("a/b", "x.y", "é")
    assert layout.labels("other/users") is None
    with pytest.raises(InvalidNamespaceError, match="255"):
        layout.namespace(tuple("y" * 60 for _ in range(5)))
    for bad in ("", "a/b", "..", "a b"):
        with pytest.raises(ValueError, match="prefix"):
            _Layout(bad)


SCALAR = st.one_of(st.none(), st.booleans(), st.sampled_from([-1, 0, 2, 3, 2.5]), st.sampled_from(["3", "a"]))
VALUE = st.dictionaries(st.sampled_from(["x", "y"]), SCALAR, max_size=2)
CONDITION = st.one_of(
    SCALAR,
    st.dictionaries(
        st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]),
        SCALAR.filter(lambda v: v is not None),
        min_size=1,
        max_size=2,
    ),
)
FILTER = st.dictionaries(st.sampled_from(["x", "y"]), CONDITION, min_size=1, max_size=2)


@pytest.fixture
def store(app) -> MemorySpineStore:
    s = MemorySpineStore("http://memory-spine", transport=httpx.ASGITransport(app=app))
    yield s
    s.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(VALUE, min_size=1, max_size=6), flt=FILTER)
def test_the_service_where_and_the_stores_check_agree(store, values: list[dict[str, Any]], flt) -> None:
    ns = ("prop", uuid.uuid4().hex)
    store.batch([PutOp(ns, f"k{i}", {"text": f"item {i}", **value}) for i, value in enumerate(values)])
    expected = {f"k{i}" for i, v in enumerate(values) if _matches(flt, {"text": "", **v})}
    ranked = store.search(ns, query="item", filter=flt, limit=10)
    listed = store.search(ns, filter=flt, limit=10)
    assert {r.key for r in ranked} == expected
    assert {r.key for r in listed} == expected
    assert all(r.score is not None for r in ranked)


def test_an_unknown_operator_is_refused(store) -> None:
    with pytest.raises(ValueError, match="unsupported operator '\\$regex'"):
        store.search(("a",), query="q", filter={"x": {"$regex": "."}})
    with pytest.raises(ValueError, match="unsupported operator"):
        store.search(("a",), filter={"x": {"$in": [1]}})


def test_a_range_compares_like_with_like(store) -> None:
    for key, n in [("int", 5), ("text", "5"), ("flag", True), ("missing", None)]:
        store.put(("r",), key, {"n": n} if n is not None else {})
    assert [i.key for i in store.search(("r",), filter={"n": {"$gt": 3}})] == ["int"]
    assert [i.key for i in store.search(("r",), query="q", filter={"n": {"$gt": 3}})] == ["int"]
    assert [i.key for i in store.search(("r",), filter={"n": {"$gt": "4"}})] == ["text"]
