"""Broken specs, one per kind of error: exact position, message and hint, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from archdsl.cli import main
from archdsl.errors import ArchError, ArchErrors
from archdsl.frontend import build_graph

# (case, spec text, "line:col", message start, text that must appear in notes/help or "")
CASES: list[tuple[str, str, str, str, str]] = [
    (
        "bad_char",
        "network N {\n    input 28x28x1\n    conv 8 3x3 $ same\n}\n",
        "3:16",
        "unexpected character `$`",
        "",
    ),
    (
        "missing_dim",
        "network N {\n    input 28x28x\n}\n",
        "2:17",
        "unexpected end of line; expected a name, a number",
        "",
    ),
    (
        "unclosed",
        "network N {\n    input 28x28x1\n    conv 8 3x3\n",
        "3:15",
        "unexpected end of file: the `{` on line 1 is not closed",
        "add the missing `}`",
    ),
    (
        "stray_brace",
        "network N {\n    input 8x8x1\n}\n}\n",
        "4:1",
        "unexpected `}`; expected `block`, `import`, `network`",
        "not open here",
    ),
    (
        "two_statements",
        "network N {\n    input 28x28x1 conv 8 3x3\n}\n",
        "2:19",
        "`input` takes no more positional arguments",
        "one statement per line",
    ),
    (
        "unknown_layer",
        "network N {\n    input 28x28x1\n    covn 8 3x3\n}\n",
        "3:5",
        "unknown layer or block `covn`",
        "did you mean `conv`?",
    ),
    (
        "unknown_argument",
        "network N {\n    input 28x28x1\n    conv 8 3x3 bais = false\n}\n",
        "3:16",
        "unknown `conv` argument `bais`",
        "did you mean `bias`?",
    ),
    (
        "missing_attribute",
        "network N {\n    input 28x28x1\n    conv 8\n}\n",
        "3:5",
        "`conv` needs `kernel`",
        "usage: `conv <filters> <kernel>",
    ),
    (
        "too_many_positional",
        "network N {\n    input 28x28x1\n    conv 8 3x3 4\n}\n",
        "3:16",
        "`conv` takes no more positional arguments (it takes `filters`, `kernel`); got 4",
        "usage",
    ),
    (
        "wrong_kind",
        "network N {\n    input 28x28x1\n    flatten\n    dense 3x3\n}\n",
        "4:11",
        "`dense` units must be an integer, got 3x3",
        "",
    ),
    (
        "undefined_name",
        "network N(classes = 10) {\n    input 28x28x1\n    flatten\n    dense clases\n}\n",
        "4:11",
        "`dense` units must be an integer, got `clases`",
        "did you mean `classes`?",
    ),
    (
        "keyword_without_value",
        "network N {\n    input 8x8x1\n    conv 8 3x3 stride\n}\n",
        "3:16",
        "`stride` needs a value after it",
        "`stride 2`",
    ),
    (
        "bad_padding",
        "network N {\n    input 8x8x1\n    conv 8 3x3 padding = full\n}\n",
        "3:26",
        "`conv` padding must be `same`, `valid` or an integer, got `full`",
        "",
    ),
    (
        "unknown_tap",
        "network N {\n    input 28x28x1 as stem\n    conv 8 3x3\n    from stme -> conv 8 3x3\n}\n",
        "4:10",
        "unknown tap `stme`",
        "did you mean `stem`?",
    ),
    (
        "duplicate_layer_name",
        "network N {\n    input 28x28x1\n    conv 8 3x3 as c\n    conv 8 3x3 as c\n}\n",
        "4:5",
        "`c` names two layers",
        "",
    ),
    (
        "duplicate_definition",
        "block b() { relu }\nblock b() { tanh }\nnetwork N {\n    input 8x8x1\n    b()\n}\n",
        "2:7",
        "`b` is defined twice",
        "first defined at",
    ),
    (
        "missing_import",
        'import "nothere.arch"\nnetwork N {\n    input 8x8x1\n}\n',
        "1:1",
        "cannot import `nothere.arch`: no such file",
        "",
    ),
    (
        "url_import",
        'import "https://x.org/a.arch"\nnetwork N {\n    input 8\n}\n',
        "1:1",
        "imports are files, not URLs",
        "relative path",
    ),
    (
        "no_input",
        "network N {\n    conv 8 3x3\n}\n",
        "2:5",
        "`conv` has no input: the network must start with `input`",
        "add `input",
    ),
    (
        "second_input",
        "network N {\n    input 8x8x1\n    input 8x8x1\n}\n",
        "3:5",
        "a network has one `input`; this is a second",
        "from NAME",
    ),
    (
        "input_in_block",
        "block b() {\n    input 8x8x1\n}\nnetwork N {\n    input 8x8x1\n    b()\n}\n",
        "2:5",
        "`input` belongs in a network, not a block",
        "in the block called at",
    ),
    (
        "assertion_fails",
        "network N {\n    input 32x32x1\n    conv 6 5x5 -> tanh : 28x28x8\n}\n",
        "3:26",
        "expected shape 28x28x8, but `tanh` gives 28x28x6",
        "",
    ),
    (
        "concat_branch_differs",
        "network N {\n    input 28x28x192\n    concat {\n"
        "        branch { conv 64 1x1 }\n        branch { conv 32 3x3 }\n    }\n}\n",
        "3:5",
        "`concat`: branch 2 gives 26x26x32, but branch 1 gives 28x28x64",
        "from `concat.branch2.conv`",
    ),
    (
        "multiply_cannot_broadcast",
        "network N {\n    input 8x8x16\n    multiply {\n"
        "        branch { conv 16 1x1 }\n        branch { globalavgpool -> dense 8 }\n    }\n}\n",
        "3:5",
        "`multiply`: cannot multiply 8 (branch 2) with 8x8x16 (branch 1)",
        "`multiply` gets 8 from `multiply.branch2.dense`",
    ),
    (
        "not_a_merge",
        "network N {\n    input 8x8x1\n    relu {\n"
        "        branch { relu }\n        branch { tanh }\n    }\n}\n",
        "3:5",
        "`relu` is a layer, not a merge: only a merge takes branches",
        "the merges are add, concat, multiply",
    ),
    (
        "residual_identity",
        "network N {\n    input 56x56x64\n"
        "    residual shortcut = identity {\n        conv 128 3x3 stride 2 same\n    }\n}\n",
        "3:5",
        "`residual` cannot add 28x28x128 (body) to 56x56x64 (shortcut)",
        "insert a 1x1 conv, stride 2, 64 -> 128",
    ),
    (
        "residual_zeropad_shrinks",
        "network N {\n    input 56x56x64\n"
        "    residual shortcut = zeropad {\n        conv 32 3x3 same\n    }\n}\n",
        "3:5",
        "`residual`: zero padding cannot turn the shortcut's 56x56x64 into the body's 56x56x32",
        "use `shortcut = projection`",
    ),
    (
        "window_too_big",
        "network N {\n    input 4x4x3\n    conv 8 5x5\n}\n",
        "3:5",
        "`conv`: the 5x5 window is larger than its 4x4 input",
        "gets 4x4x3 from `input`",
    ),
    (
        "shape_to_zero",
        "network N {\n    input 4x4x3\n    maxpool 2x2\n    maxpool 2x2\n    maxpool 2x2\n}\n",
        "5:5",
        "`maxpool`: the 2x2 window is larger than its 1x1 input",
        "",
    ),
    (
        "groups",
        "network N {\n    input 8x8x3\n    conv 8 3x3 groups = 2\n}\n",
        "3:5",
        "`conv`: input channels (=3) must be divisible by groups (=2)",
        "",
    ),
    (
        "rank",
        "network N {\n    input 8x8x3\n    flatten\n    conv 8 3x3\n}\n",
        "4:5",
        "`conv`: expected an input of rank 3 (HxWxC), got 192 (rank 1)",
        "",
    ),
    (
        "absurd_dimension",
        "network N {\n    input 100000000000x8x3\n}\n",
        "2:11",
        "100000000000 is too large",
        "",
    ),
    (
        "absurd_parameters",
        "network N {\n    input 1000000\n    dense 2000000000\n}\n",
        "3:5",
        "the network passes 1,000,000,000,000 parameters",
        "more than any machine",
    ),
    (
        "absurd_activation",
        "network N {\n    input 2000000x2000000x3\n}\n",
        "2:5",
        "`input` would output 2000000x2000000x3",
        "more than any machine",
    ),
    (
        "block_recursion",
        "block a() { b() }\nblock b() { a() }\nnetwork N {\n    input 8x8x1\n    a()\n}\n",
        "2:13",
        "block `a` calls itself: a -> b -> a",
        "in the block called at",
    ),
    (
        "repeat_negative",
        "network N(n = 0) {\n    input 8x8x1\n    repeat n - 1 { relu }\n}\n",
        "3:12",
        "`repeat` needs a whole number of times, got -1",
        "",
    ),
    (
        "inexact_division",
        "network N(c = 10) {\n    input 8x8x1\n    conv c / 4 3x3\n}\n",
        "3:10",
        "10 / 4 is not a whole number",
        "`10 // 4`",
    ),
    (
        "unused_layer",
        "network N {\n    input 8x8x1 as x\n    conv 8 3x3\n    from x -> conv 4 3x3\n}\n",
        "3:5",
        "the output of `conv` is never used",
        "with `from`",
    ),
    (
        "dropout_rate",
        "network N {\n    input 8\n    dropout 1.5\n}\n",
        "3:5",
        "`dropout` rate must be in [0, 1), got 1.5",
        "",
    ),
    (
        "network_as_block",
        "network A {\n    input 8\n}\nnetwork N {\n    input 8\n    A()\n}\n",
        "6:5",
        "`A` is a network, not a block",
        "`use A`",
    ),
    (
        "unknown_network",
        "network N {\n    use ResNet99 upto layer3\n}\n",
        "2:9",
        "unknown network `ResNet99`",
        "",
    ),
    (
        "empty_residual",
        "network N {\n    input 8x8x1\n    residual { }\n}\n",
        "3:5",
        "`residual` has an empty body",
        "",
    ),
    (
        "one_branch",
        "network N {\n    input 8x8x1\n    concat {\n        branch { relu }\n    }\n}\n",
        "3:5",
        "`concat` needs at least two branches, got 1",
        "",
    ),
    (
        "block_argument_missing",
        "block b(c) { conv c 3x3 }\nnetwork N {\n    input 8x8x1\n    b()\n}\n",
        "4:5",
        "block `b` needs `c`",
        "`b` is defined at",
    ),
    (
        "block_argument_unknown",
        "block b(c) { conv c 3x3 }\nnetwork N {\n    input 8x8x1\n    b(c = 2, strid = 1)\n}\n",
        "4:14",
        "unknown argument of block `b`: `strid`",
        "",
    ),
    (
        "error_inside_block",
        "block b(c) {\n    conv c 9x9\n}\nnetwork N {\n    input 8x8x1\n    b(4)\n}\n",
        "2:5",
        "`conv`: the 9x9 window is larger than its 8x8 input",
        "in the block called at {path}:6:5",
    ),
    (
        "range",
        "network N(size = 32 in 16..64) {\n    input size x size x 3\n}\n",
        "1:11",
        "network `N` takes `size` in 16..64, got 100",
        "",
    ),
    ("empty_file", "", "1:1", "this file defines no `network`", ""),
    (
        "default_outside_range",
        "network N(size = 100 in 8..64) {\n    input size x size x 3\n}\n",
        "1:11",
        "network `N` takes `size` in 8..64, its default is 100",
        "",
    ),
    (
        "empty_range",
        "network N(size = 10 in 64..8) {\n    input size\n}\n",
        "1:11",
        "the range 64..8 of `size` is empty",
        "",
    ),
    (
        "absolute_import",
        'import "/dev/zero"\nnetwork N {\n    input 8\n}\n',
        "1:1",
        "imports are relative to the importing file, not absolute: `/dev/zero`",
        "relative path",
    ),
    (
        "repeat_too_large",
        "network N {\n    input 8\n    repeat 2147483647 { relu }\n}\n",
        "3:5",
        "`repeat 2,147,483,647` of 1 layers would expand the network past 500,000 layers",
        "",
    ),
    (
        "expression_too_deep",
        "network N {\n    input 8\n    dense " + " + ".join(["1"] * 100) + "\n}\n",
        "3:11",
        "the expression nests more than 64 operators deep",
        "",
    ),
    (
        "misspelt_keyword",
        "network N {\n    input 8x8x1\n    residul {\n        relu\n    }\n}\n",
        "3:13",
        "unexpected `{`",
        "did you mean `residual`?",
    ),
]


def _write(tmp_path: Path, case: str, text: str) -> Path:
    path = tmp_path / f"{case}.arch"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("case", "text", "where", "message", "hint"), CASES, ids=[c[0] for c in CASES]
)
def test_diagnostic(
    tmp_path: Path, case: str, text: str, where: str, message: str, hint: str
) -> None:
    path = _write(tmp_path, case, text)
    arguments = {"size": 100} if case == "range" else {}
    with pytest.raises(ArchError) as caught:
        build_graph(path, **arguments)
    rendered = str(caught.value)
    assert rendered.startswith(f"{path}:{where}: error: {message}"), rendered
    if hint:
        assert hint.replace("{path}", str(path)) in rendered, rendered
    if text:
        line = int(where.split(":")[0])
        column = int(where.split(":")[1])
        source_line = text.splitlines()[line - 1]
        if len(source_line) <= 120:  # longer lines are shown as a window around the column
            assert f" | {source_line}" in rendered
        caret_line = next(
            x for x in rendered.splitlines() if x.strip().startswith("| ") and "^" in x
        )
        assert caret_line.index("^") - caret_line.index("|") - 2 == column - 1


def test_there_are_at_least_25_kinds() -> None:
    assert len({c[3].split("`")[0] + c[0] for c in CASES}) >= 25


def test_import_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.arch").write_text('import "b.arch"\nnetwork N {\n    input 8\n}\n')
    (tmp_path / "b.arch").write_text('import "a.arch"\nblock x() { relu }\n')
    with pytest.raises(ArchError) as caught:
        build_graph(tmp_path / "a.arch")
    rendered = str(caught.value)
    assert rendered.startswith(
        f"{tmp_path / 'b.arch'}:1:1: error: import cycle: a.arch -> b.arch -> a.arch"
    )


def test_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.arch"
    path.write_bytes(b"network N {\n    input 8 # caf\xe9\n}\n")
    with pytest.raises(ArchError) as caught:
        build_graph(path)
    assert str(caught.value).startswith(f"{path}:2:18: error: byte 0xe9 is not UTF-8 text")


def test_independent_errors_are_all_reported_sorted(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "many",
        "network N {\n    input 8x8x1\n    covn 8 3x3\n"
        "    conv 8 3x3 bais = false\n    relu -> tanhh\n}\n",
    )
    with pytest.raises(ArchErrors) as caught:
        build_graph(path)
    positions = [(e.span.line, e.span.column) for e in caught.value.errors]
    assert positions == [(3, 5), (4, 16), (5, 13)]
    assert str(caught.value).endswith("3 errors")


def test_cli_exit_code_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "bad", "network N {\n    input 8x8x1\n    covn 8 3x3\n}\n")
    assert main(["compile", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:3:5: error: unknown layer or block `covn`")
    assert "Traceback" not in err


def test_missing_file_is_an_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["compile", "no/such/file.arch"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_huge_literal_is_refused_with_position() -> None:
    from archdsl.lang.parser import parse

    with pytest.raises(ArchError) as caught:
        parse("network N { input " + "9" * 5000 + " }", "t.arch")
    assert str(caught.value).startswith("t.arch:1:19: error: a number of 5000 digits is too large")


def test_deep_nesting_is_refused_before_parsing() -> None:
    from archdsl.lang.parser import parse

    text = "network N {\n input 8\n" + "residual {\n" * 150 + "relu\n" + "}\n" * 150 + "}\n"
    with pytest.raises(ArchError) as caught:
        parse(text, "t.arch")
    assert str(caught.value).startswith("t.arch:66:10: error: braces nest deeper than 64 levels")


def test_sixty_levels_of_nesting_still_compile() -> None:
    from archdsl.frontend import build_graph_text

    text = "network N {\n input 8\n" + "residual {\n" * 60 + "relu\n" + "}\n" * 60 + "}\n"
    assert len(build_graph_text(text)) == 62


def test_nested_repeats_are_refused_without_building_them() -> None:
    from archdsl.frontend import build_graph_text

    text = "network N {\n input 8\n" + "repeat 2 {\n" * 40 + "relu\n" + "}\n" * 40 + "}"
    with pytest.raises(ArchError, match="of 549,755,813,888 layers would expand the network"):
        build_graph_text(text, "t.arch")
