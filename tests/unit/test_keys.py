"""Exact keys: derivation from the seed's content formats, parents, and which queries are key queries."""

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

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


# The regexes derive_key replaced (checkpoint: one backtracked quadratically): the oracle it must agree with.
_OLD_CHECKPOINT = re.compile(r"checkpoint:\S+:\S+")
_OLD_DEDUP = re.compile(r"dedup:(\S+)")


def _old_derive_key(content: str) -> str | None:
    if content.startswith("checkpoint:") and _OLD_CHECKPOINT.fullmatch(content):
        return content
    if content.startswith("dedup:"):
        match = _OLD_DEDUP.match(content)
        if match:
            return f"dedup:{match.group(1)}"
    return None


_KEYISH = st.lists(st.sampled_from(["checkpoint:", "dedup:", ":", "a", " ", "\t", "\u3000", "\x85", "é", "\n"])).map(
    "".join
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_KEYISH, st.builds(lambda p, t: p + t, st.sampled_from(["checkpoint:", "dedup:"]), _KEYISH)))
def test_derive_key_agrees_with_the_regexes_it_replaced(content):
    assert derive_key(content) == _old_derive_key(content)


def test_derive_key_is_linear_on_a_run_of_colons():
    started = time.perf_counter()
    assert derive_key("checkpoint:" + ":" * 99_000 + " x") is None
    assert derive_key("checkpoint:" + ":" * 99_000) == "checkpoint:" + ":" * 99_000
    assert time.perf_counter() - started < 0.5  # was 23 s (55 s on a loaded machine) for the first
