"""Scoped tokens: what a bearer token may reach (namespaces) and do (rights), and how a request's token is resolved.

A scoped token is `mst_` + 43 characters of URL-safe base64 (32 random bytes). The database keeps only its
SHA-256 (hex), never the token: a 256-bit random secret cannot be guessed from its hash, so a plain hash is as
safe as a keyed or slow one here (those defend low-entropy passwords) and needs no server-side key that every
replica would have to share. Lookups are by hash (an index), so no comparison of secrets happens in Python.

- `Scope`: namespaces (exact names, or `team/` for `team` and everything under it), rights (`read`, `write`,
  `admin`), expiry. `Scope.FULL` is the admin token's (`serve --token`): everything. A scope on a namespace
  also covers the kit's system namespace of it (`_kit/<namespace>`), so a workflow run with a scoped token can
  keep its checkpoints and traces.
- `TokenResolver`: bearer -> Scope, through a bounded cache (by hash) whose entries are re-read from the
  database after `ttl` seconds: a revocation made elsewhere (the CLI, another replica) is seen within `ttl`;
  one made through this process's `/tokens` route at once. Expiry is checked on every request.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from .errors import Forbidden, InvalidInput, Unauthorized

RIGHTS = ("read", "write", "admin")
PREFIX = "mst_"
KIT_PREFIX = "_kit/"  # the kit's system namespace of a workflow namespace ns is _kit/ns (namespaces.kit_namespace)
_SEGMENT = re.compile(r"[A-Za-z0-9_\-.:]{1,64}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def new_token() -> tuple[str, str]:
    """A new (id, token): the id is public (lists, revoke), the token is shown once and stored only hashed."""
    token = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return secrets.token_hex(6), token


def hash_token(token: str) -> str:
    """The SHA-256 (hex) of a token: what the database stores and is searched by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_duration(value: str | float | int, field: str = "expires") -> float:
    """Seconds in `30d`, `12h`, `90m`, `45s`, `2w` or a plain number of seconds; InvalidInput naming `field`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.fullmatch(str(value).strip().lower())
        if m is None:
            raise InvalidInput(field, f"{value!r} is not a duration such as 30d, 12h, 90m or 3600 (seconds)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not 0 < seconds <= 100 * 365 * 86400:
        raise InvalidInput(field, "must be more than 0 seconds and at most 100 years")
    return seconds


def parse_rights(values: Iterable[str], field: str = "rights") -> tuple[str, ...]:
    """Rights in a fixed order, without repeats; InvalidInput naming `field` for an unknown one or none."""
    given = {v.strip().lower() for v in values if v.strip()}
    unknown = given - set(RIGHTS)
    if unknown:
        raise InvalidInput(field, f"{sorted(unknown)} are not rights; use read, write and/or admin")
    if not given:
        raise InvalidInput(field, "give at least one of read, write, admin")
    return tuple(r for r in RIGHTS if r in given)


def parse_scope_namespace(value: str, field: str = "namespaces") -> str:
    """A scope entry: an exact namespace (`team/agent-7`) or a subtree (`team/`); InvalidInput naming `field`."""
    if not isinstance(value, str):
        raise InvalidInput(field, "each namespace must be a string")
    body = value[:-1] if value.endswith("/") else value
    parts = body.split("/")
    if not body or len(value) > 255 or any(p in (".", "..") or not _SEGMENT.fullmatch(p) for p in parts):
        raise InvalidInput(
            field,
            f"{value[:80]!r} is not a namespace: segments of 1-64 letters, digits, _ - . : joined by '/' (a"
            " trailing '/' scopes the whole subtree), no '.' or '..' segment, at most 255 characters",
        )
    return value


def _covers(entry: str, namespace: str) -> bool:
    if entry.endswith("/"):
        return namespace == entry[:-1] or namespace.startswith(entry)
    return namespace == entry


@dataclass(frozen=True)
class Scope:
    """What one request may reach: `namespaces` None means every namespace (the admin token)."""

    namespaces: tuple[str, ...] | None
    rights: frozenset[str]
    expires_at: float | None = None
    token_id: str | None = None
    name: str | None = None

    FULL: ClassVar[Scope]  # the admin token's: every namespace, every right

    @property
    def is_full(self) -> bool:
        return self.namespaces is None and self.rights >= set(RIGHTS)

    def covers(self, namespace: str) -> bool:
        """Whether `namespace` (exact, or a subtree selector ending in '/') lies inside this scope."""
        if self.namespaces is None:
            return True
        names = [namespace]
        if namespace.startswith(KIT_PREFIX):
            names.append(namespace[len(KIT_PREFIX) :])
        for ns in names:
            if ns.endswith("/"):  # a subtree: inside a scoped subtree that contains it
                if any(e.endswith("/") and (ns + "x").startswith(e) for e in self.namespaces):
                    return True
            elif any(_covers(e, ns) for e in self.namespaces):
                return True
        return False

    def check_right(self, right: str) -> None:
        """Raise ForbiddenRight unless this scope holds `right` ('any' needs none)."""
        if right != "any" and right not in self.rights:
            raise ForbiddenRight(right, self.rights)

    def check(self, namespaces: str | Sequence[str], right: str) -> None:
        """Raise ForbiddenRight / ForbiddenNamespace (403) unless this scope may do `right` in every namespace."""
        self.check_right(right)
        for ns in [namespaces] if isinstance(namespaces, str) else namespaces:
            if not self.covers(ns):
                raise ForbiddenNamespace(ns, self.namespaces or ())

    def check_every_namespace(self) -> None:
        """Raise ForbiddenNamespace unless this scope reaches every namespace (a route answering for all at once)."""
        if self.namespaces is not None:
            raise ForbiddenNamespace(
                "*", self.namespaces, "this route answers for every namespace at once: only the admin token reaches it"
            )

    def within(self, namespaces: Sequence[str], rights: Iterable[str]) -> bool:
        """Whether a token of these namespaces and rights grants nothing this scope lacks (no escalation)."""
        return set(rights) <= self.rights and all(self.covers(ns) for ns in namespaces)

    def describe(self) -> dict[str, Any]:
        """What `GET /whoami` answers: namespaces (None: all), rights, expiry (ISO), the token's id and name."""
        from .storage.sqlite import iso

        return {
            "token_id": self.token_id,
            "name": self.name,
            "namespaces": None if self.namespaces is None else list(self.namespaces),
            "rights": [r for r in RIGHTS if r in self.rights],
            "expires_at": iso(self.expires_at),
            "admin_token": self.token_id is None,
        }


