"""`archdsl fmt`: the canonical layout, comments kept, round trips, idempotence, the command."""

from __future__ import annotations

import io
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archdsl.cli import main
from archdsl.errors import ArchSyntaxError
from archdsl.lang import syntax as s
from archdsl.lang.parser import parse
from archdsl.testing import Network, networks
from archdsl.tools.fmt import WIDTH, _Layout, format_expr, format_text, unparse

SPECS = sorted(Path(__file__).resolve().parents[1].glob("specs/*.arch"))


def comments(text: str) -> list[str]:
    return [c.text for c in _Layout(text).comments]


MESSY = (
    "network  Net( size=32 in 8 .. 64 ,width = 4 ){\n"
    "  input size x size x 3 :size x size x 3\n"
    "\tconv width 3x3 same->relu   # first\n"
    "  residual shortcut=projection { conv 4 3x3 same }\n"
    "  repeat 2 {\n"
    "     conv 4 3x3 same\n"
    "  }\n"
    "\n"
    "\n"
    "  # pooled\n"
    "  globalavgpool\n"
    "  dense 10 -> softmax : 10\n"
    "}"
)

CANONICAL = """\
network Net(size = 32 in 8..64, width = 4) {
    input size x size x 3 : size x size x 3
    conv width 3x3 same -> relu  # first
    residual shortcut = projection {
        conv 4 3x3 same
    }
    repeat 2 { conv 4 3x3 same }

    # pooled
    globalavgpool
    dense 10 -> softmax : 10
}
"""


def test_messy_spec_gets_the_canonical_layout() -> None:
    assert format_text(MESSY) == CANONICAL
    assert format_text(CANONICAL) == CANONICAL


