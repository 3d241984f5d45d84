"""The hnswlib index as a derived cache: catch-up, rebuild from stored vectors, deletes, growth, recall."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memory_spine.index import INDEX_FILE, MARKER_FILE, IndexParams, VectorIndex
from memory_spine.storage.base import NewRecord
from memory_spine.storage.sqlite import SQLiteStorage

DIM = 16


def _records(start: int, n: int, rng: np.random.Generator) -> list[NewRecord]:
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [
        NewRecord(
            id=f"r{start + i}",
            content=f"c{start + i}",
            tags=[],
            metadata={},
            importance="medium",
            key=None,
            key_parent=None,
            expires_at=None,
            vector=vecs[i],
            now=1.0,
        )
        for i in range(n)
    ]


class Harness:
    """Storage plus an index kept in step the way MemoryService does it."""

    def __init__(self, path, **params):
        self.path = path
        self.storage = SQLiteStorage(path / "m.db", DIM)
        self.index = VectorIndex(path, IndexParams(dim=DIM, m=16, ef_construction=100, ef_search=64, **params))
        self.opened = self.index.open(self.storage)

    def put(self, recs):
        def after(results):
            self.index.add(np.array([r.seq for r in results]), np.vstack([x.vector for x in recs]))
            self.index.version = self.storage.max_vector_version()

        return self.storage.put(recs, on_commit=after)

    def delete(self, ids):
        def after(seqs):
            self.index.remove(seqs)
            self.index.version = self.storage.max_vector_version()

        return self.storage.delete(ids, on_commit=after)

    def close(self, save=True):
        if save:
            self.index.save(self.storage)
        self.storage.close()


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_catch_up_applies_writes_made_after_the_save(tmp_path, rng):
    h = Harness(tmp_path)
    assert h.opened["how"] == "created"
    h.put(_records(0, 50, rng))
    h.index.save(h.storage)
    # writes after the save, then a crash (no save): storage has them, the file does not
    h.put(_records(50, 20, rng))
    deleted = h.delete(["r3", "r60"])
    h.close(save=False)

    h2 = Harness(tmp_path)
    assert h2.opened["how"] == "loaded"
    # 19 rows added since the save still live (r60 came and went) + 2 tombstones
    assert h2.opened["caught_up"] == 21
    assert len(h2.index) == 68
    live = {int(s) for s in h2.storage.live_seqs()}
    assert h2.index.labels() == live
    assert not set(deleted) & h2.index.labels()
    h2.close()


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbled", "marker_missing", "params_changed"])
def test_damaged_index_is_rebuilt_from_stored_vectors(tmp_path, rng, damage):
    h = Harness(tmp_path)
    h.put(_records(0, 200, rng))
    h.close()
    index_file, marker = tmp_path / INDEX_FILE, tmp_path / MARKER_FILE
    if damage == "missing":
        index_file.unlink()
    elif damage == "truncated":
        index_file.write_bytes(index_file.read_bytes()[:1000])
    elif damage == "garbled":
        data = bytearray(index_file.read_bytes())
        data[5000:5100] = b"\xff" * 100
        index_file.write_bytes(bytes(data))
    elif damage == "marker_missing":
        marker.unlink()
    else:
        m = json.loads(marker.read_text())
        m["m"] = 48
        marker.write_text(json.dumps(m))

    h2 = Harness(tmp_path)
    assert h2.opened["how"] == "rebuilt"
    assert h2.opened["reason"]
    assert len(h2.index) == 200
    q = h2.storage.get("r17", 0)
    labels, sims = h2.index.query(
        np.frombuffer(
            h2.storage._reader().execute("SELECT vector FROM memories WHERE id='r17'").fetchone()[0], dtype=np.float32
        ),
        1,
    )
    assert labels[0] == q["seq"] and sims[0] == pytest.approx(1.0, abs=1e-5)
    h2.close()


def test_grows_past_its_initial_capacity_and_replaces_updated_vectors(tmp_path, rng):
    h = Harness(tmp_path)
    h.put(_records(0, 3000, rng))  # initial capacity is 1024
    assert len(h.index) == 3000
    assert h.index.info()["capacity"] >= 3000
    # re-putting the same ids with new vectors does not grow the count
    h.put(_records(0, 10, np.random.default_rng(99)))
    assert len(h.index) == 3000
    h.close()


def test_recall_against_exact_search(tmp_path):
    # clustered data is closer to real text than uniform noise
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((50, DIM))
    data = centers[rng.integers(0, 50, 5000)] + 0.3 * rng.standard_normal((5000, DIM))
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)
    h = Harness(tmp_path)
    h.index.params.ef_search = 128
    recs = _records(0, 5000, rng)
    for r, v in zip(recs, data, strict=True):
        r.vector = v
    results = h.put(recs)
    seqs = np.array([r.seq for r in results])
    queries = data[rng.integers(0, 5000, 100)] + 0.05 * rng.standard_normal((100, DIM)).astype(np.float32)
    hits = 0
    for q in queries:
        q = q / np.linalg.norm(q)
        exact = set(seqs[np.argsort(-(data @ q))[:10]].tolist())
        labels, _ = h.index.query(q.astype(np.float32), 10)
        hits += len(exact & set(labels.tolist()))
    assert hits / 1000 >= 0.98
    h.close()


def test_side_list_keeps_the_isolated_past_the_crossover_and_across_a_restart(tmp_path, rng):
    # A tight bulk plus three vectors on no topic, written after it: past exact_below the side list must hold the
    # three (and little else), survive a save and reload, and a search near each must return it first.
    centre = rng.standard_normal(DIM)
    bulk = centre + 0.1 * rng.standard_normal((600, DIM))
    odd = rng.standard_normal((3, DIM)) * 3
    h = Harness(tmp_path, exact_below=200)
    recs = _records(0, 603, rng)
    for r, v in zip(recs, np.vstack([bulk, odd]), strict=True):
        r.vector = (v / np.linalg.norm(v)).astype(np.float32)
    assert h.index.exact_all
    seqs = [r.seq for r in h.put(recs[:150])]  # under the crossover: the side list is the whole store
    assert h.index.exact_all and len(h.index.side) == 150
    seqs += [r.seq for r in h.put(recs[150:])]
    odd_seqs = set(seqs[600:])
    assert not h.index.exact_all and odd_seqs <= set(h.index.side.labels()) and len(h.index.side) < 30
    h.close()
    h = Harness(tmp_path, exact_below=200)
    assert h.opened["how"] == "loaded" and not h.index.exact_all and odd_seqs <= set(h.index.side.labels())
    for s, r in zip(seqs[600:], recs[600:], strict=True):
        assert h.index.query(r.vector, 5)[0][0] == s
    h.delete([recs[600].id])
    assert seqs[600] not in h.index.side
    h.close()
