"""The command line: compile's table, --json, --graph, check, exit codes, and `--help`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from archdsl.cli import main

LENET = """# LeNet-5
network LeNet5(classes = 10) {
    input 32x32x1
    conv 6 5x5 valid -> tanh        : 28x28x6
    avgpool 2x2 stride 2            : 14x14x6
    conv 16 5x5 valid -> tanh       : 10x10x16
    avgpool 2x2 stride 2            : 5x5x16
    flatten                         : 400
    dense 120 -> tanh
    dense 84 -> tanh
    dense classes -> softmax
}
"""


@pytest.fixture
def lenet(tmp_path: Path) -> Path:
    path = tmp_path / "lenet.arch"
    path.write_text(LENET)
    return path


def test_compile_prints_table_and_totals(lenet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(lenet)]) == 0
    out = capsys.readouterr().out
    assert "network LeNet5" in out
    assert "conv_1" in out and "10x10x16" in out and "2,416" in out
    assert "params     61,706" in out
    assert "MACs       416,520" in out


def test_compile_json(lenet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(lenet), "--json", "--arg", "classes=3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["network"] == "LeNet5"
    assert set(report["layers"][0]) >= {
        "name",
        "op",
        "shape",
        "params",
        "trainable",
        "macs",
        "inserted",
    }
    assert report["layers"][-1]["shape"] == [3]
    assert report["totals"]["params"] == 61_706 - 7 * 84 - 7
    assert report["totals"]["params"] == sum(layer["params"] for layer in report["layers"])


def test_compile_graph(lenet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(lenet), "--graph"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("graph LeNet5 {")
    assert "  flatten = flatten(avgpool_1) : 400" in out


def test_compile_reports_the_1x1_saving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.arch"
    path.write_text("network B {\n    input 28x28x192\n    conv 16 1x1 -> conv 32 5x5 same\n}\n")
    assert main(["compile", str(path)]) == 0
    out = capsys.readouterr().out
    assert "12,443,648 multiplications instead of 120,422,400" in out


def test_bad_argument_value(lenet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(lenet), "--arg", "classes"]) == 1
    assert "expected NAME=VALUE" in capsys.readouterr().err


def test_check_many_files(lenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.arch"
    bad.write_text("network N {\n    input 8\n    conv 4 3x3\n}\n")
    assert main(["check", str(lenet)]) == 0
    assert main(["check", str(lenet), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"ok  {lenet}" in captured.out
    assert f"{bad}:3:5: error: `conv`: expected an input of rank 3" in captured.err
    assert "1 of 2 files have errors" in captured.err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["compile"])
    assert caught.value.code == 2


def test_help_in_a_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "archdsl", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "compile" in result.stdout and "check" in result.stdout
