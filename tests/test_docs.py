"""The generated diagnostics page is current, and the README's commands are the ones CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_diagnostics_page_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_diagnostics.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, "run `python docs/make_diagnostics.py`\n" + result.stderr


def test_language_tables_are_current() -> None:
    # The layers, merges and kinds tables of docs/language.md come from the op table.
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_language.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, "run `python docs/make_language.py`\n" + result.stderr


def test_internals_names_files_and_tests_that_exist() -> None:
    # The walk-throughs name every file they touch: each must exist, as must each test.
    text = (ROOT / "docs" / "internals.md").read_text()
    paths = set(re.findall(r"`((?:archdsl|tests|docs|grammar)/[\w/.]+\.(?:py|lark|md))`", text))
    assert len(paths) >= 15
    assert [p for p in paths if not (ROOT / p).is_file()] == []
    tests = set(re.findall(r"`(?:tests/\w+\.py::)?(test_\w+)`", text))
    assert len(tests) >= 5
    source = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert [t for t in tests if f"def {t}(" not in source] == []


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in readme.splitlines()[:6] if line.startswith("pip install")]
    assert len(commands) == 2
    assert commands[0].endswith("archdsl compile specs/resnet50.arch")
    assert commands[1] in ci.splitlines()
