"""Export / import as JSON lines: a round trip keeps ids, content, tags, metadata, importance, keys, timestamps
and (optionally) vectors; import is batched, resumable, shows progress, and names the line of a bad record."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import pytest

from memory_spine import cli
from memory_spine.config import Settings
from memory_spine.errors import InvalidInput
from memory_spine.models import Filter, MemoryIn, MemoryPatch, SearchQuery
from memory_spine.service import MemoryService
from memory_spine.transfer import export_jsonl, import_jsonl


def settings(path: Path) -> Settings:
    return Settings(data_dir=path, embedder="fake", purge_seconds=3600, index_save_seconds=3600)


@pytest.fixture
def source(tmp_path):
    svc = MemoryService.open(settings(tmp_path / "source"))
    svc.ingest(
        MemoryIn(
            id="rich",
            content="Ünïcode content — with “quotes” and emoji 🧠",
            tags=["a", "b"],
            metadata={"n": 1, "f": 2.5, "s": "x", "b": True, "none": None, "nested": {"list": [1, {"k": "v"}]}},
            importance="critical",
            key="explicit:key:1",
        )
    )
    svc.ingest(MemoryIn(id="ck", content="checkpoint:wf-7:fetch"))
    svc.ingest(MemoryIn(id="ttl", content="expires later", expires_at="2999-01-01T00:00:00Z", tags=["a"]))
    svc.ingest(MemoryIn(id="edited", content="first words"))
    svc.update("edited", MemoryPatch(content="second words", metadata={"v": 2}))
    svc.ingest_batch([MemoryIn(content=f"bulk memory number {i}", tags=["bulk"]) for i in range(40)])
    svc.ingest(MemoryIn(id="dead", content="already expired", expires_at=time.time() - 5))
    yield svc
    svc.close()


def export_text(svc: MemoryService, vectors: bool) -> str:
    buf = io.StringIO()
    export_jsonl(svc, buf, vectors=vectors)
    return buf.getvalue()


def write(tmp_path: Path, text: str, name: str = "export.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()[1:]]


@pytest.fixture
def target(tmp_path):
    svc = MemoryService.open(settings(tmp_path / "target"))
    yield svc
    svc.close()


def test_export_format(source):
    text = export_text(source, vectors=True)
    lines = text.splitlines()
    header = json.loads(lines[0])
    assert header["memory_spine_export"] == 1 and header["model"] == source.embedder.model and header["dim"] == 384
    assert header["vectors"] is True
    rows = records(text)
    assert len(rows) == 44 and "dead" not in {r["id"] for r in rows}, "expired records are not exported"
    rich = next(r for r in rows if r["id"] == "rich")
    assert set(rich) == {
        "id",
        "namespace",
        "content",
        "tags",
        "metadata",
        "importance",
        "key",
        "created_at",
        "updated_at",
        "expires_at",
        "occurred_at",
        "vector",
    }
    import base64

    import numpy as np

    vec = np.frombuffer(base64.b64decode(rich["vector"]), dtype="<f4")
    np.testing.assert_allclose(vec, source.embedder.embed([rich["content"]])[0], atol=1e-6)
    assert "vector" not in records(export_text(source, vectors=False))[0]
    assert [r["id"] for r in rows[:4]] == ["rich", "ck", "ttl", "edited"], "oldest first"


@pytest.mark.parametrize("vectors", [True, False])
def test_round_trip_keeps_everything(source, target, tmp_path, vectors):
    text = export_text(source, vectors=vectors)
    report = import_jsonl(target, write(tmp_path, text), batch_size=7, progress=False)
    assert report == {"imported": 44, "skipped": 0, "embedded": 0 if vectors else 44, "expired": 0}
    again = export_text(target, vectors=vectors)
    assert again.splitlines()[1:] == text.splitlines()[1:], "byte-identical records, timestamps included"
    for id_ in ("rich", "ck", "ttl", "edited"):
        # All but `version`, which counts the writes of each database (an If-Match from one means nothing in another).
        assert {**target.get(id_), "version": None} == {**source.get(id_), "version": None}
    edited = target.get("edited")
    assert edited["created_at"] < edited["updated_at"]
    # Everything derived works on the imported copy: index, FTS, tags, keys, time filters, order.
    assert len(target.index) == 44
    for q in (
        SearchQuery(query="bulk memory number 7", limit=5),
        SearchQuery(query="bulk memory", mode="keyword", limit=5),
        SearchQuery(query="quotes emoji", mode="hybrid", limit=3, tags=["a"]),
        SearchQuery(query="checkpoint:wf-7"),
        SearchQuery(query="words", created_after=source.get("ttl")["created_at"], limit=50),
    ):
        assert target.search(q) == source.search(q)
    assert target.get_key("explicit:key:1")["id"] == "rich"
    assert target.list(Filter(), limit=100) == source.list(Filter(), limit=100)


def test_vectors_of_the_same_model_skip_embedding(source, target, tmp_path, monkeypatch):
    calls = []
    original = target._embed
    monkeypatch.setattr(target, "_embed", lambda texts: calls.append(len(texts)) or original(texts))
    import_jsonl(target, write(tmp_path, export_text(source, vectors=True)), batch_size=10, progress=False)
    assert calls == []


def test_vectors_of_another_model_are_embedded_again(source, target, tmp_path):
    lines = export_text(source, vectors=True).splitlines()
    header = json.loads(lines[0])
    header["model"] = "some-other-model"
    path = write(tmp_path, "\n".join([json.dumps(header), *lines[1:]]) + "\n")
    report = import_jsonl(target, path, batch_size=100, progress=False)
    assert report["imported"] == 44 and report["embedded"] == 44
    assert export_text(target, vectors=True).splitlines()[1:] == lines[1:], "same fake model: same vectors"


def test_import_is_resumable(source, target, tmp_path, monkeypatch):
    path = write(tmp_path, export_text(source, vectors=False))
    original = target.restore
    batches = []

    def interrupted(items, vectors=None):
        if len(batches) == 2:
            raise KeyboardInterrupt  # the user pressed ^C during the third batch
        batches.append(len(items))
        return original(items, vectors)

    monkeypatch.setattr(target, "restore", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_jsonl(target, path, batch_size=10, progress=False)
    assert target.stats()["total_memories"] == 20
    monkeypatch.setattr(target, "restore", original)
    report = import_jsonl(target, path, batch_size=10, progress=False)
    assert report == {"imported": 24, "skipped": 20, "embedded": 24, "expired": 0}
    assert import_jsonl(target, path, batch_size=10, progress=False)["skipped"] == 44
    assert export_text(target, vectors=False).splitlines()[1:] == export_text(source, vectors=False).splitlines()[1:]


def test_existing_ids_are_skipped_not_overwritten(source, target, tmp_path):
    target.ingest(MemoryIn(id="rich", content="the target's own record"))
    report = import_jsonl(target, write(tmp_path, export_text(source, vectors=True)), progress=False)
    assert report["skipped"] == 1 and report["imported"] == 43
    assert target.get("rich")["content"] == "the target's own record"


def test_hand_written_lines(target, tmp_path):
    text = "\n".join(
        [
            json.dumps({"content": "no id, no header"}),
            "",
            json.dumps({"content": "with tags", "tags": ["x"], "created_at": 1_700_000_000}),
            json.dumps({"content": "gone", "expires_at": "2000-01-01T00:00:00Z"}),
            json.dumps({"content": "ttl from now", "ttl_seconds": 3600}),
        ]
    )
    path = write(tmp_path, text)
    assert import_jsonl(target, path, progress=False) == {"imported": 3, "skipped": 0, "embedded": 3, "expired": 1}
    assert import_jsonl(target, path, progress=False)["skipped"] == 3, "ids derived from the line: re-runs skip"
    tagged = target.list(Filter(tags=["x"]))["results"][0]
    assert tagged["created_at"] == "2023-11-14T22:13:20.000000Z" == tagged["updated_at"]


@pytest.mark.parametrize(
    ("bad_line", "field"),
    [
        ("{not json", "line 3"),
        ("[1, 2]", "line 3"),
        (json.dumps({"id": "x", "content": "c", "importance": "urgent"}), "line 3.importance"),
        (json.dumps({"id": "x", "content": "c", "colour": "red"}), "line 3.colour"),
        (json.dumps({"id": "x", "content": ""}), "line 3.content"),
        (json.dumps({"id": "x", "content": "c", "tags": ["t"] * 65}), "line 3.tags"),
        (json.dumps({"id": "x", "content": "c", "vector": "%%%"}), "line 3.vector"),
        (json.dumps({"id": "x", "content": "c", "vector": "AAAA"}), "line 3.vector"),
    ],
)
def test_a_bad_line_is_named_and_earlier_batches_stay(source, target, tmp_path, bad_line, field):
    lines = export_text(source, vectors=True).splitlines()
    path = write(tmp_path, "\n".join([*lines[:2], bad_line, *lines[2:]]) + "\n")
    with pytest.raises(InvalidInput) as err:
        import_jsonl(target, path, batch_size=1, progress=False)
    assert err.value.field == field
    assert target.stats()["total_memories"] == 1, "the batch before the bad line was imported"


def test_progress_bar_on_stderr(source, target, tmp_path, capsys):
    import_jsonl(target, write(tmp_path, export_text(source, vectors=False)), batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "44/44" in err and "rec/s" in err


def test_progress_line_without_tqdm(source, target, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    import_jsonl(target, write(tmp_path, export_text(source, vectors=False)), batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "44/44 records" in err and "/s" in err and "ETA" in err
    import_jsonl(target, write(tmp_path, export_text(source, vectors=False)), batch_size=8, progress=False)
    assert capsys.readouterr().err == ""


def test_cli_export_and_import(source, tmp_path, capsys):
    expected = export_text(source, vectors=True).splitlines()[1:]
    source.close()  # the CLI opens the data dir itself (one process per data dir)
    out = tmp_path / "cli.jsonl"
    src = ["--data-dir", str(tmp_path / "source"), "--embedder", "fake"]
    assert cli.main(["export", *src, "--vectors", "-o", str(out)]) == 0
    assert "exported 44 memories" in capsys.readouterr().err
    dst = ["--data-dir", str(tmp_path / "copy"), "--embedder", "fake"]
    assert cli.main(["import", str(out), *dst, "--quiet", "--batch-size", "16"]) == 0
    assert "imported 44 memories, skipped 0" in capsys.readouterr().err
    assert cli.main(["import", str(out), *dst, "--quiet"]) == 0
    assert "imported 0 memories, skipped 44" in capsys.readouterr().err
    assert cli.main(["export", *dst, "--vectors"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == expected
    bad = write(tmp_path, '{"content": ""}\n', "bad.jsonl")
    assert cli.main(["import", str(bad), *dst, "--quiet"]) == 2
    assert "line 1.content" in capsys.readouterr().err
