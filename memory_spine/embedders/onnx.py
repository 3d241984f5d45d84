"""OnnxEmbedder: all-MiniLM-L6-v2 on onnxruntime, the default and fast embedder.

Needs only onnxruntime, tokenizers and numpy at run time. The graph ships with the package
(``minilm.onnx``, 26 KB, written by :mod:`memory_spine.embedders.graph`); its weights are external data that
name ``model.safetensors``. A copy of the graph is placed beside the weights (see
:func:`~memory_spine.embedders.weights.runnable_dir`) and loaded by path, so ONNX Runtime maps the weights where
they lie: no export step, no torch, no second copy of the weights on disk or in memory. Tokenisation is set up
to match sentence-transformers exactly, so the vectors agree with
:class:`~memory_spine.embedders.sbert.SentenceTransformerEmbedder` (cosine ~1.0).
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .base import MODEL_DIM, MODEL_NAME, check_texts, empty
from .clip import Clipper
from .graph import GRAPH_PATH, INPUT_NAMES, OUTPUT_NAME, WEIGHTS_NAME
from .weights import model_dir, runnable_dir

#: Most texts per session.run.
DEFAULT_BATCH_SIZE = 64
#: Most token slots (texts x the longest one's tokens) per session.run. Texts are sorted by length first and
#: cut into runs under this budget, so many short texts share a run while long ones run in small groups that
#: pad little. Measured on 2 cores: 512 slots embedded 256 passages (~200 tokens) at 123 texts/s against
#: 110/s in runs of 32 texts, and 256 queries (~28 tokens) at 272/s against 226/s; 4096 slots did worse on
#: both (106/s, 194/s), as did one text per run (94/s, 176/s).
DEFAULT_TOKEN_BUDGET = 512


def _max_seq_length(mdir: Path) -> int:
    # sentence-transformers truncates at this, not at the tokenizer's own limits.
    with open(mdir / "sentence_bert_config.json", encoding="utf-8") as f:
        return int(json.load(f)["max_seq_length"])


class OnnxEmbedder:
    """all-MiniLM-L6-v2 through onnxruntime.

    ``embed`` may be called from several threads at once: ``InferenceSession.run`` is documented as
    thread-safe, and the tokenizer is configured once in ``__init__`` and only read afterwards.
    ``close`` must not race with ``embed``.
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
    ) -> None:
        self.name = f"onnx:{MODEL_NAME}"
        self.model = MODEL_NAME
        self.dim = MODEL_DIM
        self.batch_size = max(1, batch_size)
        self.token_budget = max(1, token_budget)
        mdir = model_dir(cache_dir)
        self.path = mdir / WEIGHTS_NAME
        tok = Tokenizer.from_file(str(mdir / "tokenizer.json"))
        # TRAP: the shipped tokenizer.json pads every input to a fixed 128 and truncates at 128, while
        # sentence-transformers truncates at max_seq_length (256) and pads to the batch's longest.
        # Truncate like the reference and pad ourselves (in _run_chunk), after sorting by length.
        max_tokens = _max_seq_length(mdir)
        tok.enable_truncation(max_length=max_tokens)
        tok.no_padding()
        self._tok = tok
        # Long texts are cut to what the model reads before tokenizing them (tokenizing all of 100k characters
        # to keep 256 tokens cost GBs in a batch); the tokens kept are the same (see clip.py).
        self._clip = Clipper(tok, max_tokens)

        opts = ort.SessionOptions()
        # Default 2 threads: the service shares the machine with its callers, and beyond 2 threads a
        # single short query gets little faster on this small model.
        opts.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No CPU memory arena: the arena keeps the peak of the largest batch for the life of the process
        # (measured: 713 MiB RSS after one 256-text batch with it, 250 MiB without), and query latency
        # measured the same either way (interleaved A/B, 400 queries each).
        opts.enable_cpu_mem_arena = False
        # No busy-waiting between runs: on 2 cores ONNX Runtime's spinning workers starved the event loop and
        # the clients (measured over HTTP at 100k: p50 27-34 ms with spinning, 11-16 ms without).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        run_dir = runnable_dir(cache_dir)
        self._weights: mmap.mmap | None = None
        if run_dir is not None:
            # By path, beside the weights: ONNX Runtime maps the file, only the pages in use stay resident.
            self._session: ort.InferenceSession | None = ort.InferenceSession(
                str(run_dir / GRAPH_PATH.name), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        else:
            # Handed over in memory under the name the graph refers to (ONNX Runtime copies the weights then).
            with open(self.path, "rb") as f:
                self._weights = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            buffer = np.frombuffer(self._weights, dtype=np.uint8)
            opts.add_external_initializers_from_files_in_memory([WEIGHTS_NAME], [buffer], [len(buffer)])
            self._session = ort.InferenceSession(
                GRAPH_PATH.read_bytes(), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        self._input_names = {i.name for i in self._session.get_inputs()}
        missing = set(INPUT_NAMES) - self._input_names
        if missing:
            raise RuntimeError(f"{GRAPH_PATH} lacks inputs {sorted(missing)}")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        session = self._session
        if session is None:
            raise RuntimeError("OnnxEmbedder is closed")
        if not items:
            return empty(self.dim)
        encodings = self._tok.encode_batch(self._clip(items))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        # Stable sort, so equal-length texts keep their relative order (results do not depend on it,
        # but it keeps runs reproducible).
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for idx in self._runs(lengths, order):
            out[idx] = self._run_chunk(session, [encodings[i] for i in idx])
        return out

    def _runs(self, lengths: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
        """Cut texts sorted by length into runs of at most `batch_size` texts and `token_budget` slots.

        A run pads to its longest (last) member, so it takes texts while (texts + 1) x the next length
        stays within the budget; a text longer than the budget runs alone.
        """
        runs = []
        start, n = 0, len(order)
        while start < n:
            end = start + 1
            while (
                end < n
                and end - start < self.batch_size
                and (end - start + 1) * int(lengths[order[end]]) <= self.token_budget
            ):
                end += 1
            runs.append(order[start:end])
            start = end
        return runs

    def _run_chunk(self, session: ort.InferenceSession, encodings: list) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        # Pad id 0 is [PAD]; masked positions are excluded from attention and from the mean pooling.
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = 1
            types[row, :n] = e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        # The graph already mean-pools and L2-normalises.
        return session.run([OUTPUT_NAME], {k: v for k, v in feed.items() if k in self._input_names})[0]

    def close(self) -> None:
        self._session = None

    def __repr__(self) -> str:
        return f"OnnxEmbedder(path={str(self.path)!r})"
