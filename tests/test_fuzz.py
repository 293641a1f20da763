"""`archdsl fuzz`: clean runs count their instances; failures shrink to the smallest arguments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archdsl.cli import main
from archdsl.errors import ArchError
from archdsl.lang.loader import load_file
from archdsl.tools import fuzz

# A branch that pools in Caffe's ceil mode next to branches with `same` padding: they
# agree on even sizes only (33 -> 16 against 17), as in GoogLeNet's inception modules.
INCEPTION = """\
block inception(c) {
    concat {
        branch { conv c 1x1 stride 2 same -> relu }
        branch { maxpool 3x3 stride 2 ceil -> conv c 1x1 }
        branch { conv c 3x3 stride 2 same -> relu }
    }
}

network Tiny(size = 64 in 32..128, classes = 10) {
    input size x size x 3
    conv 16 3x3 same -> relu
    inception(8)
    globalavgpool
    dense classes -> softmax
}
"""

CLEAN = """\
network Clean(size = 16 in 4..40, width = 4 in 1..8) {
    input size x size x 3
    conv width 3x3 same -> relu -> maxpool 2x2 stride 2 same
    globalavgpool
    dense 3
}

network Fixed {
    input 8
    dense 2
}
"""


@pytest.fixture
def inception(tmp_path: Path) -> Path:
    path = tmp_path / "inception.arch"
    path.write_text(INCEPTION)
    return path


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    path = tmp_path / "clean.arch"
    path.write_text(CLEAN)
    return path


def test_failure_shrinks_to_the_smallest_size(
    inception: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fuzz", str(inception), "--seed", "0", "-n", "50"]) == 1
    err = capsys.readouterr().err
    assert f"FAIL {inception}: network `Tiny`" in err
    assert "the smallest failing:\n    size = 33\n" in err
    assert (
        f"{inception}:2:5: error: `concat`: branch 2 gives 16x16x8, but branch 1 "
        "gives 17x17x8" in err
    )
    assert f"reproduce: archdsl compile {inception} --network Tiny --arg size=33" in err


def test_seed_repeats_a_run(inception: Path) -> None:
    program = load_file(inception)
    first = fuzz.fuzz_network(program, str(inception), "Tiny", max_examples=20, seed=7)
    second = fuzz.fuzz_network(program, str(inception), "Tiny", max_examples=20, seed=7)
    assert first == second
    assert first.failure is not None and first.failure.kind == "spec"
    assert first.failure.arguments == {"size": 33}


def test_clean_run_counts_instances(clean: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", str(clean), "--seed", "1", "--max-examples", "30"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"ok  {clean}: network `Clean`: compiled ")
    tried = int(out[0].split("compiled ")[1].split()[0])
    assert 1 < tried <= 30
    assert "(size in 4..40, width in 1..8), all clean" in out[0]
    assert out[1] == (
        f"ok  {clean}: network `Fixed` declares no ranges; compiled its default "
        "arguments (1 instance)"
    )


def test_small_range_is_exhausted(tmp_path: Path) -> None:
    path = tmp_path / "small.arch"
    path.write_text("network N(k = 2 in 1..3) {\n    input 8 -> dense k\n}\n")
    (result,) = fuzz.fuzz_file(path, max_examples=100, seed=0)
    assert result.ok and result.tried == 3


def test_network_option(clean: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", str(clean), "--network", "Fixed"]) == 0
    assert "`Clean`" not in capsys.readouterr().out
    assert main(["fuzz", str(clean), "--network", "Nope"]) == 1
    assert "no network `Nope`" in capsys.readouterr().err


def test_backend_checks_each_instance(clean: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["fuzz", str(clean), "--network", "Clean", "--backend", "-n", "3", "--seed", "0"]) == 0
    )
    assert "compiled and traced with jax.eval_shape" in capsys.readouterr().out


def test_backend_disagreement_is_a_failure(
    clean: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def disagree(path: object, graph: object, **options: object) -> None:
        raise AssertionError("the model outputs 4 per example, the front end predicts 3")

    monkeypatch.setattr(fuzz, "check_backend", disagree)
    assert main(["fuzz", str(clean), "--network", "Clean", "--backend", "--seed", "0"]) == 1
    err = capsys.readouterr().err
    assert "the JAX backend disagrees with the front end" in err
    assert "size = 4, width = 1" in err  # shrunk to the low ends


def test_backend_unavailable(
    clean: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("archdsl.testing.backend_available", lambda: False)
    assert main(["fuzz", str(clean), "--backend"]) == 1
    assert "--backend is unavailable" in capsys.readouterr().err


def test_a_crash_is_reported_as_a_bug(
    clean: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(program: object, network: str, arguments: dict[str, int]) -> None:
        if arguments.get("width", 0) >= 5:
            raise KeyError("boom")

    monkeypatch.setattr(fuzz, "build_program_graph", crash)
    assert main(["fuzz", str(clean), "--network", "Clean", "--seed", "0"]) == 1
    err = capsys.readouterr().err
    assert "archdsl crashed (a bug in archdsl, not in the spec" in err
    assert "KeyError: 'boom'" in err
    assert "size = 4, width = 5" in err


def test_parameter_without_default_or_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.arch"
    path.write_text("network N(k) {\n    input 8 -> dense k\n}\n")
    assert main(["fuzz", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"{path}:1:11: error: `k` has no default")


def test_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.arch"
    path.write_text("network N(k = 1 in 1..) {\n}\n")
    assert main(["fuzz", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"{path}:1:")


def test_file_of_blocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "blocks.arch"
    path.write_text("block b() {\n    relu\n}\n")
    assert fuzz.fuzz_file(path) == []
    assert main(["fuzz", str(path)]) == 0
    assert "defines no network (blocks only)" in capsys.readouterr().out
    with pytest.raises(ArchError, match="no network `N`"):
        fuzz.fuzz_file(path, network="N")


def test_several_files(clean: Path, inception: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = clean.parent / "missing.arch"
    assert main(["fuzz", str(clean), str(missing), str(inception), "-n", "5", "--seed", "0"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("ok  ") == 2
    assert "no such file" in captured.err and "FAIL" in captured.err


def test_max_examples_must_be_positive(clean: Path) -> None:
    assert main(["fuzz", str(clean), "-n", "0"]) == 2


DOCS = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def test_docs_worked_example_is_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DOCS.read_text()
    spec = text.split("```\n# inception_net.arch", 1)[1].split("```", 1)[0]
    (tmp_path / "inception_net.arch").write_text("# inception_net.arch" + spec)
    monkeypatch.chdir(tmp_path)
    shown = text.split("$ archdsl fuzz inception_net.arch --seed 1\n", 1)[1]
    shown = shown.split("$ echo $?", 1)[0]
    assert main(["fuzz", "inception_net.arch", "--seed", "1"]) == 1
    count = re.compile(r"\d+ instances tried")
    assert count.sub("N instances tried", capsys.readouterr().err) == count.sub(
        "N instances tried", shown
    )

    fixed = spec.replace(
        "maxpool 3x3 stride 2 ceil }  # Caffe's ceil mode, as GoogLeNet",
        "maxpool 3x3 stride 2 same }",
    )
    (tmp_path / "inception_net.arch").write_text("# inception_net.arch" + fixed)
    assert main(["fuzz", "inception_net.arch", "--seed", "1"]) == 0
    clean = (
        text.split("The fix is", 1)[1]
        .split("$ archdsl fuzz inception_net.arch --seed 1\n", 1)[1]
        .split("\n", 1)[0]
    )
    assert capsys.readouterr().out.strip() == clean
