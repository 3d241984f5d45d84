"""Run a README section's Python examples as a user would paste them: each block in a fresh interpreter, against a
given service (MEMORY_SPINE_URL), checking that every `print(...)  # expected` line prints exactly `expected`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
_EXPECTED = re.compile(r"^\s*print\(.*\)  # (.*)$")


def section_blocks(heading: str) -> list[str]:
    """The ```python blocks of the README section starting at `heading` (up to the next `## `)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return _BLOCK.findall(text[start : end if end >= 0 else None])


def run_block(code: str, url: str, timeout: float = 120) -> list[str]:
    """Run one block; returns the lines it printed, after checking them against the block's comments."""
    env = {**os.environ, "MEMORY_SPINE_URL": url, "PYTHONPATH": str(ROOT)}
    env.pop("MEMORY_SPINE_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-4000:]
    printed = done.stdout.splitlines()
    expected = [m.group(1) for line in code.splitlines() if (m := _EXPECTED.match(line))]
    assert printed == expected, (printed, expected)
    return printed
