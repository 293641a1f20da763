"""Hostile specs (issue 8): confined imports, no traceback, nothing wrong accepted in silence.

Each test asserts the message and the position of the diagnostic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from archdsl.cli import main
from archdsl.errors import ArchError
from archdsl.frontend import build_graph, build_graph_text
from archdsl.lang.loader import import_roots

NET = "network N {\n    input 8\n}\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path, **arguments: object) -> str:
    with pytest.raises(ArchError) as caught:
        build_graph(path, **arguments)  # type: ignore[arg-type]
    return str(caught.value)


# imports stay inside the project -----------------------------------------------------------


def test_import_of_a_file_that_is_not_a_spec_is_refused_unread(tmp_path: Path) -> None:
    spec = _write(tmp_path / "p" / "main.arch", 'import "../../../../etc/passwd"\n' + NET)
    shown = _error(spec)
    assert shown.startswith(
        f"{spec}:1:1: error: an import names a `.arch` file, got `../../../../etc/passwd`"
    )
    assert "root:" not in shown


def test_import_through_a_symlink_out_of_the_project_is_refused(tmp_path: Path) -> None:
    secret = _write(tmp_path / "secret" / "keys.arch", "TOP SECRET\n")
    spec = _write(tmp_path / "p" / "main.arch", 'import "keys.arch"\n' + NET)
    os.symlink(secret, tmp_path / "p" / "keys.arch")
    shown = _error(spec)
    assert shown.startswith(
        f"{spec}:1:1: error: cannot import `keys.arch`: it resolves outside the folders "
        "imports may read"
    )
    assert "TOP SECRET" not in shown
    assert "--import-path" in shown


def test_import_climbing_out_of_the_project_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "outside.arch", "block b() { relu }\n")
    spec = _write(tmp_path / "p" / "main.arch", 'import "../outside.arch"\n' + NET)
    assert "it resolves outside the folders imports may read" in _error(spec)


def test_symlinked_spec_to_a_non_spec_inside_the_project_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "notes.txt", "private notes\n")
    os.symlink(tmp_path / "notes.txt", tmp_path / "notes.arch")
    spec = _write(tmp_path / "main.arch", 'import "notes.arch"\n' + NET)
    shown = _error(spec)
    assert shown.startswith(f"{spec}:1:1: error: cannot import `notes.arch`: it links to a file")
    assert "private" not in shown


def test_import_path_opens_one_more_folder(tmp_path: Path) -> None:
    _write(tmp_path / "lib" / "blocks.arch", "block b() { relu }\n")
    spec = _write(
        tmp_path / "p" / "main.arch", 'import "blocks.arch"\nnetwork N {\n    input 8\n    b()\n}\n'
    )
    shown = _error(spec)
    assert shown.startswith(f"{spec}:1:1: error: cannot import `blocks.arch`: no such file")
    assert "looked in" in shown and "--import-path DIR" in shown
    graph = build_graph(spec, import_path=[tmp_path / "lib"])
    assert graph.node("0.relu").inputs == ("input",)
    # the same from the command line, and `..` into an `--import-path` folder
    climbing = _write(
        tmp_path / "p" / "up.arch",
        'import "../lib/blocks.arch"\nnetwork N {\n    input 8\n    b()\n}\n',
    )
    assert main(["check", "-q", str(climbing)]) == 1
    assert main(["check", "-q", str(climbing), "--import-path", str(tmp_path / "lib")]) == 0
    assert main(["compile", str(spec), "-I", str(tmp_path / "lib")]) == 0


def test_import_path_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ArchError, match="--import-path nowhere: no such folder"):
        import_roots(tmp_path / "main.arch", ["nowhere"])


def test_roots_are_the_spec_folder_then_import_paths(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    roots = import_roots(tmp_path / "p" / "main.arch", [tmp_path / "lib"])
    assert roots == (
        Path(os.path.realpath(tmp_path / "p")),
        Path(os.path.realpath(tmp_path / "lib")),
    )


def test_specs_folder_imports_still_work() -> None:
    assert len(build_graph("specs/transfer_resnet18.arch")) > 10


# --json errors -------------------------------------------------------------------------------


def test_json_error_is_an_object_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path / "bad.arch", "network N {\n    input 8\n    covn 3\n}\n")
    assert main(["compile", str(spec), "--json"]) == 1
    error = json.loads(capsys.readouterr().out)
    assert (error["file"], error["line"], error["column"]) == (str(spec), 3, 5)
    assert error["message"] == "unknown layer or block `covn`"
    assert error["help"] == "did you mean `conv`?"
    assert error["kind"] == "ArchNameError"


def test_json_with_several_errors_lists_them_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path / "bad.arch", "network N {\n    input 8\n    covn 3\n    rleu\n}\n")
    assert main(["compile", str(spec), "--json"]) == 1
    error = json.loads(capsys.readouterr().out)
    assert [(e["line"], e["column"]) for e in error["errors"]] == [(3, 5), (4, 5)]


# residual shortcuts take the body's stride -----------------------------------------------------


def test_shortcut_takes_the_body_stride_not_the_shape_ratio() -> None:
    text = "network N {\n    input 7x7x3\n    residual { conv 4 3x3 stride 2 valid }\n}\n"
    with pytest.raises(ArchError) as caught:
        build_graph_text(text, "r.arch")
    assert str(caught.value).startswith(
        "r.arch:3:5: error: `residual`: the body strides by 2, so the shortcut does too, "
        "giving 4x4 where the body gives 3x3"
    )


def test_shortcut_with_a_fitting_stride_is_inserted() -> None:
    text = "network N {\n    input 8x8x3\n    residual { conv 4 3x3 stride 2 same -> relu }\n}\n"
    graph = build_graph_text(text)
    assert graph.node("residual.shortcut").op.stride == (2, 2)  # type: ignore[attr-defined]


# graph verification never reaches the user as an assertion -----------------------------------


def _text_error(text: str, **arguments: object) -> str:
    with pytest.raises(ArchError) as caught:
        build_graph_text(text, "t.arch", **arguments)  # type: ignore[arg-type]
    return str(caught.value)


AUX_BASE = "network B {\n    input 8\n    dense 4 as d1\n    aux a { dense 3 as h }\n    dense 2 as d2\n}\n"


def test_tap_from_inside_an_aux_head_is_positioned() -> None:
    text = "network N {\n    input 8\n    dense 4\n    aux a { dense 3 as h }\n    from h -> dense 2\n}\n"
    assert _text_error(text).startswith(
        "t.arch:5:10: error: `from h`: `a.h` is inside aux head `a`, which exists only in training"
    )


def test_use_upto_a_layer_inside_an_aux_head_is_positioned() -> None:
    text = AUX_BASE + "network N {\n    use B upto h\n    dense 2\n}\n"
    shown = _text_error(text)
    assert shown.startswith(
        "t.arch:8:16: error: `upto h`: `a.h` is inside aux head `a`, not on the main path"
    )
    assert "2 errors" not in shown  # no "has no input" after it


def test_frozen_upto_a_layer_that_upto_dropped_is_positioned() -> None:
    text = AUX_BASE + "network N {\n    use B upto d1 frozen upto d2\n    dense 2\n}\n"
    assert _text_error(text).startswith(
        "t.arch:8:31: error: `frozen upto d2`: `d2` is not kept by `upto d1`"
    )


def test_use_recursion_is_positioned_not_a_recursion_error() -> None:
    assert _text_error("network A {\n    use A\n}\n").startswith(
        "t.arch:2:9: error: network `A` uses itself: A -> A"
    )
    text = "network A {\n    use B\n}\nnetwork B {\n    use A\n}\n"
    assert _text_error(text).startswith("t.arch:2:9: error: network `B` uses itself: B -> A -> B")


def test_use_recursion_from_the_cli_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path / "rec.arch", "network A {\n    use A\n}\n")
    assert main(["compile", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:2:9: error: network `A` uses itself")
    assert "Traceback" not in err


# nothing wrong accepted in silence -----------------------------------------------------------


def test_duplicate_parameter_names() -> None:
    shown = _text_error("network N(a = 1, a = 2) {\n    input 8\n}\n")
    assert shown.startswith("t.arch:1:18: error: `N` has two parameters named `a`")
    assert "the first is at t.arch:1:11" in shown


def test_use_argument_outside_the_base_range() -> None:
    text = (
        "network B(c = 4 in 1..8) {\n    input 8\n    dense c\n}\n"
        "network N {\n    use B(c = 99)\n    dense 2\n}\n"
    )
    shown = _text_error(text)
    assert shown.startswith("t.arch:6:15: error: network `B` takes `c` in 1..8, got 99")
    assert "the range is declared at t.arch:1:11" in shown
    positional = text.replace("B(c = 99)", "B(0)")
    assert _text_error(positional).startswith("t.arch:6:11: error: network `B` takes `c` in 1..8")


def test_non_finite_numbers_are_refused() -> None:
    text = "network N {\n    input 8x8x3\n    batchnorm eps = 1e999\n}\n"
    assert _text_error(text).startswith(
        "t.arch:3:21: error: `1e999` is not a finite number: it is beyond the range of a 64-bit float"
    )
    overflow = "network N {\n    input 8x8x3\n    batchnorm eps = 1e300 * 1e300\n}\n"
    assert _text_error(overflow).startswith("t.arch:3:21: error: `1e300 * 1e300` is not a finite")
    api = "network N(e = 0.1) {\n    input 8x8x3\n    batchnorm eps = e\n}\n"
    assert "t.arch:3:21: error: `e` is nan, not a finite number" in _text_error(api, e=float("nan"))


def test_aux_weight_must_be_finite_and_not_negative() -> None:
    head = "network N(w = 0.3) {\n    input 8\n    dense 4\n    aux a weight = {} {{ dense 3 }}\n    dense 2\n}\n"
    negative = head.replace("{}", "-1", 1)
    assert _text_error(negative).startswith(
        "t.arch:4:20: error: an `aux` weight scales a loss and cannot be negative, got -1"
    )
    nan = head.replace("{}", "w", 1)
    assert "t.arch:4:20: error: `w` is nan, not a finite number" in _text_error(nan, w=float("nan"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 -> relu", "expected one value, got `5 -> relu` with `-> relu` after it"),
        ("5 as x", "expected one value, got `5 as x` with `as x` after it"),
        ("5 6", "expected one value, got `5 6` with `6` after it"),
        ("(3", "unexpected end of line; expected `)` at character 3 of the value"),
        ("1e999", "`1e999` is not a finite number"),
    ],
)
def test_arg_with_trailing_text_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    spec = _write(
        tmp_path / "n.arch", "network N(classes = 3) {\n    input 8\n    dense classes\n}\n"
    )
    assert main(["compile", str(spec), "--arg", f"classes={value}"]) == 1
    assert capsys.readouterr().err.startswith(f"error: `--arg classes={value}`: {message}")


def test_block_named_like_a_layer_is_refused_at_its_definition() -> None:
    text = "block conv(c) { relu }\nnetwork N {\n    input 8x8x3\n    conv 4 3x3\n}\n"
    shown = _text_error(text)
    assert shown.startswith(
        "t.arch:1:7: error: block `conv` has the name of a layer: calls to `conv` would "
        "build the layer, never this block"
    )
    assert "rename the block, e.g. `conv_block`" in shown


def test_from_a_name_defined_inside_a_repeat_is_ambiguous() -> None:
    text = "network N {\n    input 8\n    repeat 3 { dense 4 as f }\n    from f -> dense 2\n}\n"
    shown = _text_error(text)
    assert shown.startswith(
        "t.arch:4:10: error: `f` is defined inside the `repeat` on line 3, once per iteration"
    )
    assert "name the repeat (`repeat ... as r { ... }`)" in shown
    assert "`from r.2.f` for the last one" in shown
    # inside the body, the iteration's own `f` is meant: still allowed
    inside = "network N {\n    input 8\n    repeat 2 { dense 4 as f\n from f -> relu }\n}\n"
    graph = build_graph_text(inside)
    assert graph.node("1.relu").inputs == ("1.f",)
    # and the full name works after the repeat
    full = text.replace("repeat 3", "repeat 3 as r").replace("from f", "from r.2.f")
    assert build_graph_text(full).node("dense").inputs == ("r.2.f",)
    in_block = (
        "block b() {\n    repeat 2 as r { dense 4 as f }\n    from r.1.f -> dense 2\n}\n"
        "network N {\n    input 8\n    b()\n}\n"
    )
    assert build_graph_text(in_block).node("0.dense").inputs == ("0.r.1.f",)


# source text that must not shift the quoted line ---------------------------------------------


@pytest.mark.parametrize(
    "first", ["\ufeffnetwork N {", "network N { # a\x0cb", "network N { # a\rb", "network N {\r"]
)
def test_bom_form_feed_and_lone_cr_keep_the_quoted_line(first: str) -> None:
    text = first + "\n    input 8\n    covn 3\n}\n"
    shown = _text_error(text)
    assert shown.startswith("t.arch:3:5: error: unknown layer or block `covn`")
    assert " 3 |     covn 3\n" in shown
    assert "\r" not in shown and "\x0c" not in shown and "\ufeff" not in shown


def test_control_characters_never_reach_the_terminal() -> None:
    shown = _text_error("network N {\n    input 8\n    conv\x1b[31m 3\n}\n")
    assert shown.startswith("t.arch:3:9: error: unexpected character `\\x1b`")
    assert "\x1b" not in shown
    assert " 3 |     conv\ufffd[31m 3\n   |         ^" in shown


# messages that help --------------------------------------------------------------------------


def test_one_line_concat_of_branches_parses() -> None:
    text = "network N {\n    input 8x8x3\n    concat { branch { relu } branch as b { conv 2 1x1 } }\n}\n"
    assert build_graph_text(text).node("concat").shape == (8, 8, 5)


def test_size_glued_to_a_name_explains_the_spaces() -> None:
    shown = _text_error("network N(classes = 3) {\n    input 8x8xclasses\n}\n")
    assert shown.startswith("t.arch:2:14: error: `input` takes no more positional arguments")
    assert "`xclasses` reads as one name; to multiply by `classes`, put spaces around `x`: " in (
        shown
    )
    assert "`8x8 x classes`" in shown


def test_activation_keyword_points_at_the_arrow() -> None:
    shown = _text_error("network N {\n    input 8x8x3\n    conv 16 3x3 activation = relu\n}\n")
    assert shown.startswith("t.arch:3:17: error: unknown `conv` argument `activation`")
    assert "write `conv ... -> relu`" in shown
    assert "dilation" not in shown


# nothing unbounded ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["{ }", "{ e() }", "{ {} }", "{ repeat 2147483647 { } }", "{ e() -> e() }"],
)
def test_huge_repeat_of_an_empty_body_collapses(body: str) -> None:
    text = f"block e() {{ }}\nnetwork N {{\n    input 8\n    repeat 2147483647 {body}\n    dense 3\n}}\n"
    assert build_graph_text(text).order() == ["input", "dense"]


def test_the_api_never_raises_a_bare_recursion_error() -> None:
    import sys

    text = "network N {\n input 8\n" + "residual {\n" * 50 + "relu\n" + "}\n" * 50 + "}\n"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)
    try:
        with pytest.raises(ArchError) as caught:
            build_graph_text(text, "deep.arch")
    finally:
        sys.setrecursionlimit(limit)
    assert str(caught.value).startswith("deep.arch:1:1: error: the spec nests too deeply")


def test_a_network_too_big_for_memory_is_refused_with_the_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from archdsl import compiler
    from archdsl.graph import memory

    text = "network Big {\n    input 1000\n    dense 1000\n}\n"
    graph = build_graph_text(text, "big.arch")
    assert memory.parameter_bytes(graph) == (1000 * 1000 + 1000) * 4
    with pytest.raises(ArchError) as caught:
        memory.check_fits(graph, available=1_000_000)
    assert str(caught.value).startswith(
        "big.arch:1:1: error: network `Big` needs 3.8 MiB (4,004,000 bytes) for its "
        "parameters, but this machine has 976.6 KiB (1,000,000 bytes) available"
    )
    memory.check_fits(graph, available=4_004_000)
    monkeypatch.setattr(memory, "available_memory", lambda: 1_000)
    with pytest.raises(ArchError, match=r"needs 3\.8 MiB"):
        compiler.compile_spec(text, "big.arch")


def test_a_block_calling_itself_twice_is_refused_without_exponential_work() -> None:
    # Estimating the size of `repeat` walked both calls to every depth: 2^64 walks.
    text = (
        "block b() {\n    concat { branch { b() } branch { b() } }\n}\n"
        "network N {\n    input 8x8x3\n    repeat 3 { b() }\n}\n"
    )
    shown = _text_error(text)
    assert shown.startswith("t.arch:2:23: error: block `b` calls itself: b -> b")
