"""Exact keys: how a record gets one, and which search queries are answered by key instead of by meaning.

A record's key is its explicit `key`, else one derived from its content in the seed's formats:

- `checkpoint:{workflow_id}:{step}` (the whole content, no whitespace) -> that string;
- `dedup:{k} ...` -> `dedup:{k}` (the first whitespace-separated token).

Every key also has a *parent*: the key up to its last `:` (`checkpoint:wf-1:fetch` -> `checkpoint:wf-1`).
A search whose whole query is `checkpoint:...` or `dedup:...` (no whitespace) is a key query: it matches the
records whose key equals the query, or whose parent equals it, newest write first. So `checkpoint:wf-1`
finds wf-1's checkpoints and never wf-12's, and `dedup:abc` finds exactly that key or nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KEY_PREFIXES = ("checkpoint:", "dedup:")
_CHECKPOINT = re.compile(r"checkpoint:\S+:\S+")
_DEDUP = re.compile(r"dedup:(\S+)")


def derive_key(content: str, explicit: str | None = None) -> str | None:
    """The exact key a record is indexed under, or None."""
    if explicit:
        return explicit
    if content.startswith("checkpoint:") and _CHECKPOINT.fullmatch(content):
        return content
    if content.startswith("dedup:"):
        match = _DEDUP.match(content)
        if match:
            return f"dedup:{match.group(1)}"
    return None


def key_parent(key: str | None) -> str | None:
    """The key up to its last colon (`checkpoint:wf:step` -> `checkpoint:wf`), or None without a colon."""
    if not key or ":" not in key:
        return None
    parent = key.rsplit(":", 1)[0]
    return parent or None


@dataclass(frozen=True)
class KeyQuery:
    """A search answered from the key index: records whose key or key parent equals `key`."""

    key: str
    include_children: bool = True


def parse_key_query(query: str) -> KeyQuery | None:
    """Return the key query a search string stands for, or None when it is an ordinary query."""
    if not query.startswith(KEY_PREFIXES) or any(ch.isspace() for ch in query):
        return None
    if query.endswith(":") or query in KEY_PREFIXES:
        return None
    return KeyQuery(query, include_children=query.startswith("checkpoint:"))
