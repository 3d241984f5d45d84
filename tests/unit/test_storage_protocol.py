"""The storage seam (storage/base.py) says what callers use, and every backend answers all of it.

- every member of `Storage` is on both backends, methods with the protocol's parameters in its order;
  `VectorSource` on SQLite's storage; `VectorSearch` on the planner and on PostgreSQL's search;
- every `storage.X` the service, planner and index call, and every `planner.X` the service calls, is declared
  on the protocol they are typed with: a new call needs a declaration first;
- no caller probes an ability with getattr/hasattr: abilities are declared members;
- no module of memory_spine imports another module's private name, or reads a private attribute of storage,
  the planner or the index (checkup.py used SQLite's connections and version counter directly).
Static (reads the source and the classes); nothing is opened.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Protocol

import pytest

import memory_spine
from memory_spine.planner import Planner
from memory_spine.storage.base import Storage, VectorSearch, VectorSource
from memory_spine.storage.sqlite import SQLiteStorage

PKG = Path(memory_spine.__file__).parent


def members(proto: type) -> set[str]:
    names: set[str] = set()
    for cls in proto.__mro__:
        if cls in (object, Protocol) or cls.__module__ == "typing":
            continue
        names |= {n for n in vars(cls) if not n.startswith("_") or n == "__len__"}
        names |= {n for n in getattr(cls, "__annotations__", {}) if not n.startswith("_")}
    return names


def backends() -> list[tuple[type, type]]:
    pairs: list[tuple[type, type]] = [(Storage, SQLiteStorage), (VectorSource, SQLiteStorage), (VectorSearch, Planner)]
    try:
        from memory_spine.storage.pg_search import PostgresSearch
        from memory_spine.storage.postgres import PostgresStorage
    except ImportError:  # psycopg not installed: the embedded default alone
        return pairs
    return [*pairs, (Storage, PostgresStorage), (VectorSearch, PostgresSearch)]


def params(fn: object) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]  # type: ignore[arg-type]


@pytest.mark.parametrize(("proto", "impl"), backends(), ids=lambda c: c.__name__)
def test_every_backend_answers_its_whole_protocol(proto, impl):
    problems = []
    for name in sorted(members(proto)):
        declared = inspect.getattr_static(proto, name, None)
        if not hasattr(impl, name) and name not in _instance_attrs(impl):
            problems.append(f"{name}: missing")
        elif inspect.isfunction(declared):
            got = params(getattr(impl, name))
            want = params(declared)
            if got[: len(want)] != want:
                problems.append(f"{name}{tuple(got)}: the protocol says {tuple(want)}")
    assert not problems, f"{impl.__name__} vs {proto.__name__}: {problems}"


def _instance_attrs(cls: type) -> set[str]:
    """Names __init__ assigns on self (instance attributes a class-level hasattr cannot see)."""
    tree = ast.parse(inspect.getsource(cls))
    return {
        t.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }


def _uses(module: str, holder: str) -> set[str]:
    """Attributes read off `holder` (`self.storage`, `storage`, `service.storage`, ...) in a module."""
    tree = ast.parse((PKG / module).read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            v = node.value
            if (isinstance(v, ast.Name) and v.id == holder) or (isinstance(v, ast.Attribute) and v.attr == holder):
                out.add(node.attr)
    return out


@pytest.mark.parametrize(
    ("module", "holder", "proto"),
    [
        ("service.py", "storage", Storage),
        ("transfer.py", "storage", Storage),
        ("metrics.py", "storage", Storage),
        ("planner.py", "storage", VectorSource),
        ("index.py", "storage", VectorSource),
        ("service.py", "planner", VectorSearch),
    ],
)
def test_callers_use_only_what_the_protocol_declares(module, holder, proto):
    undeclared = _uses(module, holder) - members(proto) - {"base", "budget", "filters", "search", "sqlite"}
    assert not undeclared, f"{module} uses {sorted(undeclared)} of {holder}, undeclared on {proto.__name__}"


@pytest.mark.parametrize("module", ["service.py", "transfer.py", "planner.py", "index.py", "metrics.py"])
def test_no_ability_is_probed(module):
    tree = ast.parse((PKG / module).read_text())
    probes = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr")
        and any(word in ast.unparse(node.args[0]) for word in ("storage", "planner", "search"))
    ]
    assert not probes, f"{module} probes {probes}: declare the ability on the protocol instead"


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    found.append(f"{path.relative_to(PKG)}: {node.module} {private}")
    assert not found, found


def test_no_module_reads_private_attributes_of_storage_search_or_index():
    found = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            v = node.value
            owner = v.id if isinstance(v, ast.Name) else v.attr if isinstance(v, ast.Attribute) else None
            if owner in ("storage", "planner", "index", "search"):
                found.append(f"{path.relative_to(PKG)}:{node.lineno} {ast.unparse(node)}")
    assert not found, found
