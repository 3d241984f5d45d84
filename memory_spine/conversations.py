"""Conversations as records: each turn one record, plus derived records that give a turn its context.

`records(conv)` turns a `ConversationIn` (models.py) into the records `POST /conversations` writes:

- one **turn** record per turn: content `"<speaker>: <text>"` (plus `[shares <caption>]` per caption),
  metadata `{conversation, session, turn, speaker, position}` (`turn` = the given id, else the turn's position
  in its session), `occurred_at` = the session's date;
- one **window** record per turn: the turn with its neighbours (WINDOW turns either side) in one text, so a
  question about a short turn ("Yes, last Tuesday!") can match the exchange around it;
- one **session** record per session: the session's date and every turn.

Derived records (window, session) carry `derived` and `turns` (the ids of the turn records they cover) in their
metadata. Search never returns them: their evidence is credited to their turns (`units`, and
storage/search.py's `fuse_units`). Record ids are derived from the conversation, session and turn ids, so
ingesting the same conversation again rewrites the same records. The service writes and deletes them
(service.py); this module only builds and reads them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidInput
from .models import ConversationIn, MemoryIn

__all__ = ["DERIVED_KINDS", "RRF_K", "WINDOW", "is_derived", "records", "turn_content", "units", "units_for"]

WINDOW = 1  # neighbours on each side of a turn in its window record
DERIVED_KINDS = ("window", "session")
# How much a derived record's rank counts for each turn it covers, relative to the turn's own rank, and how
# much more a turn's own hit counts when the query names its speaker; and the fusion's k. Chosen on LoCoMo's
# tune split (`python -m benchmarks.conversations --sweep`, benchmarks/results/conversations-sweep-tune.json):
# top-5 recall 0.657 here, 0.664 at the best of 144 points on a flat surface; k=60 gives 0.640, min-max score
# fusion 0.648-0.653, windows for their centre turn only (k=60) 0.608, the turn records alone 0.530; the
# speaker weight adds 0.004 recall and 0.019 MRR.
CENTER, NEIGHBOUR, SESSION, SPEAKER = 1.0, 0.5, 0.15, 0.5
_WORDS = re.compile(r"\w+")
RRF_K = 10


def turn_content(speaker: str, text: str, captions: Sequence[str] | None) -> str:
    return f"{speaker}: {text}" + "".join(f" [shares {c}]" for c in captions or ())


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def records(conv: ConversationIn, max_chars: int) -> list[MemoryIn]:
    """The turn, window and session records of `conv`, in that order per session.

    Raises:
        InvalidInput: naming the first bad field (`sessions[2].turns[5].text`): an empty id, text or speaker, a
        repeated session or turn id, or a conversation without turns. Nothing is written before this passes.
    """
    _text(conv.id, "id")
    if not conv.sessions:
        raise InvalidInput("sessions", "must hold at least one session")
    cid = conv.id
    out: list[MemoryIn] = []
    session_ids: dict[str, int] = {}
    turn_ids: dict[str, str] = {}
    tags = list(conv.tags or [])
    for si, session in enumerate(conv.sessions):
        sfield = f"sessions[{si}]"
        sid = session.id if session.id is not None else str(si + 1)
        _text(sid, f"{sfield}.id")
        if sid in session_ids:
            raise InvalidInput(f"{sfield}.id", f"repeats the id of sessions[{session_ids[sid]}]")
        session_ids[sid] = si
        if not session.turns:
            raise InvalidInput(f"{sfield}.turns", "must hold at least one turn")
        when = _epoch(session.date)
        turns: list[tuple[str, str]] = []  # (record id, content)
        for ti, turn in enumerate(session.turns):
            tfield = f"{sfield}.turns[{ti}]"
            tid = turn.id if turn.id is not None else f"{sid}:{ti + 1}"
            _text(tid, f"{tfield}.id")
            _text(turn.speaker, f"{tfield}.speaker")
            _text(turn.text, f"{tfield}.text")
            for ci, caption in enumerate(turn.captions or ()):
                _text(caption, f"{tfield}.captions[{ci}]")
            if tid in turn_ids:
                raise InvalidInput(f"{tfield}.id", f"repeats the id of {turn_ids[tid]}")
            turn_ids[tid] = tfield
            rid = f"{cid}#turn:{tid}"
            content = turn_content(turn.speaker, turn.text, turn.captions)
            turns.append((rid, content))
            meta = {
                "conversation": cid,
                "session": sid,
                "turn": tid if turn.id is not None else ti,
                "speaker": turn.speaker,
                "position": ti,
            }
            out.append(MemoryIn(id=rid, content=content[:max_chars], tags=tags, metadata=meta, occurred_at=when))
        for ti in range(len(turns)):
            lo, hi = max(0, ti - WINDOW), min(len(turns), ti + WINDOW + 1)
            text = "\n".join(c for _, c in turns[lo:hi])
            meta = {
                "conversation": cid,
                "session": sid,
                "derived": "window",
                "turns": [r for r, _ in turns[lo:hi]],
                "center": turns[ti][0],
            }
            out.append(
                MemoryIn(
                    id=f"{turns[ti][0]}#window", content=text[:max_chars], tags=tags, metadata=meta, occurred_at=when
                )
            )
        date = f" ({session.date.isoformat() if isinstance(session.date, datetime) else session.date})" if when else ""
        text = f"Session {sid}{date}:\n" + "\n".join(c for _, c in turns)
        meta = {"conversation": cid, "session": sid, "derived": "session", "turns": [r for r, _ in turns]}
        out.append(
            MemoryIn(id=f"{cid}#session:{sid}", content=text[:max_chars], tags=tags, metadata=meta, occurred_at=when)
        )
    return out


def _text(value: str, field: str) -> None:
    if not value or not value.strip():
        raise InvalidInput(field, "must not be empty")


def is_derived(row: dict[str, Any]) -> bool:
    """A window or session record of a conversation (never a search result of its own)."""
    md = row.get("metadata") or {}
    return md.get("derived") in DERIVED_KINDS and "conversation" in md and isinstance(md.get("turns"), list)


def units_for(query: str) -> Callable[[dict[str, Any]], list[tuple[str, float]]]:
    """`units`, with a turn's own hit weighing 1 + SPEAKER when `query` names its speaker ("What did Ann ...")."""
    named: dict[str, bool] = {}
    # Whole words only ("Ann" is not named by "Anne"): the speaker's words as a run of the query's words.
    words = f" {' '.join(_WORDS.findall(query))} "

    def weigh(row: dict[str, Any]) -> list[tuple[str, float]]:
        found = units(row)
        speaker = (row.get("metadata") or {}).get("speaker")
        if not isinstance(speaker, str) or is_derived(row):
            return found
        if speaker not in named:
            named[speaker] = f" {' '.join(_WORDS.findall(speaker))} " in words
        return [(u, w * (1 + SPEAKER)) for u, w in found] if named[speaker] else found

    return weigh


def units(row: dict[str, Any]) -> list[tuple[str, float]]:
    """(turn record id, weight) that a hit on `row` is evidence for: itself for a record that is not derived."""
    if not is_derived(row):
        return [(row["id"], 1.0)]
    md = row["metadata"]
    if md["derived"] == "window":
        return [(t, CENTER if t == md.get("center") else NEIGHBOUR) for t in md["turns"] if isinstance(t, str)]
    return [(t, SESSION) for t in md["turns"] if isinstance(t, str)]
