"""Export and import of memories as JSON lines (`memory-spine export` / `memory-spine import`).

The file: a header line, then one memory per line.

    {"memory_spine_export": 1, "model": "all-MiniLM-L6-v2", "dim": 384, "vectors": true, "exported_at": "..."}
    {"id": "...", "content": "...", "tags": [...], "metadata": {...}, "importance": "medium", "key": null,
     "created_at": "2026-11-24T06:10:00.123456Z", "updated_at": "...", "expires_at": null,
     "occurred_at": "...", "vector": "<base64>"}

`vector` (only with `--vectors`) is the stored vector as base64 of float32 little-endian. Importing keeps ids,
tags, metadata, importance, keys and timestamps; vectors are used only when the header names the same model
and dimension as the importing service's embedder, otherwise the content is embedded again. Ids already
present are skipped, so an interrupted import simply runs again. A hand-written file may leave out the header
and any field but `content`; a line without an `id` gets one derived from its text, which keeps re-runs
idempotent.

This module reads and writes files; the writes themselves are `MemoryService.restore` and `MemoryService.dump`.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from pydantic import ValidationError

from .errors import InvalidInput
from .models import MemoryRestore
from .namespaces import validate
from .storage.sqlite import iso

HEADER_KEY = "memory_spine_export"
FORMAT_VERSION = 1
_ID_NAMESPACE = uuid.UUID("5b0d8d52-6f7e-4f0e-9d6c-2f4b8a1c9e37")
_BATCH_FIELD = re.compile(r"^records\[(\d+)\]\.?")


def export_jsonl(service: Any, out: TextIO, *, vectors: bool, namespace: str | None = None) -> int:
    """Write every live memory of `service` (of one namespace, if given) to `out` as JSON lines, after a header;
    each record names its `namespace`. Returns how many."""
    if namespace is not None:
        validate(namespace)
    header = {
        HEADER_KEY: FORMAT_VERSION,
        "model": service.embedder.model,
        "dim": service.embedder.dim,
        "vectors": vectors,
        "exported_at": iso(time.time()),
    }
    out.write(json.dumps(header) + "\n")
    n = 0
    for row in service.dump(vectors=vectors, namespace=namespace):
        if vectors:
            row["vector"] = base64.b64encode(row["vector"]).decode("ascii")
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
    return n


def import_jsonl(
    service: Any, path: Path, *, batch_size: int = 256, progress: bool = True, namespace: str | None = None
) -> dict[str, int]:
    """Load a JSON-lines file into `service`, `batch_size` records per transaction. Each record goes to the
    namespace it names, else to `namespace`, else to `default`.

    Returns {"imported", "skipped" (ids already present), "embedded", "expired" (not written)}.

    Raises:
        InvalidInput: a line is not a memory; the field names the line. Batches before it stay imported,
            so fixing the line and running again finishes the job.
    """
    if batch_size < 1:
        raise InvalidInput("batch_size", "must be at least 1")
    path = check_import_file(path)
    report = {"imported": 0, "skipped": 0, "embedded": 0, "expired": 0}
    header: dict[str, Any] | None = None
    batch: list[tuple[int, dict[str, Any]]] = []
    total = _count_lines(path)
    # A backend that indexes vectors as it stores them (PostgreSQL) loads a large file first, indexes after.
    with service.storage.bulk(total), _progress(total, progress) as bar:
        for lineno, obj in _read(path):
            if HEADER_KEY in obj:
                header = obj
                continue
            batch.append((lineno, obj))
            if len(batch) >= batch_size:
                _flush(service, batch, header, report, namespace)
                bar.update(len(batch))
                batch = []
        if batch:
            _flush(service, batch, header, report, namespace)
            bar.update(len(batch))
    return report


def check_import_file(path: Path) -> Path:
    """`path` if it is a readable file; else InvalidInput naming it (checked before anything loads)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InvalidInput(str(path), "no such file")
    if not path.is_file():
        raise InvalidInput(str(path), "is not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise InvalidInput(str(path), f"cannot be read ({exc.strerror or exc})") from exc
    return path


def _read(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # Bytes, decoded line by line: a line that is not UTF-8 is named by its number, not met as a traceback.
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"line {lineno}", f"is not UTF-8 text (byte {exc.start + 1})") from exc
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"line {lineno}", f"is not JSON ({exc.msg} at column {exc.colno})") from exc
            except RecursionError as exc:
                raise InvalidInput(f"line {lineno}", "is nested too deeply to read") from exc
            if not isinstance(obj, dict):
                raise InvalidInput(f"line {lineno}", "must be a JSON object")
            yield lineno, obj


