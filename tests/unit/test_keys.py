"""Exact keys: derivation from the seed's content formats, parents, and which queries are key queries."""

from memory_spine.keys import derive_key, key_parent, parse_key_query


def test_checkpoint_content_is_its_own_key():
    assert derive_key("checkpoint:wf-1:fetch") == "checkpoint:wf-1:fetch"
    assert derive_key("checkpoint:wf-1") is None  # a checkpoint names a workflow and a step
    assert derive_key("checkpoint:wf-1:fetch and more words") is None
    assert derive_key("see checkpoint:wf-1:fetch") is None


def test_dedup_key_is_the_first_token():
    assert derive_key("dedup:0123abcd action=notify") == "dedup:0123abcd"
    assert derive_key("dedup:0123abcd") == "dedup:0123abcd"
    assert derive_key("dedup: spaced") is None


def test_explicit_key_wins():
    assert derive_key("checkpoint:a:b", "trace:42") == "trace:42"
    assert derive_key("prose", "custom:key") == "custom:key"


def test_parents():
    assert key_parent("checkpoint:wf-1:fetch") == "checkpoint:wf-1"
    assert key_parent("dedup:abc") == "dedup"
    assert key_parent("plain") is None
    assert key_parent(None) is None


def test_key_queries():
    q = parse_key_query("checkpoint:wf-1")
    assert q is not None and q.key == "checkpoint:wf-1" and q.include_children
    q = parse_key_query("dedup:abc")
    assert q is not None and not q.include_children
    for ordinary in ("checkpoint", "checkpoint:", "dedup:", "what is checkpoint:wf-1", "checkpoint:wf 1", "hello"):
        assert parse_key_query(ordinary) is None, ordinary
