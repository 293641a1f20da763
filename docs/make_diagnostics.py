"""Write docs/diagnostics.md: every kind of diagnostic, produced by the compiler itself.

python docs/make_diagnostics.py        # rewrite the page
python docs/make_diagnostics.py --check  # exit 1 if the page is stale (the tests run this)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_errors import CASES  # noqa: E402

from archdsl.errors import ArchError  # noqa: E402
from archdsl.frontend import build_graph  # noqa: E402

PAGE = ROOT / "docs" / "diagnostics.md"
HEADER = """# Diagnostics

Every error names the file, line and column, shows the line with a caret under the
offending text, and says what was expected or what the two shapes were. Independent
name and argument errors are all reported in one run, sorted by position; shape errors
stop at the first (later shapes depend on it). `archdsl compile` and `archdsl check`
exit with status 1 on any of these, and never print a Python traceback. With `--json`,
the error is also one JSON object on standard output, for tools: `file`, `line`,
`column`, `end_line`, `end_column`, `message`, `notes`, `help`, `kind` (the error class),
`trace` (the block calls that led there) and `rendered` (the text above); with several
errors, the first one's fields and all of them under `errors`. Control characters in a
spec are shown escaped (`\\x1b`) or as `\ufffd`, never sent to the terminal.

This page is generated from the test suite's broken specs by `docs/make_diagnostics.py`
(a test fails when it is stale).
"""


def render() -> str:
    """The page text."""
    parts = [HEADER]
    with tempfile.TemporaryDirectory() as folder:
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            for case, text, _where, _message, _hint in CASES:
                path = Path(f"{case}.arch")
                path.write_text(text, encoding="utf-8")
                arguments = {"size": 100} if case == "range" else {}
                try:
                    build_graph(path, **arguments)
                except ArchError as error:
                    shown = str(error)
                else:
                    raise AssertionError(f"{case} compiled")
                title = case.replace("_", " ")
                extra = " (with `--arg size=100`)" if arguments else ""
                parts.append(f"## {title}{extra}\n\n```\n{text}```\n\n```\n{shown}\n```\n")
        finally:
            os.chdir(cwd)
    return "\n".join(parts)


def main() -> int:
    """Rewrite the page, or check it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        return 0 if PAGE.read_text(encoding="utf-8") == text else 1
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
