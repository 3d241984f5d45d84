"""Request validation: what the service checks of a request before it touches storage. Each check raises
`InvalidInput` naming the field (as the request spells it, e.g. `records[3].metadata`), never lets bad input
reach the database. The limits come from `Settings` (max_content_chars, max_tags, max_metadata_bytes, ...).
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

from .config import Settings
from .errors import InvalidInput
from .keys import derive_key, key_parent
from .models import Filter, MemoryIn
from .namespaces import resolve
from .storage.base import NewRecord
from .storage.filters import check_text as _check_text
from .storage.filters import check_time, to_epoch


def check_text(value: str, field: str, max_chars: int | None = None, allow_empty: bool = False) -> None:
    """Text the service can store: at most `max_chars` characters, no NUL or lone surrogate, not blank unless
    `allow_empty`."""
    if max_chars is not None and len(value) > max_chars:
        raise InvalidInput(field, f"is {len(value)} characters long; the limit is {max_chars}")
    _check_text(value, field, allow_blank=allow_empty)


def cursor(cursor: str | None) -> int | None:
    """A `next_cursor` this service returned (a record's seq: 0 <= n < 2**63) -> int; else InvalidInput."""
    if not cursor:
        return None
    if len(cursor) > 20 or not cursor.isascii() or not cursor.isdigit() or int(cursor) >= 2**63:
        raise InvalidInput("cursor", "is not a cursor this service returned")
    return int(cursor)


def wide_int(node: Any, path: str) -> str | None:
    """The path of the first integer beyond 64 bits in a JSON value (already depth-checked), or None."""
    if isinstance(node, dict):
        for key, value in node.items():
            found = wide_int(value, f"{path}.{key}")
            if found:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = wide_int(value, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(node, int) and not isinstance(node, bool) and not -(2**63) <= node < 2**63:
        return path
    return None


def depth(value: Any, limit: int, level: int = 1) -> int:
    """How deep a JSON value nests (dicts and lists), counted no further than one past `limit`."""
    if not isinstance(value, dict | list):
        return level - 1  # a scalar adds no level (it counted as one past the limit, so the cap was limit - 1)
    if level > limit:
        return level
    if isinstance(value, dict):
        return max([level, *(depth(v, limit, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(depth(v, limit, level + 1) for v in value)])
    return level - 1


def one_namespace(flt: Filter, fallback: str | None) -> Filter:
    """`flt` with its namespace settled to one name: its own (a list or a subtree is refused), else `fallback`
    (the request's query parameter or header), else `default`. For lists, counts and delete-by-filter."""
    if isinstance(flt.namespace, list) or (isinstance(flt.namespace, str) and flt.namespace.endswith("/")):
        raise InvalidInput("namespace", "must name one namespace here (several, or a subtree, only in a search)")
    namespace = resolve(flt.namespace, fallback)
    return flt if flt.namespace == namespace else flt.model_copy(update={"namespace": namespace})


def as_of(value: str) -> float:
    """`?as_of=`: an ISO 8601 time (naive = UTC; `Z` allowed) or epoch seconds -> epoch seconds."""
    text = value.strip()
    try:
        ts = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput("as_of", "must be an ISO 8601 time or epoch seconds") from None
        ts = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return check_time(ts, "as_of")


def tags(s: Settings, tags: list[str] | None, field: str) -> list[str]:
    """The tags checked (count, each one's text) with repeats dropped, in their order."""
    if not tags:
        return []
    if len(tags) > s.max_tags:
        raise InvalidInput(field, f"has {len(tags)} tags; the limit is {s.max_tags}")
    out: list[str] = []
    for i, tag in enumerate(tags):
        check_text(tag, f"{field}[{i}]", s.max_tag_chars)
        if tag not in out:
            out.append(tag)
    return out


def metadata(s: Settings, metadata: dict[str, Any] | None, field: str) -> dict[str, Any]:
    """Metadata that stores and reads back: depth, size as JSON, no NUL, integers within 64 bits."""
    if not metadata:
        return {}
    if depth(metadata, s.max_metadata_depth) > s.max_metadata_depth:
        raise InvalidInput(field, f"is nested deeper than {s.max_metadata_depth} levels")
    try:
        encoded = json.dumps(metadata, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidInput(field, f"is not storable JSON ({exc})") from exc
    if len(encoded) > s.max_metadata_bytes:
        raise InvalidInput(field, f"is {len(encoded)} bytes as JSON; the limit is {s.max_metadata_bytes}")
    if "\\u0000" in encoded.decode("utf-8"):
        raise InvalidInput(field, "must not contain NUL characters")
    wide = wide_int(metadata, field)
    if wide is not None:
        # Stored fine, but no JSON response could carry it (orjson, like most clients, stops at 64 bits):
        # the record would answer 500 on every read and break every search that returned it.
        raise InvalidInput(wide, "integers must fit in 64 bits")
    return metadata


def expiry(ttl: float | None, expires_at: Any, now: float, field: str) -> float | None:
    """When a record expires (epoch seconds) from `ttl_seconds` (from `now`) or `expires_at`; None: never."""
    if ttl is not None:
        if not math.isfinite(ttl) or ttl <= 0:
            raise InvalidInput(f"{field}ttl_seconds", "must be a positive number of seconds")
        return check_time(now + ttl, f"{field}ttl_seconds")
    if expires_at is not None:
        ts = to_epoch(expires_at, f"{field}expires_at")
        if ts is None or not math.isfinite(ts):
            raise InvalidInput(f"{field}expires_at", "must be a finite time")
        return check_time(ts, f"{field}expires_at")
    return None


def record(s: Settings, item: MemoryIn, now: float, field: str = "", namespace: str | None = None) -> NewRecord:
    """A validated record; its namespace is the item's own, else `namespace` (the request's), else default."""
    ns = resolve(item.namespace, namespace, field=f"{field}namespace")
    check_text(item.content, f"{field}content", s.max_content_chars)
    if item.id is not None:
        check_text(item.id, f"{field}id", s.max_id_chars)
    if item.key is not None:
        check_text(item.key, f"{field}key", s.max_key_chars)
    key = derive_key(item.content, item.key)
    if key is not None and len(key) > s.max_key_chars:
        raise InvalidInput(f"{field}key", f"is longer than {s.max_key_chars} characters")
    return NewRecord(
        id=item.id or str(uuid.uuid4()),
        content=item.content,
        tags=tags(s, item.tags, f"{field}tags"),
        metadata=metadata(s, item.metadata, f"{field}metadata"),
        importance=item.importance or "medium",
        key=key,
        key_parent=key_parent(key),
        expires_at=expiry(item.ttl_seconds, item.expires_at, now, field),
        vector=None,
        now=now,
        fence=fence(s, item, field),
        namespace=ns,
        occurred_at=occurred(item.occurred_at, f"{field}occurred_at"),
    )


def occurred(value: Any, field: str) -> float | None:
    """`occurred_at` as given (ISO 8601 or epoch) -> epoch seconds in whole microseconds; None if absent."""
    ts = to_epoch(value, field)
    if ts is None:
        return None
    if not math.isfinite(ts):
        raise InvalidInput(field, "must be a finite time")
    return round(check_time(ts, field), 6)


def fence(s: Settings, item: MemoryIn, field: str) -> tuple[str, int] | None:
    """The (claim key, fencing token) a write is fenced by, or None."""
    if item.fence is None:
        return None
    check_text(item.fence.key, f"{field}fence.key", s.max_key_chars)
    return item.fence.key, item.fence.token
