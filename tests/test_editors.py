"""The VS Code extension: its TextMate grammar agrees with the compiler, its files are wired."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from archdsl.graph.ops import OPS
from archdsl.lang.grammar import keywords

ROOT = Path(__file__).resolve().parents[1]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = json.loads((VSCODE / "syntaxes" / "arch.tmLanguage.json").read_text())
REPO = GRAMMAR["repository"]


def _words(pattern: str) -> set[str]:
    """The alternatives of a `\\b(?:a|b|c)\\b` pattern."""
    found = re.search(r"\(\?:([\w|]+)\)", pattern)
    assert found is not None, pattern
    return set(found.group(1).split("|"))


def test_keywords_match_the_compiler() -> None:
    operators = {p["match"] for p in REPO["operator"]["patterns"]}
    size_operator = {"x"} if r"\bx\b" in operators else set()
    assert _words(REPO["keyword"]["match"]) | size_operator == set(keywords())


def test_layer_names_match_the_op_table() -> None:
    visible = {name for name, cls in OPS.items() if cls.user_visible}
    assert _words(REPO["layer"]["match"]) == visible


def _scopes(line: str) -> list[tuple[str, str]]:
    """Tokenise one line as TextMate does: at each point the leftmost match wins, ties by order."""
    rules = [REPO[p["include"][1:]] for p in GRAMMAR["patterns"]]
    flat = [r2 for r in rules for r2 in r.get("patterns", [r])]
    out, pos = [], 0
    while pos < len(line):
        best = None
        for rule in flat:
            m = re.compile(rule["match"]).search(line, pos)
            if m and m.end() > m.start() and (best is None or m.start() < best[0].start()):
                best = (m, rule)
        if best is None:
            break
        m, rule = best
        if "captures" in rule:
            out += [(m.group(int(k)), v["name"]) for k, v in rule["captures"].items()]
        else:
            out.append((m.group(0), rule["name"]))
        pos = m.end()
    return out


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "    conv 6 5x5 valid as c1 -> tanh   : 28x28x6  # C1",
            [
                ("conv", "support.function.layer.arch"),
                ("6", "constant.numeric.arch"),
                ("5x5", "constant.numeric.size.arch"),
                ("valid", "constant.language.arch"),
                ("as", "keyword.control.arch"),
                ("->", "keyword.operator.chain.arch"),
                ("tanh", "support.function.layer.arch"),
                (":", "keyword.operator.arch"),
                ("28x28x6", "constant.numeric.size.arch"),
                ("# C1", "comment.line.number-sign.arch"),
            ],
        ),
        (
            "block basic(c, stride = 1) {",
            [
                ("block", "keyword.control.arch"),
                ("basic", "entity.name.type.arch"),
                ("c", None),
                ("stride", None),
                ("=", "keyword.operator.arch"),
                ("1", "constant.numeric.arch"),
            ],
        ),
        (
            "    input size x size x 3",
            [
                ("input", "support.function.layer.arch"),
                ("x", "keyword.operator.size.arch"),
                ("x", "keyword.operator.size.arch"),
                ("3", "constant.numeric.arch"),
            ],
        ),
    ],
)
def test_grammar_tokenises_spec_lines(line: str, expected: list[tuple[str, str | None]]) -> None:
    assert _scopes(line) == [(text, scope) for text, scope in expected if scope is not None]


def test_language_configuration_and_manifest() -> None:
    config = json.loads((VSCODE / "language-configuration.json").read_text())
    assert config["comments"]["lineComment"] == "#"
    assert ["{", "}"] in config["brackets"] and ["(", ")"] in config["brackets"]
    manifest = json.loads((VSCODE / "package.json").read_text())
    language = manifest["contributes"]["languages"][0]
    assert language["extensions"] == [".arch"]
    for relative in (
        manifest["main"],
        language["configuration"],
        manifest["contributes"]["grammars"][0]["path"],
    ):
        assert (VSCODE / relative).is_file(), relative
    assert GRAMMAR["scopeName"] == manifest["contributes"]["grammars"][0]["scopeName"]
    assert "vscode-languageclient" in manifest["dependencies"]
    assert '"lsp"' in (VSCODE / "extension.js").read_text() or "lsp" in str(
        manifest["contributes"]["configuration"]
    )


def test_merge_names_match_the_op_table() -> None:
    from archdsl.graph.ops.merge import Merge

    merges = {name for name, cls in OPS.items() if issubclass(cls, Merge)}
    assert _words(REPO["merge"]["match"]) == merges
