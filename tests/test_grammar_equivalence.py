"""The grammar, flattened for speed, reads exactly as the grammar before it.

`tests/fixtures/grammar/reference.lark` is `grammar/archdsl.lark` as it was before its
expression chain and statement lists were flattened (fewer LALR reductions per layer).
Both are parsed by the same transformer; for every text, both must give the same syntax
tree with the same spans, or the same diagnostic, word for word and at the same place.
The texts: every bundled spec, generated networks, their breaking mutations, and token
soup (grammar tokens inserted, deleted and swapped), which reaches most parser states.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archdsl.errors import ArchError
from archdsl.lang import parser
from archdsl.testing import broken_spec_texts, networks
from tests.test_parser_backends import _spans

REFERENCE = Path(__file__).parent / "fixtures" / "grammar" / "reference.lark"
SPECS = sorted(Path("specs").glob("*.arch"))

TOKENS = [
    *"{}(),=:.-+*/%x",
    "//",
    "..",
    "->",
    "\n",
    "\n\n",
    " # note\n",
    "\\\n",
    "8",
    "0",
    "3x3",
    "1.5",
    "2e-3",
    '"a.arch"',
    "c",
    "conv",
    "relu",
    "same",
    "concat",
    "f(",
    "make_divisible(",
    "in",
    "as",
    "network",
    "block",
    "residual",
    "branch",
    "repeat",
    "aux",
    "use",
    "frozen",
    "upto",
    "from",
    "import",
    "shortcut",
    "$",
    "0" * 50,  # too long: the value error and a syntax error after it race
    "1" + "0" * 45 + "x3",
]
"""Pieces that the token soup draws from: every terminal of the grammar, and then some."""

SEEDS = [
    "network N {\n    input 8x8x3\n    conv 4 3x3 same -> relu : 8x8x4\n}\n",
    "block B(c = 2 in 1..4) {\n    conv c * 2 - 1 3x3 stride (1 + 1) // 1 % 3\n}\n"
    "network N(s = 16) {\n    input s x s x 3\n    B(c = 2) as b\n    use M(4, k = -2) upto a.1 frozen upto b\n}\n",
    "network N {\n    input 8\n    residual shortcut = projection {\n        dense 8\n    }\n"
    "    concat { branch as a { relu } branch { from input -> relu } }\n"
    "    repeat 2 as r { dense in.0 / 2 }\n    aux head weight = 0.3 { dense 2 }\n"
    "    frozen { relu } as g\n    f(1, 2,) 1e-4\n}\n",
]


def _outcome(text: str) -> Any:
    """What parsing gives: the tree and its spans, or the diagnostic's full text."""
    try:
        spec = parser.parse(text, "x.arch")
    except ArchError as error:
        return str(error)
    return spec, _spans(spec)


@contextmanager
def _reference(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patch:
        patch.setattr(parser, "GRAMMAR", REFERENCE)
        yield


def _same(text: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    now = _outcome(text)
    with _reference(monkeypatch):
        before = _outcome(text)
    assert now == before, text
    return now


def test_the_reference_is_another_grammar(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison is not vacuous: the fixture is read, and it reduces more often."""
    text = SEEDS[0]
    reductions = {}
    for grammar in (None, REFERENCE):
        lark = parser._syntax_parser(False, grammar)
        count = 0
        for rule, callback in list(lark.parser.parser.parser.callbacks.items()):

            def counting(children: list, callback: Any = callback) -> Any:
                nonlocal count
                count += 1
                return callback(children)

            monkeypatch.setitem(lark.parser.parser.parser.callbacks, rule, counting)
        monkeypatch.setattr(parser, "USE_CYTHON", False)
        monkeypatch.setattr(parser, "GRAMMAR", grammar)
        parser.parse(text)
        reductions[grammar] = count
    assert reductions[REFERENCE] > 1.3 * reductions[None] > 0


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_bundled_spec_reads_the_same(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = _same(path.read_text(encoding="utf-8"), monkeypatch)
    assert not isinstance(outcome, str), outcome


@pytest.mark.parametrize("cut", range(0, 400, 7))
def test_every_prefix_of_a_spec_reads_the_same(cut: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A text cut anywhere: an unexpected end in every construct's every state."""
    text = "".join(SEEDS)
    _same(text[:cut] if cut < len(text) else text, monkeypatch)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(network=networks())
def test_generated_networks_read_the_same(network: Any) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        outcome = _same(network.text, monkeypatch)
    assert not isinstance(outcome, str), outcome


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(text=broken_spec_texts())
def test_broken_specs_read_the_same(text: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _same(text, monkeypatch)


@st.composite
def _token_soup(draw: Any) -> str:
    """A seed spec with grammar tokens inserted, deleted or swapped at token boundaries."""
    pieces = draw(st.sampled_from(SEEDS)).replace("\n", " \n ").split(" ")
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(pieces) - 1))
        edit = draw(st.sampled_from(["insert", "delete", "swap"]))
        token = draw(st.sampled_from(TOKENS))
        if edit == "insert":
            pieces.insert(at, token)
        elif edit == "delete":
            del pieces[at]
        else:
            pieces[at] = token
        if not pieces:
            pieces = [token]
    glue = draw(st.sampled_from([" ", " ", " ", ""]))  # mostly whole tokens
    return glue.join(pieces)


@settings(max_examples=400, deadline=None)
@given(text=_token_soup())
def test_token_soup_reads_the_same(text: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _same(text, monkeypatch)
