"""`memory-spine check [--repair]` for the embedded default (a SQLite data dir and its hnswlib index).

Without ``--repair`` nothing is written: the database, every row and the index file are read and each fault is
reported (one line per fault naming the row or file, plus a JSON report). With ``--repair`` the faults that can
be mended are mended, in this order, and each repair is reported:

- a stored vector of the wrong length: the row's content is embedded again (the content is the truth, the
  vector is derived from it);
- metadata that is not a JSON object: kept verbatim as ``{"unparsed_metadata": "<the old text>"}``, so that
  ``export`` and the API can read the row and nothing is lost;
- an index that is missing, unreadable or does not hold exactly the live rows: rebuilt from the stored vectors
  and saved; a save that fails (say ``index.hnsw`` is a directory) is a fault, not a success.

PostgreSQL keeps no derived files; ``check`` there asks the database (:meth:`MemoryService.check`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .index import INDEX_FILE, VectorIndex

if TYPE_CHECKING:
    from .storage.sqlite import SQLiteStorage

#: Most faults of one kind listed by id; the rest are counted.
LIST_LIMIT = 50


@dataclass
class CheckResult:
    """What `check` found (and did): `faults` are one-line messages; none left means healthy."""

    report: dict[str, Any]
    faults: list[str] = field(default_factory=list)


def check_data_dir(storage: SQLiteStorage, settings: Any, *, repair: bool, embedder: Any = None) -> CheckResult:
    """Check (and with `repair`, mend) the open SQLite `storage` of `settings.data_dir` and its index.

    `embedder` is needed only to repair vectors (it is created on demand from `settings` if not given).
    """
    result = CheckResult(report={"data_dir": str(Path(settings.data_dir).expanduser().absolute())})
    problems = storage.check()
    result.report["database"] = "ok" if not problems else problems
    result.faults += [f"database: {p}" for p in problems]

    vectors, metadata = storage.malformed_rows()
    result.report["bad_vectors"] = [{"id": i, "bytes": n} for _, i, n in vectors[:LIST_LIMIT]]
    result.report["bad_metadata"] = [i for _, i, _ in metadata[:LIST_LIMIT]]
    if repair and vectors:
        _reembed(storage, settings, vectors, embedder)
        result.report["reembedded"] = len(vectors)
    else:
        result.faults += [
            f"row {i}: the stored vector holds {n / 4:g} floats, the model makes {storage.dim}"
            " (check --repair embeds its content again)"
            for _, i, n in vectors
        ]
    if repair and metadata:
        storage.wrap_metadata([s for s, _, _ in metadata])
        result.report["metadata_wrapped"] = len(metadata)
    else:
        result.faults += [
            f'row {i}: metadata is not a JSON object (check --repair keeps it as {{"unparsed_metadata": ...}})'
            for _, i, _ in metadata
        ]

    data_dir = Path(settings.data_dir).expanduser()
    index = VectorIndex.for_settings(settings, storage.dim)
    index_fault = _index_fault(index, storage, result.report, skip_vectors=bool(vectors) and not repair)
    if index_fault is None:
        result.report["index"] = "ok"
    elif repair:
        try:
            index.rebuild(storage)
            index.save(storage)
        except (OSError, ValueError, RuntimeError) as exc:
            result.report["index"] = f"could not be repaired: {exc}"
            result.faults.append(f"index {data_dir / INDEX_FILE}: {index_fault}; rebuilding it failed: {exc}")
        else:
            result.report["index"] = f"rebuilt ({index_fault})"
            result.report["repaired"] = True
    else:
        result.report["index"] = index_fault
        result.faults.append(f"index {data_dir / INDEX_FILE}: {index_fault} (check --repair rebuilds it)")
    return result


def _index_fault(
    index: VectorIndex, storage: SQLiteStorage, report: dict[str, Any], *, skip_vectors: bool
) -> str | None:
    """Why the index on disk is not right for the database, or None. Reads only; writes nothing."""
    path = index.dir / INDEX_FILE
    if path.is_dir():
        return "is a directory, not a file"
    try:
        index.load()
    except Exception as exc:  # the same reasons that make the service rebuild it at start
        return f"unreadable ({exc})"
    if index.version > storage.max_vector_version():
        return f"covers storage version {index.version}, but the database ends at {storage.max_vector_version()}"
    if not skip_vectors:
        try:
            index.catch_up(storage)  # in memory only: what the service would apply at start
        except Exception as exc:
            return f"cannot catch up with the database ({exc})"
    live = {int(s) for s in storage.live_seqs()}
    labels = index.labels()
    missing, extra = live - labels, labels - live
    report.update(
        rows=len(live), index_elements=len(labels), missing_from_index=len(missing), extra_in_index=len(extra)
    )
    if missing or extra:
        return f"holds {len(labels)} vectors for {len(live)} rows ({len(missing)} missing, {len(extra)} extra)"
    return None


def _reembed(storage: SQLiteStorage, settings: Any, rows: list[tuple[int, str, int]], embedder: Any) -> None:
    if embedder is None:
        from .embedders import create_embedder

        embedder = create_embedder(settings.embedder, cache_dir=settings.model_cache)
    for start in range(0, len(rows), 64):
        seqs = [s for s, _, _ in rows[start : start + 64]]
        contents = storage.contents_by_seq(seqs)
        vecs = np.asarray(embedder.embed([contents[s] for s in seqs]), dtype=np.float32)
        storage.replace_vectors([(s, vecs[i].tobytes()) for i, s in enumerate(seqs)])


def check_json(result: CheckResult) -> str:
    """The report as printed on stdout."""
    return json.dumps(result.report, indent=2)