Scope.FULL = Scope(namespaces=None, rights=frozenset(RIGHTS))


class ForbiddenNamespace(Forbidden):
    """The token's scope does not reach the namespace the request names (403)."""

    type = "forbidden_namespace"

    def __init__(self, namespace: str, allowed: Sequence[str], message: str | None = None) -> None:
        super().__init__(
            message
            or f"this token does not reach the namespace {namespace!r} (it reaches {', '.join(allowed) or 'none'})",
            field="namespace",
        )
        self.detail = {"namespace": namespace}


class ForbiddenRight(Forbidden):
    """The token lacks the right (read, write, admin) the route needs (403)."""

    type = "forbidden_right"

    def __init__(self, right: str, held: Iterable[str]) -> None:
        held_text = ", ".join(r for r in RIGHTS if r in set(held)) or "none"
        super().__init__(f"this needs the {right!r} right; the token has {held_text}", field="rights")
        self.detail = {"right": right}


class TokenStore(Protocol):
    """Where tokens live (storage/tokens.py): rows are dicts with id, name, namespaces, rights, created_at,
    expires_at, revoked_at, last_used_at (epoch seconds or None)."""

    def create(self, row: dict[str, Any], token_hash: str) -> None: ...
    def by_hash(self, token_hash: str) -> dict[str, Any] | None: ...
    def list(self) -> list[dict[str, Any]]: ...
    def revoke(self, token_id: str, now: float) -> dict[str, Any] | None: ...
    def touch(self, token_id: str, now: float) -> None: ...


