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
