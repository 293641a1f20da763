"""The import rules between the parts: each folder's `__init__` says what it may import.

Read from the source with `ast` (every import, lazy ones inside functions included), so
a forbidden edge fails here, with the file and line, before it becomes a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "archdsl"
PARTS = ("lang", "graph", "backend", "train", "tools", "testing", "cli")
TOP = ("frontend", "compiler")
"""The public entry points at the top: the pipeline, run by the parts above it."""

FORBIDDEN: dict[str, set[str]] = {
    "lang": {"graph", "backend", "train", "tools", "testing", "cli", *TOP},
    "graph": {"backend", "train", "tools", "testing", "cli", *TOP},
    "backend": {"train", "tools", "testing", "cli"},
    "train": {"tools", "testing", "cli"},
    "tools": {"train", "cli"},
    "testing": {"cli"},
    # files on disk (the atomic writer, input limits): used by every part, uses none
    "io": {"lang", "graph", "backend", "train", "tools", "testing", "cli", *TOP},
}


def _part(module: str) -> str | None:
    """`archdsl.graph.ops.conv` -> `graph`; None outside the package."""
    pieces = module.split(".")
    if pieces[0] != "archdsl" or len(pieces) < 2:
        return None
    return pieces[1]


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every `import`/`from ... import` of archdsl in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names)
    return [(line, module, names) for line, module, names in found if _part(module)]


def _sources(part: str) -> list[Path]:
    return sorted((PACKAGE / part).rglob("*.py"))


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_a_part_imports_only_what_its_rules_allow(part: str) -> None:
    bad = []
    for path in _sources(part):
        for line, module, _ in _imports(path):
            if _part(module) in FORBIDDEN[part]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {module}")
    assert not bad, f"`{part}` may not import {sorted(FORBIDDEN[part])}:\n" + "\n".join(bad)


@pytest.mark.parametrize("part", PARTS)
def test_no_part_reaches_a_private_name_of_another(part: str) -> None:
    bad = []
    for path in _sources(part):
        for line, module, names in _imports(path):
            if _part(module) in (part, None) or _part(module) not in PARTS:
                continue
            private = [n for n in names if n.startswith("_")]
            private += [p for p in module.split(".") if p.startswith("_")]
            if private:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} {private}")
    assert not bad, "private names are for their own part:\n" + "\n".join(bad)


def test_the_front_end_does_not_import_jax() -> None:
    # `archdsl check`, `fmt` and the language server start without JAX's import time.
    code = (
        "import sys, archdsl.frontend, archdsl.tools.fmt, archdsl.tools.draw\n"
        "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)[:5]"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_rules_hold_for_a_forbidden_edge(tmp_path: Path) -> None:
    # The checker itself: an import of graph written in lang is found.
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from archdsl.graph.ops import Conv\n")
    assert [(line, module) for line, module, _ in _imports(path)] == [(2, "archdsl.graph.ops")]
    assert _part("archdsl.graph.ops") in FORBIDDEN["lang"]
