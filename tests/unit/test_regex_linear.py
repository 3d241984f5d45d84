"""Every regular expression in memory_spine/ and workflow_kit/ runs in linear time on adversarial input.

The regexes are found by reading the code (an AST scan, so a new one is checked the day it is written):
`re.compile/match/search/fullmatch/findall/finditer/sub/subn/split(<literal>, ...)`, the methods called on a
module-level `NAME = re.compile(<literal>)`, and `pattern="<literal>"` keywords (FastAPI / pydantic). A regex
whose pattern is not a literal fails the scan: it cannot be checked, so it needs a look and an entry here.

Each is then run on pumping strings made from its own pattern (its literal characters and words, one member
of each class it uses, and a few separators), at 2k and 20k characters, through the same method the code uses.
A backtracking regex shows itself as a time that grows with the square of the length: 20k characters take
over 20x the time of 2k, and more than 50 ms (`checkpoint:\\S+:\\S+` took 23 s on 99k colons; a linear regex
takes well under a millisecond on 20k).
"""

from __future__ import annotations

import ast
import itertools
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("memory_spine", "workflow_kit")
RE_FUNCS = {"compile", "match", "search", "fullmatch", "findall", "finditer", "sub", "subn", "split"}
METHODS = ("search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split")
SMALL, LARGE = 2_000, 20_000


def _is_re(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "re"


def scan() -> list[tuple[str, str, tuple[str, ...]]]:
    """(where, pattern, methods used) for every regex in the packages."""
    found: list[tuple[str, str, tuple[str, ...]]] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            rel = path.relative_to(ROOT)
            compiled: dict[str, tuple[str, int]] = {}
            used: dict[str, set[str]] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                    call = node.value
                    if isinstance(call.func, ast.Attribute) and _is_re(call.func.value) and call.func.attr == "compile":
                        for target in node.targets:
                            if isinstance(target, ast.Name) and call.args and isinstance(call.args[0], ast.Constant):
                                compiled[target.id] = (call.args[0].value, node.lineno)
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                if isinstance(func, ast.Attribute) and _is_re(func.value) and func.attr in RE_FUNCS:
                    where = f"{rel}:{node.lineno}"
                    if not node.args or not isinstance(node.args[0], ast.Constant):
                        pytest.fail(f"{where}: re.{func.attr} with a pattern that is not a literal: cannot check it")
                    if func.attr != "compile":
                        found.append((where, node.args[0].value, (func.attr,)))
                elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                    used.setdefault(func.value.id, set()).add(func.attr)
                for kw in node.keywords:
                    if kw.arg == "pattern" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        found.append((f"{rel}:{node.lineno}", kw.value.value, ("search",)))
            for name, (pattern, line) in compiled.items():
                methods = tuple(sorted(used.get(name, set()) & set(METHODS))) or METHODS
                found.append((f"{rel}:{line} {name}", pattern, methods))
    return found


def _parts(pattern: str) -> tuple[set[str], set[str]]:
    """Characters and literal words a pumping string for `pattern` should be made of."""
    chars = set(" :a_0-[]\n\x00é.")
    words: set[str] = set()
    run = ""
    for ch in pattern:
        if ch.isalnum() or ch in ":-_":
            run += ch
        else:
            if len(run) > 1:
                words.add(run)
            run = ""
            if not ch.isspace():
                chars.add(ch)
    if len(run) > 1:
        words.add(run)
    return chars, words


def pumps(pattern: str, n: int) -> list[str]:
    """Strings about `n` characters long built to make a backtracking `pattern` work hard."""
    chars, words = _parts(pattern)
    specials = sorted(c for c in chars if not c.isalnum()) + ["a"]
    units = sorted(chars) + sorted(words) + ["".join(p) for p in itertools.permutations(specials, 2)]
    out = []
    for unit in units:
        body = unit * max(1, n // len(unit))
        for prefix in ("", *sorted(words)):
            for suffix in ("", " x", "\x00!"):
                out.append(prefix + body + suffix)
    return out


def _timed(fn, text: str) -> float:
    started = time.perf_counter()
    result = fn(text)
    if hasattr(result, "__next__"):
        for _ in result:
            pass
    return time.perf_counter() - started


def worst(pattern: str, methods: tuple[str, ...]) -> tuple[float, float, str, str]:
    """The (time at LARGE, time at SMALL, method, input) with the largest LARGE time (or the first that backtracks)."""
    rx = re.compile(pattern)
    calls = {
        "sub": lambda s: rx.sub("", s),
        "subn": lambda s: rx.subn("", s),
        **{m: getattr(rx, m) for m in ("search", "match", "fullmatch", "findall", "finditer", "split")},
    }
    best = (0.0, 0.0, "", "")
    for method in methods:
        fn = calls[method]
        for small, large in zip(pumps(pattern, SMALL), pumps(pattern, LARGE), strict=True):
            t_large = _timed(fn, large)
            if t_large > best[0]:
                best = (t_large, _timed(fn, small), method, large[:40])
                if quadratic(*best[:2]):
                    # A pause of the machine is not backtracking: the best of three of each length decides.
                    best = (
                        min(_timed(fn, large) for _ in range(3)),
                        min(_timed(fn, small) for _ in range(3)),
                        method,
                        large[:40],
                    )
                    if quadratic(*best[:2]):
                        return best  # one witness is enough
    return best


def quadratic(t_large: float, t_small: float) -> bool:
    return t_large > 0.05 and t_large > 20 * t_small


REGEXES = scan()


def test_the_scan_finds_the_regexes():
    assert len(REGEXES) >= 5, REGEXES  # the tokenizers, the console's query patterns, the error-field cleaner
    assert any("api/errors.py" in where for where, _, _ in REGEXES)


@pytest.mark.parametrize(("where", "pattern", "methods"), REGEXES, ids=[w for w, _, _ in REGEXES])
def test_regex_is_linear(where: str, pattern: str, methods: tuple[str, ...]):
    t_large, t_small, method, sample = worst(pattern, methods)
    assert not quadratic(t_large, t_small), (
        f"{where}: {pattern!r}.{method} took {t_large:.3f} s on {LARGE} characters ({t_small:.4f} s on {SMALL}):"
        f" it backtracks (input starts {sample!r})"
    )


def test_the_check_catches_a_backtracking_regex():
    """The check can fail: the key-derivation regex this replaced (quadratic on a run of colons)."""
    t_large, t_small, _, _ = worst(r"checkpoint:\S+:\S+", ("fullmatch",))
    assert quadratic(t_large, t_small), (t_large, t_small)
