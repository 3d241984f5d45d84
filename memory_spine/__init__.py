"""memory-spine: a local memory service for AI-agent workflows.

SQLite holds the truth (records, tags, exact keys, vectors), an hnswlib index is a derived cache, and
all-MiniLM-L6-v2 (through ONNX Runtime) turns text into vectors. `MemoryService` is the core, usable
in-process; `memory_spine.api.create_app` puts HTTP in front of it; `memory-spine serve` runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["MemoryService", "Settings", "MemorySpineError", "__version__"]

if TYPE_CHECKING:
    from .config import Settings
    from .errors import MemorySpineError
    from .service import MemoryService


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import memory_spine` (and the CLI's --help) stays instant.
    if name == "MemoryService":
        from .service import MemoryService

        return MemoryService
    if name == "Settings":
        from .config import Settings

        return Settings
    if name == "MemorySpineError":
        from .errors import MemorySpineError

        return MemorySpineError
    raise AttributeError(name)