def make_row(
    namespaces: Sequence[str],
    rights: Iterable[str],
    *,
    name: str | None = None,
    expires_in: float | None = None,
    now: float | None = None,
) -> tuple[dict[str, Any], str]:
    """A new token's row (validated) and the token itself, to show once."""
    if not namespaces:
        raise InvalidInput("namespaces", "give at least one namespace (team/ for a subtree)")
    spaces = list(dict.fromkeys(parse_scope_namespace(ns) for ns in namespaces))
    if name is not None and (len(name) > 200 or any(ord(c) < 32 for c in name)):
        raise InvalidInput("name", "must be at most 200 characters, without control characters")
    now = time.time() if now is None else now
    token_id, token = new_token()
    row = {
        "id": token_id,
        "name": name,
        "namespaces": spaces,
        "rights": list(parse_rights(rights)),
        "created_at": now,
        "expires_at": None if expires_in is None else now + expires_in,
        "revoked_at": None,
        "last_used_at": None,
    }
    return row, token


def public(row: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A token's row as lists and the API show it (never the token, which the row does not hold): ISO times and
    a `status` of active, expired or revoked."""
    from .storage.sqlite import iso

    now = time.time() if now is None else now
    status = "active"
    if row["revoked_at"] is not None:
        status = "revoked"
    elif row["expires_at"] is not None and now >= row["expires_at"]:
        status = "expired"
    times = ("created_at", "expires_at", "revoked_at", "last_used_at")
    return {**row, **{t: iso(row[t]) for t in times}, "status": status}


def scope_of(row: dict[str, Any]) -> Scope:
    return Scope(
        namespaces=tuple(row["namespaces"]),
        rights=frozenset(row["rights"]),
        expires_at=row.get("expires_at"),
        token_id=row["id"],
        name=row.get("name"),
    )


class TokenResolver:
    """Bearer token -> Scope, with a bounded cache by hash; `clock` injectable for tests."""

    def __init__(
        self,
        store: TokenStore,
        *,
        ttl: float = 5.0,
        size: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, token_hash: str) -> dict[str, Any] | None:
        """The cached row of a hash if still fresh (no I/O: safe on the event loop), else None."""
        with self._lock:
            hit = self._cache.get(token_hash)
            if hit is None or self.clock() - hit[0] >= self.ttl:
                return None
            self._cache.move_to_end(token_hash)
            return hit[1]

    def load(self, token_hash: str) -> dict[str, Any] | None:
        """Read a hash's row from the store (I/O), cache it, and note the token as used (at most once per ttl)."""
        row = self.store.by_hash(token_hash)
        now = self.clock()
        if row is None:
            return None
        with self._lock:
            self._cache[token_hash] = (now, row)
            self._cache.move_to_end(token_hash)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        if row["revoked_at"] is None:
            try:
                self.store.touch(row["id"], now)
            except Exception:  # last_used_at is a convenience: a busy or read-only database must not refuse a request
                pass
        return row

    def scope(self, row: dict[str, Any] | None) -> Scope:
        """The Scope of a row, or Unauthorized for none (unknown), a revoked or an expired token."""
        if row is None:
            raise Unauthorized("the bearer token is missing or wrong")
        if row["revoked_at"] is not None:
            raise Unauthorized("this token was revoked")
        if row["expires_at"] is not None and self.clock() >= row["expires_at"]:
            raise Unauthorized("this token has expired")
        return scope_of(row)

    def resolve(self, token: str) -> Scope:
        """Blocking resolve (tests, tools): cache, else store."""
        h = hash_token(token)
        row = self.cached(h)
        return self.scope(row if row is not None else self.load(h))

    def forget(self, token_id: str | None = None) -> None:
        """Drop cached rows (of one token, or all): a revocation in this process is seen by the next request."""
        with self._lock:
            if token_id is None:
                self._cache.clear()
                return
            for h in [h for h, (_, row) in self._cache.items() if row["id"] == token_id]:
                del self._cache[h]
