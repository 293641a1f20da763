"""The language server: features on analyses in process, and one editing session over stdio."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from archdsl.tools.lsp.analysis import analyze
from archdsl.tools.lsp.client import LspClient
from archdsl.tools.lsp.complete import completions
from archdsl.tools.lsp.diagnostics import diagnostics
from archdsl.tools.lsp.hover import hover
from archdsl.tools.lsp.navigate import definition, symbols
from archdsl.tools.lsp.server import format_edits

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

SPEC = textwrap.dedent(
    """\
    block unit(c, stride = 1) {
        conv c 3x3 stride stride same -> relu
    }

    network Small(classes = 10) {
        input 32x32x3
        unit(16) as stem
        unit(32, stride = 2) as down
        from down -> maxpool 2x2 as side
        flatten
        dense classes
    }
    """
)


def _hover_text(analysis, line: int, character: int) -> str:
    found = hover(analysis, line, character)
    assert found is not None
    return found.contents.value


def test_unknown_layer_gets_a_diagnostic_on_its_name() -> None:
    text = SPEC.replace("-> relu", "-> rleu")
    (diag,) = diagnostics(analyze(text, "small.arch"))
    assert "rleu" in diag.message and "relu" in diag.message  # did you mean
    start, end = diag.range.start, diag.range.end
    assert (start.line, start.character, end.line, end.character) == (1, 37, 1, 41)


def test_every_error_is_reported_with_notes_as_related_information() -> None:
    text = SPEC.replace("unit(16)", "unit(16, strde = 1)").replace("dense classes", "dense clases")
    found = diagnostics(analyze(text, "small.arch"))
    assert [d.range.start.line for d in found] == [6, 10]
    shape_error = SPEC.replace("maxpool 2x2", "maxpool 64x64")
    (diag,) = diagnostics(analyze(shape_error, "small.arch"))
    assert diag.range.start.line == 8
    assert diag.related_information and "16x16x32" in diag.related_information[-1].message


def test_layer_hover_gives_each_instance_shape_params_and_macs() -> None:
    analysis = analyze(SPEC, "small.arch")
    text = _hover_text(analysis, 1, 6)  # `conv` inside the block: two instances
    assert "`stem.conv` | 32x32x3 | 32x32x16 | 448 |" in text
    assert "`down.conv` | 32x32x16 | 16x16x32 | 4,640 |" in text


def test_block_call_hover_gives_signature_and_instance_shapes() -> None:
    analysis = analyze(SPEC, "small.arch")
    text = _hover_text(analysis, 7, 6)
    assert "block unit(c, stride = 1)" in text
    assert "| `down` | 32x32x16 | 16x16x32 | 4,640 |" in text


def test_hover_survives_a_syntax_error_elsewhere() -> None:
    broken = SPEC.replace("unit(16) as stem", "unit(16) as stem :")
    analysis = analyze(broken, "small.arch")
    assert analysis.recovered and len(analysis.errors) == 1
    assert "16x16x32" in _hover_text(analysis, 7, 6)
    assert [s.name for s in symbols(analysis)] == ["unit", "Small"]


def test_resnet152_block_call_instances() -> None:
    path = SPECS / "resnet152.arch"
    analysis = analyze(path.read_text(), str(path))
    assert analysis.errors == ()
    text = _hover_text(analysis, 9, 6)  # bottleneck_stage(64, 3) as layer1
    assert "block bottleneck_stage(c, n, stride = 1)" in text
    assert "| `layer1` | 56x56x64 | 56x56x256 | 215,808 |" in text


def test_definition_of_imported_block_tap_and_import() -> None:
    path = SPECS / "resnet152.arch"
    analysis = analyze(path.read_text(), str(path))
    found = definition(analysis, 9, 8)
    assert found is not None and found.uri.endswith("specs/resnet_blocks.arch")
    blocks = (SPECS / "resnet_blocks.arch").read_text().split("\n")
    assert blocks[found.range.start.line].startswith("block bottleneck_stage(")
    imported = definition(analysis, 4, 3)
    assert imported is not None and imported.uri.endswith("resnet_blocks.arch")
    small = analyze(SPEC, "small.arch")
    tap = definition(small, 8, 10)  # `from down`
    assert tap is not None and tap.range.start.line == 7
    assert (tap.range.start.character, tap.range.end.character) == (28, 32)


def test_completion_offers_layers_blocks_arguments_and_taps() -> None:
    text = SPEC.replace("    dense classes\n", "    \n    from \n    conv 8 \n")
    analysis = analyze(text, "small.arch")
    at_step = {c.label for c in completions(analysis, 10, 4)}
    assert {"conv", "maxpool", "unit", "residual"} <= at_step
    assert {c.label for c in completions(analysis, 11, 9)} == {"stem", "down", "side"}
    args = {c.label for c in completions(analysis, 12, 11)}
    assert {"stride", "padding", "same", "dilation"} <= args
    assert {c.label for c in completions(analysis, 14, 0)} >= {"network", "block"}


def test_outline_and_formatting() -> None:
    analysis = analyze(SPEC, "small.arch")
    (block, network) = symbols(analysis)
    assert (block.name, network.name) == ("unit", "Small")
    assert [c.name for c in network.children or []] == ["stem", "down", "side"]
    messy = SPEC.replace("    input 32x32x3", "  input   32x32x3")
    (edit,) = format_edits(messy, "small.arch") or []
    assert edit.new_text == SPEC
    assert format_edits(SPEC, "small.arch") == []
    assert format_edits("network {", "small.arch") is None


def test_error_in_an_imported_block_shows_at_the_call(tmp_path: Path) -> None:
    (tmp_path / "lib.arch").write_text("block bad() {\n    conv 8 9x9\n}\n")
    main = 'import "lib.arch"\nnetwork N {\n    input 4x4x1\n    bad()\n}\n'
    (diag,) = diagnostics(analyze(main, str(tmp_path / "main.arch")))
    assert diag.range.start.line == 3 and diag.message.startswith("in lib.arch:2:5: ")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("workspace")
    with LspClient(cwd=str(ROOT)) as lsp:
        lsp.initialize(root)
        lsp.root = root  # type: ignore[attr-defined]
        yield lsp


def test_editing_session_over_stdio(client: LspClient) -> None:
    """Open a broken spec, fix it, hover, jump to the block, type a half line, format."""
    path = client.root / "small.arch"  # type: ignore[attr-defined]
    path.write_text(SPEC)
    uri = path.resolve().as_uri()

    client.open(uri, SPEC.replace("-> relu", "-> rleu"))
    (diag,) = client.wait_diagnostics(uri)
    assert diag["range"] == {
        "start": {"line": 1, "character": 37},
        "end": {"line": 1, "character": 41},
    }
    assert "did you mean `relu`?" in diag["message"]

    client.change(uri, SPEC)
    assert client.wait_diagnostics(uri) == []

    shown = client.at("textDocument/hover", uri, 7, 6)["contents"]["value"]
    assert "| `down` | 32x32x16 | 16x16x32 |" in shown
    layer = client.at("textDocument/hover", uri, 8, 20)["contents"]["value"]
    assert "**maxpool**" in layer and "| `side` | 16x16x32 | 8x8x32 |" in layer

    target = client.at("textDocument/definition", uri, 7, 6)
    assert target["uri"] == uri and target["range"]["start"] == {"line": 0, "character": 6}

    half = SPEC.replace("    dense classes", "    dense classes ->")
    client.change(uri, half)
    (diag,) = client.wait_diagnostics(uri)
    assert diag["range"]["start"]["line"] == 11  # the `}` after the dangling `->`
    still = client.at("textDocument/hover", uri, 6, 6)["contents"]["value"]
    assert "| `stem` | 32x32x3 | 32x32x16 |" in still

    items = client.at("textDocument/completion", uri, 9, 4)["items"]
    assert {"conv", "unit"} <= {i["label"] for i in items}

    client.change(uri, SPEC.replace("    input", "  input"))
    assert client.wait_diagnostics(uri) == []
    options = {"tabSize": 4, "insertSpaces": True}
    edits = client.request(
        "textDocument/formatting", {"textDocument": {"uri": uri}, "options": options}
    )
    assert edits[0]["newText"] == SPEC
    outline = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert [s["name"] for s in outline] == ["unit", "Small"]
