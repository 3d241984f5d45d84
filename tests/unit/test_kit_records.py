"""The kit's record formats are defined once (workflow_kit/records.py): the kit's modules and the console read
them from there. Fails when a layout, attribute or event name is written out as a string anywhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import workflow_kit.errors as errors
from memory_spine import namespaces
from workflow_kit import records

ROOT = Path(__file__).resolve().parents[2]
READERS = [
    p
    for p in [*(ROOT / "workflow_kit").rglob("*.py"), *(ROOT / "memory_spine" / "ui").rglob("*.py")]
    if p.name != "records.py" and p != ROOT / "workflow_kit" / "__init__.py"  # (exports a function dedup_key)
]
KEY_PREFIXES = {
    records.CHECKPOINT,
    records.RUN,
    records.CLAIM,
    records.ESCALATION,
    records.DEDUP,
    records.DEDUP_ERROR,
    records.TRACE,
}
NAMES = {v for k, v in vars(records).items() if k.startswith(("ATTR_", "EVENT_")) and isinstance(v, str)}


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_no_module_spells_out_a_record_format() -> None:
    found = []
    for path in READERS:
        for line, text in _strings(ast.parse(path.read_text())):
            if text in NAMES or any(text.startswith(p) for p in KEY_PREFIXES):
                found.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert not found, "spelled out instead of read from workflow_kit.records:\n" + "\n".join(found)


def test_signals_are_the_kits_exceptions() -> None:
    for name in records.SIGNALS:
        cls = getattr(errors, name)
        assert issubclass(cls, BaseException) and cls.__module__ == errors.__name__, name


def test_the_service_and_the_kit_agree_on_the_kit_namespace() -> None:
    assert namespaces.KIT_PREFIX == records.KIT_PREFIX
    assert namespaces.kit_namespace("team-a") == records.KIT_PREFIX + "team-a"


def test_keys_round_trip() -> None:
    assert records.checkpoint_workflow(records.checkpoint_key("pr-42", "review")) == "pr-42"
    assert records.checkpoint_key("w", "s").startswith(records.checkpoint_prefix("w"))
    assert records.run_key("w", "r").startswith(records.run_prefix("w"))
    assert records.escalation_key("w", "e").startswith(records.escalation_prefix("w"))
