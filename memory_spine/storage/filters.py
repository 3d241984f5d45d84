"""Filters: what the conditions of a `Filter` are, decided once, for the delete guard and both SQL dialects.

`parse_filter(flt)` turns a request's `Filter` into `Conditions`: every field checked (a 422 naming the field for
anything storage could not use), times as epoch seconds, the `where` language as a tree of `Group` / `Cmp`
nodes, and the key prefix with its upper bound. Everything downstream reads `Conditions`, never the raw model:
the DELETE guard asks `bool(conditions)`, and the SQLite and PostgreSQL emitters (storage/sqlite.py,
storage/postgres.py) walk the same tree, so what counts as a condition cannot differ between them.

The empty-value rule: an empty list or object (`"tags": []`, `"where": {}`, `"importance": []`) is no
condition, exactly as if the field were left out; an empty string (`"key": ""`, `"key_prefix": ""`) or an
empty tag is refused, since no stored key or tag is empty and "match everything" is never what it meant.
A DELETE whose filter has no condition is refused, naming the empty field given (or `filter`).

`Limits` bounds the size of what a request may ask for (nesting of `$and`/`$or`, conditions, values), so a
filter's SQL stays small; the service passes the configured ones, the emitters none (they only re-read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import InvalidInput
from ..models import Filter
from ..namespaces import Selector, selector

FIELDS = tuple(Filter.model_fields)  # tags, tags_all, tags_none, where, created_after, ..., key, key_prefix
GROUPS = ("$and", "$or")
RANGES = ("$gt", "$gte", "$lt", "$lte")
OPERATORS = ("$eq", "$ne", *RANGES, "$in", "$nin")
# Times are rendered with datetime, which spans the years 1 to 9999.
FIRST_TIME, LAST_TIME = -62135596800.0, 253402300799.0
_HARD_DEPTH = 64  # even without limits: deeper than this would only exhaust Python's stack


@dataclass(frozen=True)
class Limits:
    """How large a filter may be. Each violation is a 422 naming the field."""

    depth: int = 8  # nesting of $and / $or
    terms: int = 256  # field conditions and groups in one `where`
    values: int = 1024  # values over all tag lists and $in / $nin lists of one filter

    @classmethod
    def of(cls, settings: Any) -> Limits:
        """The limits configured in `Settings` (max_filter_depth, max_filter_terms, max_filter_values)."""
        return cls(settings.max_filter_depth, settings.max_filter_terms, settings.max_filter_values)


@dataclass(frozen=True)
class Cmp:
    """One comparison: metadata field `parts` (dotted `name` split) `op` `value` (a tuple for $in / $nin)."""

    name: str
    parts: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True)
class Group:
    """All (`$and`) or any (`$or`) of `items`."""

    op: str
    items: tuple[Cmp | Group, ...]


Node = Cmp | Group


@dataclass(frozen=True)
class Conditions:
    """A filter's conditions, checked. False when there are none (then `empty` names the empty fields given)."""

    tags: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()  # deduplicated, sorted
    tags_none: tuple[str, ...] = ()
    where: Group | None = None
    created_after: float | None = None
    created_before: float | None = None
    occurred_after: float | None = None
    occurred_before: float | None = None
    importance: tuple[str, ...] = ()
    key: str | None = None
    key_prefix: str | None = None
    key_upper: str | None = None  # the least string above every string starting with key_prefix; None: none
    # The namespaces read (None: every namespace, for admin paths only; the service always names them). Not a
    # condition for the DELETE guard: deleting a whole namespace still needs a condition.
    namespaces: Selector | None = None
    empty: tuple[str, ...] = field(default=(), compare=False)

    def __bool__(self) -> bool:
        return bool(
            self.tags
            or self.tags_all
            or self.tags_none
            or self.where is not None
            or self.created_after is not None
            or self.created_before is not None
            or self.occurred_after is not None
            or self.occurred_before is not None
            or self.importance
            or self.key is not None
            or self.key_prefix is not None
        )

    @property
    def restricts(self) -> bool:
        """True when anything (a condition or a namespace selection) narrows the records read."""
        return bool(self) or self.namespaces is not None

    def namespace_sql(self, mark: str) -> tuple[str | None, list[Any]]:
        """The namespace selection as SQL on `m.namespace` with `mark` placeholders, or (None, []) for all.

        A subtree `team/` is a range up to its upper bound, so it reads the namespace index like exact names.
        """
        sel = self.namespaces
        if sel is None:
            return None, []
        parts: list[str] = []
        params: list[Any] = []
        if len(sel.names) == 1:
            parts.append(f"m.namespace = {mark}")
        else:
            parts.append(f"m.namespace IN ({','.join([mark] * len(sel.names))})")
        params.extend(sel.names)
        for prefix in sel.prefixes:
            parts.append(f"(m.namespace >= {mark} AND m.namespace < {mark})")
            params.extend((prefix, prefix_upper(prefix)))
        return (parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"), params

    def comparisons(self) -> list[tuple[str, str, Any]]:
        """The plain column comparisons, the same in every dialect: (column of `memories m`, operator, value).

        Times are epoch seconds (a dialect converts them); the key prefix is a range up to its upper bound.
        """
        out: list[tuple[str, str, Any]] = []
        if self.created_after is not None:
            out.append(("m.created_at", ">", self.created_after))
        if self.created_before is not None:
            out.append(("m.created_at", "<", self.created_before))
        if self.occurred_after is not None:
            out.append(("m.occurred_at", ">", self.occurred_after))
        if self.occurred_before is not None:
            out.append(("m.occurred_at", "<", self.occurred_before))
        if self.key is not None:
            out.append(("m.key", "=", self.key))
        if self.key_prefix is not None:
            out.append(("m.key", ">=", self.key_prefix))
            if self.key_upper is not None:
                out.append(("m.key", "<", self.key_upper))
        return out


NONE = Conditions()


def prefix_upper(prefix: str) -> str | None:
    """The least string greater than every string that starts with `prefix` (code point order), or None.

    Trailing U+10FFFF cannot be incremented: drop them and increment the character before (a prefix of only
    U+10FFFF has no upper bound). Surrogates are skipped, since no stored text can hold one (UTF-8 cannot).
    """
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    nxt = ord(stem[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:
        nxt = 0xE000
    return stem[:-1] + chr(nxt)


def check_text(value: str, field: str, *, allow_blank: bool = True) -> None:
    """Refuse text storage cannot hold: NUL, lone surrogates (and, unless allowed, blank text)."""
    if not allow_blank and not value.strip():
        raise InvalidInput(field, "must not be empty")
    if "\x00" in value:
        raise InvalidInput(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(field, "is not valid Unicode (a lone surrogate?)") from exc


def check_time(ts: float, field: str) -> float:
    """`ts` if it is a finite time between the years 1 and 9999, else InvalidInput naming `field`."""
    if not (math.isfinite(ts) and FIRST_TIME <= ts <= LAST_TIME):
        raise InvalidInput(field, "must give a time between the years 1 and 9999")
    return ts


def to_epoch(value: float | datetime | None, field: str) -> float | None:
    """ISO datetime (naive = UTC) or epoch seconds -> epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, "must be an ISO 8601 time or epoch seconds")
    return float(value)


class _Budget:
    """Counts terms and values while parsing, against `Limits` (or nothing when there are none)."""

    def __init__(self, limits: Limits | None) -> None:
        self.limits = limits
        self.terms = 0
        self.values = 0

    def term(self, path: str) -> None:
        self.terms += 1
        if self.limits is not None and self.terms > self.limits.terms:
            raise InvalidInput(path, f"has more than {self.limits.terms} conditions; the limit is {self.limits.terms}")

    def value(self, path: str, n: int) -> None:
        self.values += n
        if self.limits is not None and self.values > self.limits.values:
            raise InvalidInput(
                path, f"makes the filter hold more than {self.limits.values} values; the limit is {self.limits.values}"
            )


def parse_filter(flt: Filter | Conditions | None, limits: Limits | None = None) -> Conditions:
    """`flt` -> its `Conditions`, or InvalidInput naming the first field storage could not use.

    Conditions already parsed pass through. A `namespace` left out (None) selects every namespace: the
    service always fills it in (`default` when the request named none) before storage sees a filter.
    """
    if flt is None:
        return NONE
    if isinstance(flt, Conditions):
        return flt
    budget = _Budget(limits)
    empty: list[str] = []
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("tags", "tags_all", "tags_none"):
        values = getattr(flt, name)
        if values is None:
            lists[name] = ()
            continue
        if not values:
            empty.append(name)
        budget.value(name, len(values))
        for i, tag in enumerate(values):
            check_text(tag, f"{name}[{i}]", allow_blank=False)
        lists[name] = tuple(dict.fromkeys(values))
    importance: tuple[str, ...] = ()
    if isinstance(flt.importance, str):
        importance = (flt.importance,)
    elif flt.importance is not None:
        if not flt.importance:
            empty.append("importance")
        importance = tuple(dict.fromkeys(flt.importance))
    for name in ("key", "key_prefix"):
        value = getattr(flt, name)
        if value is not None:
            if value == "":
                raise InvalidInput(name, "must not be empty (leave it out for no condition)")
            check_text(value, name)
    times = {}
    for name in ("created_after", "created_before", "occurred_after", "occurred_before"):
        ts = to_epoch(getattr(flt, name), name)
        times[name] = None if ts is None else check_time(ts, name)
    where = None
    if flt.where is not None:
        if not isinstance(flt.where, dict):
            raise InvalidInput("where", "must be an object")
        if not flt.where:
            empty.append("where")
        else:
            where = _parse_where(flt.where, "where", 0, budget)
    return Conditions(
        tags=lists["tags"],
        tags_all=tuple(sorted(lists["tags_all"])),
        tags_none=lists["tags_none"],
        where=where,
        created_after=times["created_after"],
        created_before=times["created_before"],
        occurred_after=times["occurred_after"],
        occurred_before=times["occurred_before"],
        importance=importance,
        key=flt.key,
        key_prefix=flt.key_prefix,
        key_upper=prefix_upper(flt.key_prefix) if flt.key_prefix is not None else None,
        namespaces=selector(flt.namespace) if getattr(flt, "namespace", None) is not None else None,
        empty=tuple(empty),
    )


def filter_is_empty(flt: Filter | None) -> bool:
    """True when `flt` has no condition (see the empty-value rule above)."""
    return not parse_filter(flt)


def _parse_where(node: Any, path: str, depth: int, budget: _Budget) -> Group:
    if not isinstance(node, dict) or not node:
        raise InvalidInput(path, "must be a non-empty object")
    items: list[Node] = []
    for name, cond in node.items():
        if name in GROUPS:
            sub = f"{path}.{name}"
            if not isinstance(cond, list) or not cond:
                raise InvalidInput(sub, "must be a non-empty list of conditions")
            limit = budget.limits.depth if budget.limits is not None else _HARD_DEPTH
            if depth + 1 > limit:
                raise InvalidInput(sub, f"nests $and / $or deeper than {limit} levels")
            budget.term(sub)
            group = tuple(_parse_where(c, f"{sub}[{i}]", depth + 1, budget) for i, c in enumerate(cond))
            items.append(Group(name, group))
            continue
        _check_name(name, path)
        parts = tuple(name.split("."))
        sub = f"{path}.{name}"
        explicit = isinstance(cond, dict) and cond and all(isinstance(k, str) and k.startswith("$") for k in cond)
        ops = cond if explicit else {"$eq": cond}
        for op, value in ops.items():
            at = f"{sub}.{op}" if explicit else sub
            budget.term(at)
            if op in ("$in", "$nin"):
                if not isinstance(value, list) or not value:
                    raise InvalidInput(at, "must be a non-empty list")
                budget.value(at, len(value))
                for i, v in enumerate(value):
                    _check_value(v, f"{at}[{i}]", sub)
                items.append(Cmp(name, parts, op, tuple(value)))
            elif op in OPERATORS:
                _check_value(value, at, sub)
                items.append(Cmp(name, parts, op, value))
            else:
                raise InvalidInput(at, "unknown operator; use $eq $ne $in $nin $gt $gte $lt $lte")
    return Group("$and", tuple(items))


def _check_name(name: str, path: str) -> None:
    if name.startswith("$"):
        raise InvalidInput(f"{path}.{name}", "unknown operator; use $and or $or at this level")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(path, "field names must be valid Unicode") from exc
    if "\x00" in name:
        raise InvalidInput(path, "field names must not contain NUL characters")
    if '"' in name:
        raise InvalidInput(f"{path}.{name}", "field names cannot contain double quotes")
    if not name or any(not part for part in name.split(".")):
        raise InvalidInput(f"{path}.{name}", "field names must be non-empty (dots separate nested fields)")


def _check_value(value: Any, path: str, field: str) -> None:
    """A comparison value: a JSON scalar (else InvalidInput naming `field`) that storage can bind (naming `path`)."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        check_text(value, path)
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise InvalidInput(path, "integers must fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(path, "numbers must be finite")
    else:
        raise InvalidInput(field, "values must be strings, numbers, booleans or null")
