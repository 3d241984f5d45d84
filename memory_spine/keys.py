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

from dataclasses import dataclass

KEY_PREFIXES = ("checkpoint:", "dedup:")


def derive_key(content: str, explicit: str | None = None) -> str | None:
    """The exact key a record is indexed under, or None.

    No regular expression: `checkpoint:\\S+:\\S+` backtracked quadratically on a long run of colons (23 s for
    99k of them, holding the GIL). One pass over the text instead: whitespace as `str.isspace` (what `\\s`
    matches) and a colon with at least one character on each side.
    """
    if explicit:
        return explicit
    if content.startswith("checkpoint:"):
        rest = content[len("checkpoint:") :]
        if ":" in rest[1:-1] and not any(ch.isspace() for ch in rest):
            return content
        return None
    if content.startswith("dedup:"):
        token = content[len("dedup:") :].split(None, 1)
        if token and not content[len("dedup:")].isspace():
            return f"dedup:{token[0]}"
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
