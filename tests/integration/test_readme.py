"""Every ```python block of README.md runs as a user would paste it: in a fresh interpreter, against a real
`memory-spine serve` (MEMORY_SPINE_URL), each `print(...)  # expected` line printing exactly `expected`.

A block opts out with a first line `# readme-test: skip (why)`; the reason is required, so a skipped block
says where its code is run instead. Blocks are run in README order; one test per block, named by its line.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.readme_examples import ROOT, run_block

pytestmark = pytest.mark.integration

_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
_SKIP = re.compile(r"# readme-test: skip \((.+)\)")


def blocks() -> list[tuple[int, str]]:
    text = (ROOT / "README.md").read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def test_skips_say_why():
    for line, code in blocks():
        first = code.splitlines()[0] if code else ""
        if "readme-test" in first:
            assert _SKIP.fullmatch(first.strip()), f"README.md:{line}: a skip must give its reason in ( )"


@pytest.mark.parametrize(("line", "code"), blocks(), ids=[f"README.md:{line}" for line, _ in blocks()])
def test_readme_block_runs_as_pasted(module_server, line, code):
    skip = _SKIP.fullmatch(code.splitlines()[0].strip()) if code else None
    if skip:
        pytest.skip(skip.group(1))
    run_block(code, module_server.url)
