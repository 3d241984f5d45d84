"""storage/__init__.py: the backend a URL names, its redaction, and lazy imports (SQLite never loads psycopg)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from memory_spine.errors import InvalidInput
from memory_spine.storage import backend_of, redact

from ..conftest import ROOT


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        (None, "sqlite"),
        ("", "sqlite"),
        ("postgresql://u:p@db:5432/memory", "postgresql"),
        ("postgres://db/memory", "postgresql"),
        ("postgresql+psycopg://db/memory", "postgresql"),
    ],
)
def test_backend_of(url, backend):
    assert backend_of(url) == backend


def test_other_schemes_are_refused_naming_the_field():
    with pytest.raises(InvalidInput) as err:
        backend_of("mysql://db/x")
    assert err.value.field == "database"


def test_redact_hides_the_password_only():
    assert redact("postgresql://memory:s3cret@db:5432/memory") == "postgresql://memory:***@db:5432/memory"
    assert redact("postgresql://db/memory") == "postgresql://db/memory"
    assert redact(None) is None


def test_the_embedded_default_never_imports_the_postgres_driver(tmp_path):
    code = (
        "import sys; from memory_spine.config import Settings; from memory_spine.service import MemoryService;"
        f" MemoryService.open(Settings(data_dir={str(tmp_path)!r}, embedder='fake')).close();"
        " print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'memory_spine.storage.p'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
