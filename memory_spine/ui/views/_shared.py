"""What the console's workflow and trace pages share: the kit's namespace, reads scoped to it, and the stored
trace read back as a tree of spans. The record formats themselves are workflow_kit/records.py's."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from workflow_kit import records as kit

from ...errors import NotFound
from ...models import Filter
from ...namespaces import DEFAULT, kit_namespace
from ...service import MemoryService

KIT_DEFAULT = kit_namespace(DEFAULT)


class Scoped:
    """The service's reads the workflow views make, all in one namespace (the kit's)."""

    def __init__(self, svc: MemoryService | Scoped, namespace: str) -> None:
        self.svc = svc.svc if isinstance(svc, Scoped) else svc
        self.namespace = namespace

    def list(self, flt: Filter, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        return self.svc.list(flt, limit=limit, cursor=cursor, namespace=self.namespace)

    def list_keys(self, prefix: str, limit: int = 100) -> dict[str, Any]:
        return self.svc.list_keys(prefix, limit, namespace=self.namespace)

    def key_groups(self, prefix: str, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        return self.svc.key_groups(prefix, limit=limit, offset=offset, namespace=self.namespace)

    def get_key(self, key: str) -> dict[str, Any]:
        return self.svc.get_key(key, namespace=self.namespace)

    def get_claim(self, key: str) -> dict[str, Any]:
        return self.svc.get_claim(key, namespace=self.namespace)


def workflow_id_of(record: dict[str, Any]) -> str:
    meta = record.get("metadata") or {}
    wf = meta.get("workflow_id")
    if isinstance(wf, str) and wf:
        return wf
    key = record.get("key") or ""
    return kit.checkpoint_workflow(key)


def live_claim(svc: MemoryService, workflow_id: str) -> dict[str, Any] | None:
    try:
        return svc.get_claim(kit.claim_key(workflow_id))
    except NotFound:
        return None


def traces_of(svc: MemoryService, workflow_id: str, limit: int) -> list[dict[str, Any]]:
    flt = Filter(key_prefix=kit.TRACE, where={"workflow_id": workflow_id})
    return svc.list(flt, limit=limit)["results"]


def last_run(svc: MemoryService, workflow_id: str) -> dict[str, Any] | None:
    found = svc.list_keys(kit.run_prefix(workflow_id), 1)["results"]
    return found[0] if found else None


def root_error(trace_record: dict[str, Any]) -> str | None:
    try:
        doc = json.loads(trace_record["content"])
    except (TypeError, ValueError):
        return None
    for span in doc.get("spans") or []:
        if not span.get("parent_id"):
            return span.get("error")
    return None


def load_trace(record: dict[str, Any]) -> dict[str, Any] | None:
    try:
        doc = json.loads(record["content"])
    except (TypeError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("spans"), list) else None


def children(spans: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    ids = {s.get("span_id") for s in spans}
    kids: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        parent = s.get("parent_id")
        kids[parent if parent in ids else None].append(s)
    for group in kids.values():
        group.sort(key=lambda s: s.get("start") or 0)
    return kids


def subtree(span: dict[str, Any], kids: dict[str | None, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out, todo = [], [span]
    while todo:
        s = todo.pop()
        out.append(s)
        todo.extend(kids.get(s.get("span_id"), []))
    return out