GOLDEN = [
    # blocks use the call form, layers the space form; args before kwargs
    (
        "block b(c,d=2){conv(c, bias=false, 3x3) -> relu}\nnetwork N{input 8x8x3\nb c = 4\n}",
        """\
        block b(c, d = 2) {
            conv c 3x3 bias = false -> relu
        }

        network N {
            input 8x8x3
            b(c = 4)
        }
        """,
    ),
    # concat branches: short ones inline, long or commented ones open
    (
        "network N {\n input 8x8x3\n concat { branch { relu }\n"
        " branch as b { conv 4 1x1 -> # reduce\n relu }\n } as m -> relu\n}",
        """\
        network N {
            input 8x8x3
            concat {
                branch { relu }
                branch as b {
                    conv 4 1x1 -> relu  # reduce
                }
            } as m -> relu
        }
        """,
    ),
    # `: shape` of consecutive lines aligned; a blank line ends the run
    (
        "network N {\ninput 8x8x3 : 8x8x3\nconv 16 3x3 same : 8x8x16\n\n"
        "flatten : 1024\ndense 10 -> softmax : 10\n}",
        """\
        network N {
            input 8x8x3      : 8x8x3
            conv 16 3x3 same : 8x8x16

            flatten             : 1024
            dense 10 -> softmax : 10
        }
        """,
    ),
    # comments: file header, before items, inside bodies, before `}`, at the end
    (
        "# header\n\n# about N\nnetwork N { # opening\n  # first\n  input 8\n"
        "  relu # act\n  # last\n} # closing\n# trailer\n",
        """\
        # header

        # about N
        network N {  # opening
            # first
            input 8
            relu  # act
            # last
        }  # closing
        # trailer
        """,
    ),
    # several comments in a chain written over lines go above it, in order
    (
        "network N {\n input 8 ->  # a\n   # b\n   dense 4 ->\n   relu  # c\n}",
        """\
        network N {
            # a
            # b
            # c
            input 8 -> dense 4 -> relu
        }
        """,
    ),
    # imports together, one blank line between definitions, `use`, `aux`, `frozen`, taps
    (
        'import "a.arch"\nimport "b.arch"\nnetwork N(k = 3) {\n use Base(10) upto x.y frozen'
        " upto z\n aux head weight = 0.5 { dense 2 }\n frozen relu as r\n from r -> relu\n}",
        """\
        import "a.arch"
        import "b.arch"

        network N(k = 3) {
            use Base(10) upto x.y frozen upto z
            aux head weight = 0.5 { dense 2 }
            frozen relu as r
            from r -> relu
        }
        """,
    ),
    # empty bodies and line continuations
    (
        "block e() {}\nnetwork N {\n input \\\n 8 -> residual {\n}\n}",
        """\
        block e() {}

        network N {
            input 8 -> residual {}
        }
        """,
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOLDEN)
def test_golden(text: str, expected: str) -> None:
    expected = textwrap.dedent(expected)
    assert format_text(text) == expected
    assert format_text(expected) == expected
    assert parse(expected) == parse(text)


def test_long_chain_breaks_after_arrows() -> None:
    steps = " -> ".join(f"conv {n} 3x3 same" for n in range(10, 30))
    out = format_text(f"network N {{\n input 8x8x3 -> {steps} : 8x8x29\n}}")
    lines = out.splitlines()[1:-1]
    assert len(lines) > 2
    assert all(len(line) <= WIDTH for line in lines)
    assert all(line.endswith(" ->") for line in lines[:-1])
    assert lines[-1].endswith(": 8x8x29")
    assert all(line.startswith(" " * 8) for line in lines[1:])
    assert format_text(out) == out


EXPRESSIONS = [
    "a - (b - c)",
    "a - b - c",
    "(a + b) * c",
    "a * (b // c)",
    "-(-3)",
    "-a * 2",
    "-(a + 1)",
    "(a x b) + 1",
    "a x (b x c)",
    "a x b + 1 x c",
    "2 * (3x3)",
    "1e999",
    "0.0001",
    "1e-05",
    '"text"',
    "(-1) x 2",
    "a % b % c",
    "a / (b * c)",
]


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_expressions_keep_their_tree(text: str) -> None:
    tree = parse(f"network N {{\n dense k = {text}\n}}")
    expr = tree.items[0].body[0].steps[0].kwargs[0].value  # type: ignore[union-attr]
    printed = format_expr(expr)
    again = parse(f"network N {{\n dense k = {printed}\n}}")
    assert again == tree, printed


def test_layer_argument_starting_with_minus_is_parenthesised() -> None:
    text = "network N {\n conv a (-1) 3\n dense -2\n}"
    out = format_text(text)
    assert "conv a (-1) 3" in out and "dense -2" in out
    assert parse(out) == parse(text)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_specs_are_formatted(path: Path) -> None:
    text = path.read_text()
    out = format_text(text, str(path))
    assert parse(out) == parse(text)
    assert format_text(out) == out
    assert comments(out) == comments(text)
    assert out == text, f"run `archdsl fmt {path}`"


def test_syntax_error_is_reported_not_formatted() -> None:
    with pytest.raises(ArchSyntaxError):
        format_text("network N {\n input 8 ->\n}")


def test_unparse_ignores_spans() -> None:
    tree = parse("network N {\n input 8 -> dense 2\n}")
    assert unparse(tree) == "network N {\n    input 8 -> dense 2\n}\n"
    assert unparse(s.Spec(items=(), source=tree.source, span=tree.span)) == ""


# Properties ---------------------------------------------------------------------------------


@st.composite
def relayouts(draw: st.DrawFn, text: str, *, decorate: bool) -> tuple[str, list[str]]:
    """The same spec with other whitespace; with `decorate`, blank lines and comments.

    Returns the text and the comments it holds, in order.
    """
    out: list[str] = []
    notes: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            out.append(line)
            continue
        pad = draw(st.sampled_from(["", " ", "\t", "  ", "      "]))
        words = line.strip().split(" ")
        pieces = [words[0]]
        for word in words[1:]:
            gap = draw(st.sampled_from([" ", " ", "  ", "\t", " \\\n   "]))
            if pieces[-1] == "->" and draw(st.integers(0, 3)) == 0:
                gap = "\n" + ("\n" if decorate and draw(st.booleans()) else "") + "    "
            pieces.append(gap + word)
        new = pad + "".join(pieces)
        if decorate and draw(st.integers(0, 3)) == 0:
            note = f"# note {len(notes)}"
            notes.append(note)
            new += " " + note
        if decorate and draw(st.integers(0, 4)) == 0:
            note = f"# own {len(notes)}"
            notes.append(note)
            new += f"\n{pad}{note}"
        if decorate and draw(st.integers(0, 4)) == 0:
            new += "\n"
        out.append(new)
    return "\n".join(out), notes


@given(networks(), st.data())
def test_any_layout_formats_to_the_canonical_text(network: Network, data: st.DataObject) -> None:
    text, _ = data.draw(relayouts(network.text, decorate=False))
    assert parse(text) == network.spec
    assert format_text(text) == network.text


@given(networks(), st.data())
def test_format_round_trips_keeps_comments_and_is_idempotent(
    network: Network, data: st.DataObject
) -> None:
    text, notes = data.draw(relayouts(network.text, decorate=True))
    out = format_text(text)
    assert parse(out) == parse(text) == network.spec
    assert format_text(out) == out
    assert comments(out) == notes


@given(networks())
def test_unparse_round_trips(network: Network) -> None:
    assert parse(unparse(network.spec)) == network.spec
    assert unparse(parse(network.text)) == network.text


# The command ----------------------------------------------------------------------------------


def test_fmt_command_rewrites_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "net.arch"
    path.write_text(MESSY)
    assert main(["fmt", "--check", str(path)]) == 1
    assert "would reformat" in capsys.readouterr().err
    assert main(["fmt", "--diff", str(path)]) == 1
    assert "+    conv width 3x3 same -> relu  # first" in capsys.readouterr().out
    assert path.read_text() == MESSY
    assert main(["fmt", str(path)]) == 0
    assert path.read_text() == CANONICAL
    assert main(["fmt", "--check", str(path)]) == 0


def test_fmt_command_reports_syntax_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.arch"
    path.write_text("network N {\n input 8 ->\n}\n")
    assert main(["fmt", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:3:1: error: ")
    assert path.read_text() == "network N {\n input 8 ->\n}\n"


def test_fmt_command_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(MESSY))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == CANONICAL
