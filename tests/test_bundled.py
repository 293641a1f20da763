"""The bundled specs ship with archdsl and are usable by name: CLI, Python, `import`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import archdsl
from archdsl.cli import main
from archdsl.errors import ArchImportError
from archdsl.frontend import build_graph
from archdsl.graph.report import build_report
from archdsl.lang import bundled
from archdsl.lang.loader import resolve_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from a folder with no specs in it, as a user would."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_spec_in_the_repository_is_bundled():
    assert bundled.bundled_dir() == ROOT / "specs"
    assert set(bundled.bundled_specs()) == {p.stem for p in (ROOT / "specs").glob("*.arch")}


def test_the_wheel_carries_the_specs_where_the_package_looks_first():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    force = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    installed = Path(bundled.__file__).resolve().parents[1] / "specs"
    assert (ROOT / force["specs"]) == ROOT / "archdsl" / "specs"
    assert bundled._CANDIDATES[0] == installed == ROOT / "archdsl" / "specs"


def test_archdsl_compile_takes_a_bundled_name(capsys: pytest.CaptureFixture[str]):
    assert main(["compile", "squeezenet1_1", "--arg", "classes=10"]) == 0
    out = capsys.readouterr().out
    assert "network SqueezeNet1_1" in out
    assert (
        f"{build_report(build_graph(ROOT / 'specs/squeezenet1_1.arch', classes=10)).params:,}"
        in out
    )


def test_names_with_and_without_the_suffix():
    assert resolve_spec("resnet50") == resolve_spec("resnet50.arch") == ROOT / "specs/resnet50.arch"


def test_a_local_file_wins_over_a_bundled_one(elsewhere: Path):
    (elsewhere / "resnet50.arch").write_text("network Mine {\n    input 8\n    dense 2\n}\n")
    assert resolve_spec("resnet50.arch") == Path("resnet50.arch")
    assert build_graph("resnet50.arch").name == "Mine"


def test_a_path_is_never_a_bundled_name():
    with pytest.raises(ArchImportError, match=r"no such file: sub/resnet50.arch"):
        build_graph("sub/resnet50.arch")


def test_an_unknown_name_suggests_the_closest(capsys: pytest.CaptureFixture[str]):
    assert main(["compile", "mobilenet_v9"]) == 1
    err = capsys.readouterr().err
    assert "no such file: mobilenet_v9, and no bundled spec `mobilenet_v9`" in err
    assert "did you mean `mobilenet_v2`?" in err


def test_compile_file_takes_a_bundled_name():
    model = archdsl.compile_file("squeezenet1_0", classes=7)
    assert model.output_shape == (7,)
    assert model.input_shape == (224, 224, 3)


def test_a_user_spec_imports_the_resnet_blocks(elsewhere: Path):
    (elsewhere / "mine.arch").write_text(
        'import "resnet_blocks.arch"\n'
        "network Mine(classes = 10) {\n"
        "    input 64x64x3\n"
        "    stem() as stem\n"
        "    basic_stage(64, 2) as layer1 : 16x16x64\n"
        "    globalavgpool -> dense classes as fc\n"
        "}\n"
    )
    graph = build_graph(elsewhere / "mine.arch")
    assert graph.node("layer1.1.conv2").shape == (16, 16, 64)
    # ResNet-18's stem and first stage, as in the bundled resnet18
    resnet18 = build_report(build_graph("resnet18"))
    mine = build_report(graph)
    assert {r.name: r.params for r in mine.rows if r.name.startswith(("stem", "layer1"))} == {
        r.name: r.params for r in resnet18.rows if r.name.startswith(("stem", "layer1"))
    }


def test_a_local_import_wins_over_the_bundled_one(elsewhere: Path):
    (elsewhere / "resnet_blocks.arch").write_text("block stem() {\n    conv 3 1x1\n}\n")
    (elsewhere / "mine.arch").write_text(
        'import "resnet_blocks.arch"\nnetwork Mine {\n    input 8x8x3\n    stem()\n}\n'
    )
    assert build_report(build_graph(elsewhere / "mine.arch")).params == 3 * 3 + 3


def test_archdsl_zoo_lists_them(capsys: pytest.CaptureFixture[str]):
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(bundled.bundled_specs())
    assert any(line.split() == ["mobilenet_v2", "MobileNetV2"] for line in lines)
    assert main(["zoo", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(ROOT / "specs")