def _count_lines(path: Path) -> int:
    """Records in the file (non-blank lines but the header): the progress bar's total, for its ETA."""
    n = 0
    with path.open("rb") as f:
        for line in f:
            if line.strip() and HEADER_KEY.encode() not in line[:64]:
                n += 1
    return n


def _vector(obj: dict[str, Any], header: dict[str, Any] | None, service: Any, lineno: int) -> np.ndarray | None:
    raw = obj.pop("vector", None)
    if raw is None or header is None:
        return None
    if header.get("model") != service.embedder.model or header.get("dim") != service.embedder.dim:
        return None  # another model's vectors mean nothing here: embed again
    try:
        vec = np.frombuffer(base64.b64decode(raw, validate=True), dtype="<f4")
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"line {lineno}.vector", "is not base64 of float32 values") from exc
    if vec.shape != (service.embedder.dim,):
        raise InvalidInput(f"line {lineno}.vector", f"holds {vec.size} floats; the model makes {service.embedder.dim}")
    return vec.astype(np.float32)


def _flush(
    service: Any,
    batch: list[tuple[int, dict[str, Any]]],
    header: dict[str, Any] | None,
    report: dict[str, int],
    namespace: str | None = None,
) -> None:
    items: list[MemoryRestore] = []
    vectors: list[np.ndarray | None] = []
    for lineno, obj in batch:
        vectors.append(_vector(obj, header, service, lineno))
        try:
            if "id" not in obj:
                canonical = json.dumps(obj, sort_keys=True, ensure_ascii=False)
                obj["id"] = str(uuid.uuid5(_ID_NAMESPACE, canonical))
            if namespace is not None and obj.get("namespace") is None:
                obj["namespace"] = namespace
            items.append(MemoryRestore(**obj))
        except RecursionError as exc:
            raise InvalidInput(f"line {lineno}", "is nested too deeply to store") from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ()))
            raise InvalidInput(f"line {lineno}.{where}" if where else f"line {lineno}", err.get("msg", "")) from exc
    try:
        result = service.restore(items, vectors)
    except RecursionError as exc:
        raise InvalidInput(f"lines {batch[0][0]}-{batch[-1][0]}", "hold a value nested too deeply to store") from exc
    except InvalidInput as exc:
        match = _BATCH_FIELD.match(exc.field or "")
        if match is None:
            raise
        lineno = batch[int(match.group(1))][0]
        rest = exc.field[match.end() :] if exc.field else ""
        raise InvalidInput(f"line {lineno}.{rest}" if rest else f"line {lineno}", exc.problem) from exc
    report["imported"] += len(result["ids"])
    report["skipped"] += result["skipped"]
    report["expired"] += result["expired"]
    report["embedded"] += result["embedded"]


class _Line:
    """A minimal progress line on stderr (rate and ETA), for when tqdm is not installed."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()
        self._shown = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._shown >= 0.5 or self.done >= self.total):
            self._shown = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            sys.stderr.write(
                f"\rimport: {self.done}/{self.total} records, {rate:,.0f}/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}"
            )
            sys.stderr.flush()

    def __enter__(self) -> _Line:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")


def _progress(total: int, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return _Line(total, enabled)
    return tqdm(total=total, disable=not enabled, unit="rec", desc="import", file=sys.stderr, smoothing=0.1)
