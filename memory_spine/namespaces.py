"""Namespaces: every record lives in one, a path such as `team/agent-7` (default `default`).

A namespace is segments joined by "/"; a segment is 1 to 64 letters, digits, `_ - . :` (not `.` or `..`), the
whole at most 255 characters. A leading `_` marks a system namespace: the workflow kit writes its own records
(checkpoints, dedup, runs, escalations, traces) to `_kit/<the workflow's namespace>` (`kit_namespace`), so user
searches, stats and the console's memory pages show users' memories unless asked otherwise.

A request names its namespace with the body field `"namespace"`, the query parameter `?namespace=` or the
header `X-Memory-Namespace` (a client that sets it once), in that order of precedence; else `default`. A search
may name several, and an entry ending in "/" (`team/`) selects `team` and everything under it (`Selector`).
Ids, exact keys and claims are unique per namespace: a record is addressed by (namespace, id).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidInput

DEFAULT = "default"
HEADER = "X-Memory-Namespace"
KIT_PREFIX = "_kit/"
MAX_CHARS = 255
MAX_SEGMENT = 64
MAX_SELECTED = 100  # entries one search may name
_SEGMENT = re.compile(r"[A-Za-z0-9_\-.:]{1,64}")

__all__ = ["DEFAULT", "HEADER", "KIT_PREFIX", "Selector", "kit_namespace", "resolve", "selector", "validate"]


def validate(value: object, field: str = "namespace") -> str:
    """`value` if it is a well-formed namespace, else InvalidInput (422) naming `field`."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string such as 'default' or 'team/agent-7'")
    if not value:
        raise InvalidInput(field, "must not be empty (leave it out for 'default')")
    if len(value) > MAX_CHARS:
        raise InvalidInput(field, f"is {len(value)} characters long; the limit is {MAX_CHARS}")
    for segment in value.split("/"):
        if not segment:
            raise InvalidInput(field, f"{_show(value)} has an empty segment (no leading, trailing or double '/')")
        if segment in (".", ".."):
            raise InvalidInput(field, f"{_show(value)} has a '{segment}' segment")
        if len(segment) > MAX_SEGMENT:
            raise InvalidInput(field, f"has a segment of {len(segment)} characters; the limit is {MAX_SEGMENT}")
        if not _SEGMENT.fullmatch(segment):
            raise InvalidInput(
                field, f"{_show(value)}: segments hold only letters, digits and _ - . : (separated by '/')"
            )
    return value


def _show(value: str) -> str:
    return repr(value[:80]) if value.isprintable() else "the value"


def kit_namespace(namespace: str = DEFAULT) -> str:
    """Where the kit keeps its own records for workflows in `namespace`: `_kit/<namespace>`."""
    return KIT_PREFIX + validate(namespace)


def resolve(*given: str | None, field: str = "namespace") -> str:
    """The first namespace given (body, then query, then header), validated; `default` when none is."""
    for value in given:
        if value is not None:
            return validate(value, field)
    return DEFAULT


@dataclass(frozen=True)
class Selector:
    """Which namespaces a search reads: exact `names`, and `prefixes` ("team/": everything under `team`).

    A prefix entry `team/` selects `team` itself too (it is added to `names`).
    """

    names: tuple[str, ...]
    prefixes: tuple[str, ...] = ()

    def matches(self, namespace: str) -> bool:
        return namespace in self.names or any(namespace.startswith(p) for p in self.prefixes)

    @property
    def single(self) -> str | None:
        """The one namespace selected, when exactly one is named and no subtree."""
        return self.names[0] if len(self.names) == 1 and not self.prefixes else None

    def covers(self, present: Iterable[str]) -> bool:
        """True when every namespace in `present` is selected (then the selection filters nothing out)."""
        return all(self.matches(ns) for ns in present)


def selector(value: str | list[str] | tuple[str, ...] | None, field: str = "namespace") -> Selector:
    """A search's `namespace` (a name, `team/` for a subtree, or a list of those) -> its `Selector`."""
    if value is None:
        return Selector((DEFAULT,))
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise InvalidInput(field, "must name at least one namespace")
    if len(items) > MAX_SELECTED:
        raise InvalidInput(field, f"names {len(items)} namespaces; the limit is {MAX_SELECTED}")
    names: list[str] = []
    prefixes: list[str] = []
    for i, item in enumerate(items):
        at = field if isinstance(value, str) else f"{field}[{i}]"
        if isinstance(item, str) and item.endswith("/") and len(item) > 1:
            base = validate(item[:-1], at)
            names.append(base)
            prefixes.append(base + "/")
        else:
            names.append(validate(item, at))
    return Selector(tuple(dict.fromkeys(names)), tuple(dict.fromkeys(prefixes)))
